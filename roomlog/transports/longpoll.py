"""``GET /v1/rooms/{room}/messages``: the log over plain HTTP, with long-polling.

``after`` is the cursor (the last seq the client has), ``epoch`` the log it
belongs to, ``wait`` how long to hold the request open when nothing is new.
The body carries the same frames a WebSocket subscriber gets.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from starlette.requests import Request
from starlette.responses import Response

from roomlog.errors import ProtocolError
from roomlog.hub import stale, wire
from roomlog.log import Page, RoomInfo
from roomlog.protocol import Format, Since
from roomlog.services import Services
from roomlog.transports.http import authenticate, handles_errors, query_int, room_of

__all__ = ["long_poll"]


def long_poll(services: Services) -> object:
    settings = services.settings

    @handles_errors
    async def endpoint(request: Request) -> Response:
        who = authenticate(request, services)
        room = room_of(request)
        await services.check_read(room, who)
        name = str(room)
        limit = query_int(request, "limit", settings.page_size, low=1,
                          high=settings.max_page_size)
        after = query_int(request, "after", -1, low=0, high=2**62)
        try:
            wait = min(float(request.query_params.get("wait", 0)), settings.max_wait)
        except ValueError:
            raise ProtocolError("'wait' must be a number of seconds") from None
        epoch = request.query_params.get("epoch") or None
        async with services.hub.watch(name) as changed:
            if after < 0:  # no cursor: where is the head now?
                info = await services.log.info(name)
                return _reply(Page(info, info.head, []), [])
            page = await services.log.read(name, after, limit)
            # Without an `epoch` the cursor is taken to belong to the log as first read,
            # so a reset during the wait below still comes back as a reset.
            since = Since(epoch or page.info.epoch, after)
            waited = False
            while True:
                reason = stale(since, page.info) or ("trimmed" if page.trimmed else None)
                if reason is not None:
                    reset = await services.hub.reset_frame(name, page.info, reason, who)
                    info = RoomInfo(name, reset["epoch"], max(page.info.head, reset["seq"]),
                                    page.info.trimmed)
                    return _reply(Page(info, reset["seq"], []), [orjson.dumps(reset)])
                if page.messages or wait <= 0 or waited or services.draining:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), wait)
                waited = True
                page = await services.log.read(name, after, limit)
        lens = services.hub.lens(name, who)
        return _reply(page, [wire(m, Format.JSON, lens) for m in page.messages])

    return endpoint


def _reply(page: Page, frames: list[bytes]) -> Response:
    info = page.info
    last = page.messages[-1].seq if page.messages else page.after
    head = orjson.dumps({"room": info.room, "epoch": info.epoch, "head": info.head,
                         "trimmed": info.trimmed, "next": last})
    body = head[:-1] + b',"frames":[' + b",".join(frames) + b"]}"
    return Response(body, media_type="application/json")
