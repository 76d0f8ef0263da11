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

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

__all__ = ["EXPOSED", "HEADERS", "METHODS", "cors_middleware", "parse_origins"]

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
    return Middleware(CORSMiddleware, allow_origins=allowed,
                      allow_methods=METHODS, allow_headers=HEADERS, expose_headers=EXPOSED,
                      allow_credentials=False, max_age=max_age)
