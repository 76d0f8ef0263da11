"""CORS: which other origins' pages may call the HTTP API from a browser.

None by default: a browser then lets only pages served by the hub itself read its
answers. ``ROOMLOG_CORS_ORIGINS`` lists the origins (``https://club.example``,
``http://localhost:5173``) whose pages may, or is ``*`` for any page.

The policy, the same for every HTTP endpoint (long-poll, SSE, commands, publish, the
admin API, ``/openapi.json``):

* **No credentials.** The hub authenticates with a bearer token in the
  ``Authorization`` header (or ``?token=`` for ``EventSource``), never with cookies,
  so ``Access-Control-Allow-Credentials`` is never sent: a page calls with
  ``fetch(url, {headers: {Authorization: ...}})`` and the default
  ``credentials: "same-origin"``, and ``new EventSource(url + "?token=...")`` without
  ``withCredentials``. A page on another origin can therefore do nothing its own token
  does not allow, and ``*`` exposes nothing that a listed origin would not.
* **Preflight answered**: ``OPTIONS`` with ``Access-Control-Request-Method`` gets 200
  for a listed origin, a method in :data:`METHODS` and headers in :data:`HEADERS`
  (cached by the browser ``cors_max_age`` seconds); 400 naming what is not allowed
  otherwise.
* **Exposed headers**: ``X-Request-Id``, ``Retry-After`` and ``WWW-Authenticate``
  (a page can read them).
* The WebSocket is not subject to CORS (browsers do not apply it to ``/ws``): its
  token is sent in the ``connect`` frame, never as a cookie, so a page of any origin
  can open it and gets only what its token allows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["EXPOSED", "HEADERS", "METHODS", "CrossOrigin", "cors_middleware", "parse_origins"]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
HEADERS = ("authorization", "content-type", "last-event-id", "x-request-id")
EXPOSED = ("x-request-id", "retry-after", "www-authenticate")

_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def parse_origins(raw: str) -> tuple[str, ...]:
    """The origins of ``ROOMLOG_CORS_ORIGINS`` (comma- or space-separated); ValueError
    naming one that is not ``scheme://host[:port]`` (no path, no trailing slash), or
    ``*`` beside others."""
    origins = tuple(o for o in re.split(r"[,\s]+", raw.strip()) if o)
    if "*" in origins:
        if len(origins) > 1:
            raise ValueError("ROOMLOG_CORS_ORIGINS: '*' (any origin) stands alone")
        return origins
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise ValueError(f"ROOMLOG_CORS_ORIGINS: {origin!r} is not an origin: write "
                             "scheme://host[:port], as a browser sends it in `Origin` "
                             "(no path, no trailing slash)")
    return tuple(dict.fromkeys(origins))


def cors_middleware(origins: str, max_age: int) -> Middleware:
    """Starlette's CORS middleware with the hub's policy (module docstring); with no
    origins it answers every preflight 400 and adds no header that would let a page
    of another origin read an answer."""
    try:
        allowed = parse_origins(origins)
    except ValueError as exc:  # like a setting that cannot be read: say so, and stop
        raise SystemExit(str(exc)) from None
    return Middleware(CrossOrigin, origins=allowed, max_age=max_age)


class CrossOrigin:
    """Starlette's CORS middleware for requests from another origin only.

    A request of the hub's own pages carries ``Origin`` too (module scripts, POSTs):
    it passes untouched. CORSMiddleware would add ``Vary: Origin`` to it, and the
    pages' service worker, whose cache honours ``Vary``, would then not find the
    files it stored for the offline shell. Same origin is judged by the host (and
    port) the request was sent to: a page of another scheme on the same host gets no
    CORS headers, which the browser takes as a refusal (the safe side).
    """

    def __init__(self, app: ASGIApp, origins: Sequence[str], max_age: int) -> None:
        self._app = app
        self._cors = CORSMiddleware(app, allow_origins=origins, allow_methods=METHODS,
                                    allow_headers=HEADERS, expose_headers=EXPOSED,
                                    allow_credentials=False, max_age=max_age)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _from_elsewhere(scope):
            await self._cors(scope, receive, send)
        else:
            await self._app(scope, receive, send)


def _from_elsewhere(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    origin = headers.get("origin")
    if origin is None:
        return False
    _, _, netloc = origin.partition("://")
    return not netloc or netloc.lower() != headers.get("host", "").lower()
