"""uvicorn's httptools HTTP protocol with bounded request heads: no unauthenticated
stall. The one module that reaches into uvicorn's HTTP internals (``roomlog serve``
passes it as uvicorn's ``http`` protocol class).

uvicorn bounds neither the size of a request's head (request line and headers) nor
the time a client may take to send it: one connection sending a 96 MiB header made
the parser concatenate values quadratically and froze the event loop, and sockets
sending a header byte every few seconds stayed open for good. Here:

* **size**: a head above ``max_header_bytes`` is answered ``431`` (a JSON error body,
  ``PAYLOAD_TOO_LARGE``) and the connection closed; at most one read (64 KiB) past
  the limit is parsed, the rest is read and dropped until the client closes (at
  most ``header_timeout``), so that it reads the answer instead of a reset.
* **time**: a head not complete ``header_timeout`` seconds after its first byte (or
  after the connection opened) is answered ``408`` (``BAD_FRAME``) and the
  connection closed. Idle keep-alive connections stay uvicorn's business
  (``timeout_keep_alive``).

Both hold before any token is read, for plain requests and WebSocket handshakes alike.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["BoundedHttpProtocol"]

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class BoundedHttpProtocol(HttpToolsProtocol):
    #: largest request head in bytes, and seconds to send it (``configured`` sets them)
    max_header_bytes = 65_536
    header_timeout = 10.0

    @classmethod
    def configured(cls, max_header_bytes: int, header_timeout: float) -> type[BoundedHttpProtocol]:
        """This protocol with its own bounds (uvicorn takes a class)."""
        return type(cls.__name__, (cls,), {"max_header_bytes": max_header_bytes,
                                           "header_timeout": header_timeout})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between requests, and until a request's head is complete
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def _start_clock(self) -> None:
        if self._head_timer is None and self.header_timeout > 0:
            self._head_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _stop_clock(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
            self._start_clock()
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_header_bytes > 0:
            self._refuse(431, "PAYLOAD_TOO_LARGE",
                         f"request head above {self.max_header_bytes} bytes (max_header_bytes)")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._stop_clock()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next request's head starts with its first byte

    def handle_websocket_upgrade(self) -> None:
        self._stop_clock()
        self._in_head = False
        super().handle_websocket_upgrade()
        # The parser calls back into this protocol and this protocol holds the
        # parser: after the hand-over nothing else does, and the cycle would wait
        # for a full collection.
        self.parser = None  # type: ignore[assignment]

    def _too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and self._head_bytes and not self.transport.is_closing():
            self._refuse(408, "BAD_FRAME", f"request head not complete within "
                                           f"{self.header_timeout:g} s (header_timeout)")
        elif self._in_head and not self._head_bytes and self.cycle is None:
            self.transport.close()  # opened and never sent a byte

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._refused = True
        self._stop_clock()
        body = orjson.dumps({"error": {"code": code, "message": message}})
        self.transport.write(b"".join([
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n", body]))
        # Half-close and drop what still comes, until the client closes (at most
        # header_timeout): closing at once with unread bytes would reset the
        # connection, and the client would never read the answer.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(max(1.0, self.header_timeout), self.transport.abort)
        else:
            self.transport.close()
