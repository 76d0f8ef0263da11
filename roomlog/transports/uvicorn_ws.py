"""uvicorn's sans-I/O WebSocket protocol, plus a synchronous send for fan-out.

The one module that reaches into uvicorn's WebSocket internals (``roomlog
serve`` passes it as uvicorn's ``ws`` protocol class). It adds the ASGI scope
extension ``roomlog.direct_send``: a callable ``(payload, text) -> bool`` that
frames and writes ``payload`` at once when the connection is open and its socket
writable, and returns False otherwise. The caller then falls back to an awaited
ASGI send, which waits for the socket to drain, so backpressure still holds.

Why: fan-out writes one frame to each of thousands of sockets. Through ASGI that
is a task wake-up and an awaited send per subscriber; here it is one function
call inside a single flush per event-loop turn (see ``roomlog.outbox``). Under
any other ASGI server the extension is absent and everything still works.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State

__all__ = ["EXTENSION", "DirectSendProtocol"]

EXTENSION = "roomlog.direct_send"

_last: list[Any] = [None, False, b""]  # payload, text, its frame: the fan-out in progress


def _framed(payload: bytes, text: bool) -> bytes:
    if _last[0] is not payload or _last[1] is not text:
        frame = Frame(Opcode.TEXT if text else Opcode.BINARY, payload)
        _last[:] = [payload, text, frame.serialize(mask=False, extensions=[])]
    wire: bytes = _last[2]
    return wire


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
        conn = self.conn
        if (not conn.extensions and not conn.writes and not conn.expect_continuation_frame
                and conn.state is State.OPEN):
            # Unmasked, uncompressed server frames are the same bytes for every
            # subscriber: frame a shared payload once, not once per socket.
            self.transport.write(_framed(payload, text))
            return True
        try:
            if text:
                self.conn.send_text(payload)
            else:
                self.conn.send_binary(payload)
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True
