"""ASGI middleware: at most ``max_connections_per_address`` requests and WebSockets
open at once from one client address, before any token is read.

The address is ``scope["client"]``: the peer, or the client a trusted proxy names
in ``X-Forwarded-For`` (uvicorn rewrites it for peers in ``forwarded_allow_ips``).
Past the cap an HTTP request gets 429 ``LIMIT_EXCEEDED`` and a WebSocket is
accepted and closed at once with 4029 (``CloseCode.LIMITED``), so a client can
tell it from a refused handshake and backs off.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from roomlog.errors import CloseCode, RoomlogError
from roomlog.limits import Limits
from roomlog.protocol import SUBPROTOCOLS
from roomlog.transports.http import error_response

__all__ = ["AddressLimit"]


class AddressLimit:
    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self._app = app
        self._limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        client = scope.get("client")
        try:
            release = self._limits.open_address(client[0] if client else None)
        except RoomlogError as err:
            if kind == "http":
                await error_response(err)(scope, receive, send)
                return
            if (await receive())["type"] == "websocket.connect":
                offered = scope.get("subprotocols") or []
                chosen = next((p for p in offered if p in SUBPROTOCOLS), None)
                await send({"type": "websocket.accept", "subprotocol": chosen})
                await send({"type": "websocket.close", "code": int(CloseCode.LIMITED),
                            "reason": "too many connections from this address"})
            return
        try:
            await self._app(scope, receive, send)
        finally:
            release()
