"""The ASGI middleware every request and WebSocket handshake passes: a request id
and a count by route.

* **Request id**: the client's ``X-Request-Id`` when it is a sane token (letters,
  digits and ``._:-``, at most 128), else a fresh one; bound to the log context
  (``roomlog.logs.request_id``) for everything the request does, uvicorn's access
  line included, and echoed as ``X-Request-Id`` in the response (and in the
  WebSocket handshake's answer), so a client can quote it and an operator can find
  its lines.
* **HTTP count**: ``stats.http_requests[(method, route template, status)]``, the
  template as the router matched it (``/v1/rooms/{room}/messages``, never the room
  itself: bounded labels); ``unmatched`` for paths no route takes. One dict
  increment per request: cheap enough for every request.
"""

from __future__ import annotations

import re
import secrets

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roomlog import logs
from roomlog.stats import HTTP_METHODS, Stats

__all__ = ["HEADER", "RequestContext", "new_request_id"]

HEADER = "x-request-id"
_HEADER_BYTES = HEADER.encode()
_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def _request_id(scope: Scope) -> str:
    value: bytes
    for name, value in scope.get("headers", ()):
        if name == _HEADER_BYTES and _SANE.fullmatch(value):
            return value.decode()
    return secrets.token_hex(8)


def new_request_id(header: bytes | None) -> str:
    """The request id for a request whose ``X-Request-Id`` header is ``header`` (the
    native WebSocket transport, which has no scope)."""
    if header is not None and _SANE.fullmatch(header):
        return header.decode()
    return secrets.token_hex(8)


def route_template(scope: Scope) -> str:
    """The matched route's path template; mounts end in ``/{path}``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return "unmatched"
    if isinstance(route, Mount):
        return f"{path}/{{path}}"
    return str(path)


class RequestContext:
    def __init__(self, app: ASGIApp, stats: Stats) -> None:
        self._app = app
        self._stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        rid = _request_id(scope)
        logs.bind(request=rid)
        echo = (_HEADER_BYTES, rid.encode())
        status = 500  # what the client gets if the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] in ("http.response.start", "websocket.accept"):
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), echo]
                status = message.get("status", status)
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        finally:
            if kind == "http":
                method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
                self._stats.http_requests[(method, route_template(scope), status)] += 1
