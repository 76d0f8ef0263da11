"""The ``/ws`` endpoint: thin glue between ASGI and a :class:`Session`.

A raw ASGI app (not Starlette's WebSocket wrapper): the writer task sends
whole outbox backlogs with one ASGI send each, which is what makes fan-out
cheap. Three tasks per connection: the reader (feeds the session), the
writer (drains the outbox) and a wait for the session's close request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from starlette.types import Receive, Scope, Send

from roomlog import logs
from roomlog.errors import CloseCode
from roomlog.openapi.operation import Auth, Operation, Reply, attach
from roomlog.protocol import SUBPROTOCOLS, Format
from roomlog.services import Services
from roomlog.session import Session
from roomlog.transports.uvicorn_ws import EXTENSION

__all__ = ["WebSocketEndpoint"]

logger = logging.getLogger(__name__)

_FLUSH_BEFORE_CLOSE = 2.0  # seconds to deliver a final error frame before closing


_OPERATION = Operation(
    "The WebSocket (upgrade)", tags=("websocket",), auth=Auth.NONE,
    description="Upgrade with subprotocol `roomlog.v1.json` or `roomlog.v1.msgpack`, then "
                "send `connect` with a token: the frames are in docs/protocol.md (OpenAPI "
                "does not describe them). A plain HTTP request, without the upgrade, is 404. "
                "While the server is saturated the upgrade is refused with 503 and "
                "`Retry-After` (ROOMLOG_ADMISSION_MAX_LAG).",
    replies={101: Reply("Switching Protocols: the WebSocket is open")}, errors=(403, 404, 503))


class WebSocketEndpoint:
    def __init__(self, services: Services) -> None:
        self._services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if not self._services.settings.websockets:  # refused like a proxy that blocks them
            self._services.stats.connections_refused["websockets_off"] += 1
            await send({"type": "websocket.close", "code": 1008, "reason": "WebSockets are off"})
            return
        offered = scope.get("subprotocols") or []
        chosen = next((p for p in offered if p in SUBPROTOCOLS), None)
        if offered and chosen is None:
            # The client asked only for protocols we do not speak: refuse the
            # handshake (a close before accept is an HTTP 403 to the client).
            self._services.stats.connections_refused["subprotocol"] += 1
            await send({"type": "websocket.close", "code": 1002,
                        "reason": "supported subprotocols: " + ", ".join(SUBPROTOCOLS)})
            return
        fmt = SUBPROTOCOLS[chosen] if chosen else Format.JSON
        await send({"type": "websocket.accept", "subprotocol": chosen})
        direct_send = scope.get("extensions", {}).get(EXTENSION)
        await _Connection(self._services, fmt, receive, send, direct_send).run()


class _Connection:
    def __init__(self, services: Services, fmt: Format, receive: Receive, send: Send,
                 direct_send: Callable[[bytes, bool], bool] | None) -> None:
        self._receive = receive
        self._send = send
        self._closing: tuple[CloseCode, str] | None = None
        self._close_requested = asyncio.Event()
        self._text = fmt is not Format.MSGPACK
        direct = None
        if direct_send is not None:
            text = self._text

            def direct(payload: bytes) -> bool:
                return direct_send(payload, text)

        self.session = Session(fmt, services, self._request_close, direct)
        self._services = services

    def _request_close(self, code: CloseCode, reason: str) -> None:
        if self._closing is None:
            self._closing = (code, reason)
            self._close_requested.set()

    async def _write(self, payload: bytes) -> None:
        if self._text:
            await self._send({"type": "websocket.send", "text": payload.decode()})
        else:
            await self._send({"type": "websocket.send", "bytes": payload})

    async def _read(self) -> None:
        while True:
            message: dict[str, Any] = dict(await self._receive())
            if message["type"] == "websocket.disconnect":
                return
            payload = message.get("text")
            if payload is None:
                payload = message.get("bytes") or b""
            await self.session.handle(payload)

    async def run(self) -> None:
        logs.bind(conn=self.session.conn)  # the tasks below, and theirs, log it
        self._services.sessions.add(self.session)
        reader = asyncio.create_task(self._read())
        writer = asyncio.create_task(self.session.outbox.run(self._write))
        closer = asyncio.create_task(self._close_requested.wait())
        try:
            await asyncio.wait({reader, writer, closer}, return_when=asyncio.FIRST_COMPLETED)
            failed = reader.exception() if reader.done() and not reader.cancelled() else None
            if failed is not None:  # a bug in handling a frame: say so, on both ends
                logger.error("WebSocket reader failed", exc_info=failed)
                await self._close(writer, CloseCode.INTERNAL, "internal error")
            elif closer.done() and self._closing is not None:
                await self._close(writer, *self._closing)
            elif writer.done() and writer.exception() is not None:
                logger.debug("send failed: %s", writer.exception())
        except Exception:
            logger.exception("connection handler failed")
            await self._close(writer, CloseCode.INTERNAL, "internal error")
        finally:
            who, closing = self.session.principal, self._closing
            logger.debug("WebSocket of %s ends: %s", who.user if who else "nobody yet",
                         f"closed {closing[0]} ({closing[1]})" if closing else "client left")
            self.session.close(CloseCode.NORMAL, "")
            self._services.sessions.discard(self.session)
            for task in (reader, writer, closer):
                task.cancel()
            await asyncio.gather(reader, writer, closer, return_exceptions=True)
            self.session.outbox.close()  # lets go of the session's callbacks (no cycle)

    async def _close(self, writer: asyncio.Task[None], code: CloseCode, reason: str) -> None:
        if code is not CloseCode.SLOW and not writer.done():
            # Let the last frames (the error saying why) reach the client.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.session.outbox.drained(), _FLUSH_BEFORE_CLOSE)
        try:
            # Bounded: a client that stopped reading never makes room for the close
            # frame; returning lets the server drop the socket anyway.
            await asyncio.wait_for(
                self._send({"type": "websocket.close", "code": int(code), "reason": reason}),
                _FLUSH_BEFORE_CLOSE)
        except Exception:  # the client is already gone, or not reading
            logger.debug("close frame not sent", exc_info=True)


attach(WebSocketEndpoint, _OPERATION)  # /openapi.json lists /ws with this
