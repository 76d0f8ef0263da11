"""Where the web app (``/``) and the browser client (``/client/``) are served from.

A web directory holds ``web/`` (the pages) and ``js/`` (``roomlog.js``). In order:

1. ``ROOMLOG_WEB_DIR`` when set;
2. ``roomlog/_clients/`` inside the installed package (a wheel: ``setup.py`` copies
   ``clients/web`` and ``clients/js/roomlog.js`` there at build time);
3. ``clients/`` of the source tree (a clone, an editable install).

A configured directory that is missing, or a build without the web app, is logged
as a warning at start naming the paths: the hub then serves its API and no pages.

``/config.json`` tells the pages what the operator configured for them: the token
endpoint they renew their tokens at (``ROOMLOG_WEB_TOKEN_URL``; clients/README.md,
"Tokens for the pages").
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from roomlog.openapi.operation import Auth, Operation, Param, Reply, attach, describe
from roomlog.openapi.schemas import json_reply, ref

__all__ = ["PACKAGED", "SOURCE", "web_mounts", "web_root"]

logger = logging.getLogger(__name__)

PACKAGED = Path(__file__).parent / "_clients"
SOURCE = Path(__file__).parents[1] / "clients"


def _complete(root: Path) -> bool:
    return (root / "web" / "index.html").is_file() and (root / "js" / "roomlog.js").is_file()


def web_root(web_dir: str) -> Path | None:
    """The web directory to serve, or None (after a warning saying why)."""
    if web_dir:
        root = Path(web_dir).resolve()
        if _complete(root):
            return root
        logger.warning("ROOMLOG_WEB_DIR=%s has no web/index.html and js/roomlog.js: serving "
                       "no pages and no /client/roomlog.js. Point it at a directory like "
                       "clients/ of the source, or unset it to serve the packaged web app.",
                       root)
        return None
    for root in (PACKAGED, SOURCE):
        if _complete(root):
            return root
    logger.warning("no web app in %s or %s: serving no pages and no /client/roomlog.js "
                   "(this build left them out; set ROOMLOG_WEB_DIR to a copy of clients/)",
                   PACKAGED, SOURCE)
    return None


def web_mounts(web_dir: str, token_url: str = "") -> list[BaseRoute]:
    """The pages' settings at ``/config.json``, and the mounts of the web app at ``/``
    and the browser client at ``/client/``."""
    config = {"token_url": token_url or None}

    @describe(Operation(
        "What the pages need to know about this deployment", tags=_TAGS, auth=Auth.NONE,
        description="`token_url`: where the pages renew their tokens (null: tokens come with "
                    "the link).",
        replies={200: json_reply("the settings", ref("WebConfig"))}))
    async def web_config(request: Request) -> Response:
        return JSONResponse(config, headers={"cache-control": "no-store"})

    routes: list[BaseRoute] = [Route("/config.json", web_config, methods=["GET"])]
    root = web_root(web_dir)
    if root is None:
        return routes
    client = Mount("/client", StaticFiles(directory=root / "js"))
    pages = Mount("/", StaticFiles(directory=root / "web", html=True))
    return [*routes, attach(client, _file("The browser client (`roomlog.js`, `store.js`, "
                                          "their `.d.ts`)")),
            attach(pages, _file("The web app's pages (`index.html`, `guest.html`, ...)"))]


_TAGS = ("web app",)
_NAME = {"type": "string", "pattern": "^[A-Za-z0-9._-]+$"}


def _file(summary: str) -> Operation:
    return Operation(summary, tags=_TAGS, auth=Auth.NONE,
                     params=(Param("path", "path", _NAME, "a file's name", required=True),),
                     replies={200: Reply("the file", {"*/*": {}})}, errors=(404,))
