"""The routes that serve the description: ``GET /openapi.json`` (built from the app's
own routes on the first request, then kept) and the docs page ``GET /docs`` with its
assets (Swagger UI, vendored in ``assets/``: the page needs no internet)."""

from __future__ import annotations

from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

import roomlog
from roomlog.openapi.generate import document
from roomlog.openapi.operation import Auth, Operation, Param, Reply, attach, describe
from roomlog.openapi.schemas import json_reply

__all__ = ["ASSETS", "DESCRIPTION", "docs_routes"]

ASSETS = Path(__file__).parent / "assets"
SWAGGER_UI = "5.35.0"  # assets/README.md says how to update it

DESCRIPTION = """\
The HTTP endpoints of a roomlog hub, generated from its code. Rooms, frames, error codes,
limits and the WebSocket protocol are documented in `docs/protocol.md`; every error body
is `{"error": {"code", "message"}}` with a code listed there.

Authenticate with `Authorization: Bearer <token>` (a JWT: `roomlog token --user u1 --role
admin` prints one for development; the **Authorize** button takes it). Browsers on another
origin may call these endpoints when the operator lists that origin in
`ROOMLOG_CORS_ORIGINS` (README, "Calling the hub from another origin").
"""

# The page runs only what it loads from here: no inline script, no other origin.
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
        "frame-ancestors 'none'")

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>roomlog HTTP API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body>
<div id="api"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/docs.js"></script>
</body>
</html>
"""

_DOCS = ("docs",)


def docs_routes() -> list[BaseRoute]:
    """``/openapi.json``, ``/docs`` and ``/docs/assets/``; put them before any
    catch-all mount."""
    cached: list[bytes] = []

    @describe(Operation(
        "This description (OpenAPI 3.1)", tags=_DOCS, auth=Auth.NONE,
        description="Generated from the routes of the running hub, so it lists exactly "
                    "what this hub serves.",
        replies={200: json_reply("the OpenAPI document", {"type": "object",
                                                          "required": ["openapi", "paths"]})}))
    async def openapi_json(request: Request) -> Response:
        if not cached:
            doc = document(request.app.routes, title="roomlog HTTP API",
                           version=roomlog.__version__, description=DESCRIPTION)
            cached.append(orjson.dumps(doc))
        return Response(cached[0], media_type="application/json")

    @describe(Operation(
        "A readable page of this description", tags=_DOCS, auth=Auth.NONE,
        description="Swagger UI (served by the hub itself; it needs no internet).",
        replies={200: Reply("the page", {"text/html": {"type": "string"}})}))
    async def docs_page(request: Request) -> Response:
        return HTMLResponse(_PAGE, headers={"content-security-policy": _CSP,
                                            "x-content-type-options": "nosniff"})

    assets = attach(Mount("/docs/assets", StaticFiles(directory=ASSETS)), Operation(
        "The docs page's scripts and styles", tags=_DOCS, auth=Auth.NONE,
        description=f"Swagger UI {SWAGGER_UI} (Apache-2.0; its licence is served here too).",
        params=(Param("path", "path", {"type": "string", "pattern": "^[A-Za-z0-9._-]+$"},
                      "a file name, such as "
                      "`swagger-ui.css`", required=True),),
        replies={200: Reply("the file", {"*/*": {}})}, errors=(404,)))
    return [Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/docs", docs_page, methods=["GET"]), assets]
