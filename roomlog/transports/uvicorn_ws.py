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

Closing is bounded (``ws_close_timeout``, :meth:`DirectSendProtocol.configured`):

* the app's ``websocket.close`` is written at once, behind what is buffered, even
  when the socket does not take more (uvicorn would wait for it to drain first,
  forever for a client that stopped reading): a slow client that reads again sees
  its backlog and then the close code (4008);
* a connection still open ``ws_close_timeout`` after the close frame (or after the
  app ended) is aborted: its file descriptor and buffers are freed, whatever the
  client does;
* a connection whose client answers no ping within ``ping_timeout`` ends for the
  app at once (uvicorn only closed the transport, which waited for the client to
  read, and the session kept its subscriptions), and is aborted as above;
* a frame the protocol refuses (above ``max_frame_bytes``: 1009; not UTF-8: 1007;
  malformed: 1002) gets its close frame and a half-close, and the rest of what the
  client sends is read and dropped until it closes too. Closing the socket at once
  (uvicorn) leaves unread bytes behind, the kernel answers with a reset, and the
  client sees 1006 instead of the code.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
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
    #: seconds a closing connection has before it is aborted (``ws_close_timeout``)
    close_after = 5.0

    @classmethod
    def configured(cls, close_timeout: float) -> type[DirectSendProtocol]:
        """This protocol with its own close timeout (uvicorn takes a class)."""
        return type(cls.__name__, (cls,), {"close_after": close_timeout})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = self.close_after
        self._failed = False  # the protocol refused a frame; its close frame is out

    # -- bounded closing ---------------------------------------------------------

    def _abort(self) -> None:
        """Give up on the client: free the socket now, unsent bytes and all."""
        self.close_timer = None
        if not self.disconnected:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:  # a reset, not a FIN the kernel keeps retrying with
                with contextlib.suppress(OSError):  # the send buffer held, for minutes
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
            self.transport.abort()

    def _abort_later(self) -> None:
        if self.close_timer is not None:
            self.close_timer.cancel()
        self.close_timer = self.loop.call_later(self.close_timeout, self._abort)

    async def send(self, message: Any) -> None:
        if (message["type"] == "websocket.close" and self.handshake_complete
                and self.initial_response is None and not self.close_sent):
            # Not behind `await self.writable.wait()`: the close frame is queued
            # after the backlog now; the timer bounds how long it may wait there.
            if self.disconnected:
                raise ClientDisconnected()
            code = message.get("code", 1000)
            reason = message.get("reason", "") or ""
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code,
                                   "reason": reason})
            with contextlib.suppress(InvalidState):
                self.conn.send_close(code, reason)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()
            self._abort_later()
            return
        await super().send(message)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # The parser generator's frame holds the protocol: a cycle per connection
        # that only the collector's oldest generation would free.
        self.conn.parser.close()
        scope = getattr(self, "scope", None)  # and so does the scope's bound method
        if scope is not None:
            scope["extensions"].pop(EXTENSION, None)

    def keepalive_timeout(self) -> None:
        """No pong in time. uvicorn closes the transport, which then waits to flush
        what a client that stopped reading never takes, and does not tell the app.
        Here: the close frame (1011) is queued, the app is told at once (the session
        ends, its subscriptions go) and the connection is reset after the close
        timeout."""
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        with contextlib.suppress(InvalidState):
            self.conn.fail(1011, "keepalive ping timeout")
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": 1011,
                               "reason": "keepalive ping timeout"})
        self._abort_later()

    async def run_asgi(self) -> None:
        await super().run_asgi()
        if not self.disconnected:  # uvicorn closed the transport: bound its flush
            self._abort_later()

    def handle_parser_exception(self) -> None:
        """A frame was refused (1009, 1007, 1002): send the close frame, half-close,
        and keep reading (and dropping) until the client closes, at most
        ``close_timeout``."""
        if self._failed:
            return
        self._failed = True
        assert self.conn.close_sent is not None
        close = self.conn.close_sent
        self.queue.put_nowait({"type": "websocket.disconnect", "code": close.code,
                               "reason": close.reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            self.transport.close()
        self._abort_later()

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
