"""uvicorn's sans-I/O WebSocket protocol, plus a synchronous send for fan-out.

The one module that reaches into uvicorn's WebSocket internals (``realtime
serve`` passes it as uvicorn's ``ws`` protocol class). It adds the ASGI scope
extension ``realtime.direct_send``: a callable ``(payload, text) -> bool`` that
frames and writes ``payload`` at once when the connection is open and its socket
writable, and returns False otherwise. The caller then falls back to an awaited
ASGI send, which waits for the socket to drain, so backpressure still holds.

Why: fan-out writes one frame to each of thousands of sockets. Through ASGI that
is a task wake-up and an awaited send per subscriber; here it is one function
call inside a single flush per event-loop turn (see ``realtime.outbox``). Under
any other ASGI server the extension is absent and everything still works.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

__all__ = ["EXTENSION", "DirectSendProtocol"]

EXTENSION = "realtime.direct_send"


class DirectSendProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # None when the handshake was refused
            scope["extensions"][EXTENSION] = self.direct_send

    def direct_send(self, payload: bytes, text: bool) -> bool:
        """Write one WebSocket frame now; False if the caller must await instead."""
        if (not self.handshake_complete or self.close_sent or self.disconnected
                or not self.writable.is_set() or self.transport.is_closing()):
            return False
        try:
            if text:
                self.conn.send_text(payload)
            else:
                self.conn.send_binary(payload)
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True
