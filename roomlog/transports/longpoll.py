"""``GET /v1/rooms/{room}/messages``: the log over plain HTTP, with long-polling.

``after`` is the cursor (the last seq the client has), ``epoch`` the log it
belongs to, ``wait`` how long to hold the request open when nothing is new.
The body carries the same frames a WebSocket subscriber gets.

The reader's rights are checked again when the page is returned, not only when
the request came: a request that waited ends with UNAUTHORIZED when its token
expires, BANNED when a ban covers it (it is woken at once), and FORBIDDEN when
the reader lost access to the room meanwhile (a technician removed from a
ticket gets nothing written after the removal).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
from starlette.requests import Request
from starlette.responses import Response

from roomlog import params
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.hub import stale, wire
from roomlog.identity import Grant
from roomlog.limits import Kind
from roomlog.log import Page, RoomInfo
from roomlog.openapi.operation import Operation, Param, describe
from roomlog.openapi.schemas import ROOM, json_reply, ref
from roomlog.protocol import Format, Since
from roomlog.rooms import RoomName
from roomlog.services import Services
from roomlog.transports.http import grant_of, handles_errors, query_int, room_of

__all__ = ["Poll", "long_poll"]

# A wait cut short by the token's expiry may end a hair before it (clocks): a token
# this close to its expiry counts as expired.
_EXPIRY_SLACK = 0.01


class Poll:
    """A long-poll holding its request open, listed in ``services.polls`` so that
    a ban can end it (``roomlog.drain.end_banned``)."""

    def __init__(self, grant: Grant, wake: asyncio.Event) -> None:
        self.grant = grant
        self._wake = wake
        self.revoked: RoomlogError | None = None

    def revoke(self, err: RoomlogError) -> bool:
        """Answer ``err`` now instead of the page; False if it was told already."""
        if self.revoked is not None:
            return False
        self.revoked = err
        self._wake.set()
        return True


_OPERATION = Operation(
    "Read a room's log: history and long-polling", tags=("rooms",),
    description="The frames a WebSocket subscriber gets, after the cursor `after`; with "
                "`wait`, held open until something is committed. Without `after`: the head "
                "only. A `reset` frame says the cursor is void (docs/protocol.md).",
    params=(ROOM,
            Param("after", "query", {"type": "integer", "minimum": 0},
                  "the last seq the client has"),
            Param("epoch", "query", {"type": "string"}, "the epoch `after` belongs to"),
            Param("limit", "query", {"type": "integer", "minimum": 1},
                  "at most this many messages (up to `max_page_size`)"),
            Param("wait", "query", {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
                  "seconds to wait when nothing is new (up to `max_wait`)")),
    replies={200: json_reply("a page of the log", ref("Page"))},
    errors=(400, 404, 503))


def long_poll(services: Services) -> object:
    settings = services.settings

    @describe(_OPERATION)
    @handles_errors
    async def endpoint(request: Request) -> Response:
        grant = grant_of(request, services)
        who = grant.principal
        services.limits.check(Kind.READ, who, "http")
        room = room_of(request)
        await services.check_read(room, who)
        limit = query_int(request, "limit", settings.page_size, low=1,
                          high=settings.max_page_size)
        after = query_int(request, "after", -1, low=0, high=2**62)
        raw_wait = request.query_params.get("wait")
        wait = 0.0 if raw_wait is None else params.seconds(raw_wait, "wait",
                                                            high=settings.max_wait)
        wait = min(wait, max(0.0, grant.expires - time.time()))  # ends with the token
        epoch = request.query_params.get("epoch") or None
        # A poll that may wait holds a connection of its user meanwhile.
        release = services.limits.open_user(who) if wait > 0 else None
        try:
            return await _answer(services, grant, room, after, limit, wait, epoch)
        finally:
            if release is not None:
                release()

    return endpoint


async def _answer(services: Services, grant: Grant, room: RoomName, after: int, limit: int,
                  wait: float, epoch: str | None) -> Response:
    who = grant.principal
    name = str(room)
    async with services.hub.watch(name) as changed:
        poll = Poll(grant, changed)
        services.polls.add(poll)
        try:
            if after < 0:  # no cursor: where is the head now?
                info = await services.log.info(name)
                return _reply(Page(info, info.head, []), [])
            page = await services.log.read(name, after, limit)
            # Without an `epoch` the cursor is taken to belong to the log as first
            # read, so a reset during the wait below still comes back as a reset.
            since = Since(epoch or page.info.epoch, after)
            waited = False
            while True:
                reason = stale(since, page.info) or ("trimmed" if page.trimmed else None)
                if reason is not None:
                    await _still_allowed(services, poll, room, waited)
                    reset = await services.hub.reset_frame(name, page.info, reason, who)
                    info = RoomInfo(name, reset["epoch"],
                                    max(page.info.head, reset["seq"]), page.info.trimmed)
                    return _reply(Page(info, reset["seq"], []), [orjson.dumps(reset)])
                if (page.messages or wait <= 0 or waited or services.draining
                        or poll.revoked is not None):
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), wait)
                waited = True
                if poll.revoked is None:
                    page = await services.log.read(name, after, limit)
            await _still_allowed(services, poll, room, waited)
        finally:
            services.polls.discard(poll)
    lens = services.hub.lens(name, who)
    return _reply(page, [wire(m, Format.JSON, lens) for m in page.messages])


async def _still_allowed(services: Services, poll: Poll, room: RoomName, waited: bool) -> None:
    """The reader rules at the moment the page is returned: not banned meanwhile,
    the token not expired while it waited (a request that did not wait had its
    token checked when it came, with the usual leeway), and still a reader of the
    room (its state now; the page was read before, so nothing after a removal can
    be in it)."""
    if poll.revoked is not None:
        raise poll.revoked
    services.revocation.check(poll.grant)
    if waited and poll.grant.expires - time.time() < _EXPIRY_SLACK:
        raise RoomlogError(ErrorCode.UNAUTHORIZED, "token expired")
    await services.check_read(room, poll.grant.principal)


def _reply(page: Page, frames: list[bytes]) -> Response:
    info = page.info
    last = page.messages[-1].seq if page.messages else page.after
    head = orjson.dumps({"room": info.room, "epoch": info.epoch, "head": info.head,
                         "trimmed": info.trimmed, "next": last})
    body = head[:-1] + b',"frames":[' + b",".join(frames) + b"]}"
    return Response(body, media_type="application/json")
