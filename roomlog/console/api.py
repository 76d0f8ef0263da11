"""The console's HTTP endpoints, for operators (admin, service).

* ``GET /v1/admin/instances``: every instance's latest figures (:mod:`.instances`).
* ``GET /v1/admin/rooms?q=&kind=&after=&limit=``: rooms by name (contains, any
  case) and kind, in name order; each with head, epoch, trimmed, subscribers here
  and its presence across instances.
* ``GET /v1/admin/rooms/{room}``: one room: the above, retention, its snapshot,
  who is present, and what a reset would lose.
* ``GET /v1/admin/rooms/{room}/log?after=&limit=&by=&event=&text=``: its log,
  paged with filters (:mod:`.logpage`); no ``after``: the last page.
* ``POST /v1/admin/rooms/{room}/reset`` ``{"confirm": room, "reason"?}``: drop the
  log and start a new epoch; ``confirm`` must repeat the room's name.
* ``POST /v1/admin/rooms/{room}/close`` ``{"reason"?}``: close a queue room
  (``queue.close`` run as the operator).
* ``GET /v1/rooms/{room}/state?at=SEQ&as=AUDIENCE&user=``: time travel
  (:func:`travel`, called by ``Api.state``).

Every moderation action (also the ban, disconnect and reset endpoints of
``roomlog.admin_api`` and ``roomlog.api``) is recorded in ``audit:moderation``
(:mod:`.audit`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from roomlog.commands import Call
from roomlog.console.audit import check_resettable, record
from roomlog.console.catalog import MAX_SEARCH, Catalog, RoomRow
from roomlog.console.logpage import MAX_LIMIT, parse_filter, row
from roomlog.errors import ErrorCode, ProtocolError, RoomlogError
from roomlog.identity import Principal
from roomlog.openapi.operation import (
    Body,
    Operation,
    Param,
    Schema,
    attach,
    describe,
    operations,
)
from roomlog.openapi.schemas import ROOM, SEQ, STRING, json_reply, obj
from roomlog.rooms import KINDS, RoomName
from roomlog.rooms.domain import Command, Event, Meta
from roomlog.rooms.travel import AUDIENCES, Moment, check_audience, fold, show
from roomlog.services import Services
from roomlog.transports.http import authenticate, handles_errors, json_body, query_int, room_of

__all__ = ["ConsoleApi", "travel"]

Endpoint = Callable[[Request], Awaitable[Response]]

_MAX_BODY = 4096
_MAX_REASON = 500
_MAX_QUERY = 200


def _operator(request: Request, s: Services) -> Principal:
    who = authenticate(request, s)
    if not who.is_operator:
        raise RoomlogError(ErrorCode.FORBIDDEN, "the console is for admins and services")
    return who


def _reason(body: dict[str, Any]) -> str | None:
    reason = body.get("reason")
    if reason is None or reason == "":
        return None
    if not isinstance(reason, str) or len(reason) > _MAX_REASON:
        raise ProtocolError(f"'reason' must be a string of at most {_MAX_REASON} characters")
    return reason


async def _presence(s: Services, room: str) -> dict[str, Any] | None:
    """The room's presence across instances; None while the shared store fails."""
    try:
        return await s.presence.list(room)
    except RoomlogError:
        return None


async def travel(s: Services, catalog: Catalog, request: Request, who: Principal,
                 room: RoomName) -> Response:
    """``GET /v1/rooms/{room}/state?at=SEQ&as=AUDIENCE&user=USER`` (operators): the
    room's fold up to ``at`` (default: the head) as ``as`` (default admin) saw it.
    NOT_FOUND for a seq beyond the head, or before the oldest state the log keeps
    (a trimmed log folds from its snapshot, when that is not after ``at``)."""
    if not who.is_operator:
        raise RoomlogError(ErrorCode.FORBIDDEN, "time travel is for admins and services")
    runner = s.publisher.runners.get(room.kind)
    if runner is None:
        raise RoomlogError(ErrorCode.NOT_FOUND, f"{room.kind} rooms keep no state")
    domain = runner.domain
    audience = request.query_params.get("as", "admin")
    check_audience(room.kind, audience)
    user = request.query_params.get("user") or None
    if user is not None and len(user) > _MAX_QUERY:
        raise ProtocolError(f"'user' is longer than {_MAX_QUERY} characters")
    name = str(room)
    info = await s.log.info(name)
    at = query_int(request, "at", info.head, low=0, high=2**62)
    if at > info.head:
        raise RoomlogError(ErrorCode.NOT_FOUND, f"{name} is at seq {info.head}",
                            details={"head": info.head})
    moment = Moment(0, domain.initial(room.id), None, None)
    if info.trimmed > 0 and at > 0:
        snapshot = await catalog.snapshot(name)
        if snapshot is None or not info.trimmed <= snapshot.seq <= at:
            oldest = None if snapshot is None else snapshot.seq
            raise RoomlogError(ErrorCode.NOT_FOUND,
                                f"seqs up to {info.trimmed} were trimmed; the oldest state "
                                f"kept is at seq {oldest}",
                                details={"trimmed": info.trimmed, "oldest": oldest})
        moment = Moment(snapshot.seq, domain.load(orjson.loads(snapshot.state)), None, None)
    # Folded page by page as the pages are read: the loop serves others between pages
    # (a fold of a long log is tens of ms per thousand events: loadtest/travel.py).
    after = max(moment.seq - 1, info.trimmed) if moment.seq else 0  # with its own event
    while after < at:
        page = await s.log.read(name, after, min(s.settings.max_page_size, at - after))
        if page.info.epoch != info.epoch or page.trimmed or not page.messages:
            raise RoomlogError(ErrorCode.CONFLICT, f"{name} changed while it was read: "
                                "it was reset or trimmed; ask again")
        entries = [(Event.from_data(m.data), Meta(m.by, m.seq, m.ts)) for m in page.messages]
        folded = fold(domain, room.id, entries, entries[-1][1].seq,
                      start=(moment.seq, moment.state))
        moment = folded if folded.event is not None else replace(folded, event=moment.event,
                                                                   meta=moment.meta)
        after = page.messages[-1].seq
    body = show(domain, moment, audience, user=user, head=info.head)
    return JSONResponse({"room": name, "epoch": info.epoch, **body})


_TAGS = ("console",)
_ROOM_ROW = obj({"room": STRING, "kind": STRING, "epoch": STRING, "head": SEQ,
                 "trimmed": SEQ}, description="docs/console.md")
_REASON: dict[str, Schema] = {"reason": {"type": "string", "maxLength": _MAX_REASON}}
_AUDITED = ("the action, recorded in `audit:moderation` (its seq: `audit_seq`)")
_TRAVEL = (Param("at", "query", {"type": "integer", "minimum": 0},
                 "time travel (operators): the state after this seq (default: the head)"),
           Param("as", "query", {"type": "string"},
                 "time travel: the audience (admin, dj, guest; technician, customer)"),
           Param("user", "query", {"type": "string", "maxLength": _MAX_QUERY},
                 "time travel: the user the audience is (a guest's own requests)"))


class ConsoleApi:
    """Endpoints as bound methods; ``app.py`` lists them in its routes."""

    def __init__(self, services: Services, catalog: Catalog) -> None:
        self._s = services
        self.catalog = catalog

    def state(self, plain: Endpoint) -> Endpoint:
        """``GET /v1/rooms/{room}/state``: time travel when ``at`` or ``as`` is
        given (:func:`travel`), else ``plain`` (the state at the head)."""
        @handles_errors
        async def endpoint(request: Request) -> Response:
            query = request.query_params
            if "at" not in query and "as" not in query:
                return await plain(request)
            who = authenticate(request, self._s)
            return await travel(self._s, self.catalog, request, who, room_of(request))

        described = [replace(op, params=(*op.params, *_TRAVEL),
                             description="With `at` or `as`: time travel, for admins and "
                                         "services (docs/console.md).",
                             errors=tuple(sorted({*op.errors, 409})))
                     for op in operations(plain)]
        return attach(endpoint, *described)

    @describe(Operation(
        "Every instance's latest figures", tags=_TAGS,
        replies={200: json_reply("the instances", obj(
            {"here": STRING, "interval": {"type": "number"},
             "instances": {"type": "array", "items": {"type": "object"}}}))}))
    @handles_errors
    async def instances(self, request: Request) -> Response:
        """``GET /v1/admin/instances``: ``{"here", "interval", "instances": [...]}``."""
        _operator(request, self._s)
        s = self._s
        return JSONResponse({"here": s.bus.instance, "interval": s.instances.interval,
                             "instances": s.instances.listing(s.clock())})

    def _summary(self, found: RoomRow, presence: dict[str, Any] | None) -> dict[str, Any]:
        kind = found.room.split(":", 1)[0]
        return {"room": found.room, "kind": kind, "epoch": found.epoch, "head": found.head,
                "trimmed": found.trimmed, "created": found.created_ms,
                "snapshot_seq": found.snapshot_seq,
                "domain": kind in self._s.publisher.runners,
                "subscribers_here": self._s.hub.subscriber_count(found.room),
                "presence": None if presence is None else presence["connections"]}

    @describe(Operation(
        "Rooms by name and kind, in name order", tags=_TAGS,
        params=(Param("q", "query", {"type": "string", "maxLength": _MAX_QUERY},
                      "part of the name, any case"),
                Param("kind", "query", {"type": "string", "enum": sorted(KINDS)}, "the kind"),
                Param("after", "query", {"type": "string", "maxLength": _MAX_QUERY},
                      "the `next` of the previous page"),
                Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_SEARCH},
                      "default 50")),
        replies={200: json_reply("a page", obj(
            {"rooms": {"type": "array", "items": _ROOM_ROW},
             "next": {"type": ["string", "null"]}}))}, errors=(400, 503)))
    @handles_errors
    async def search(self, request: Request) -> Response:
        """``GET /v1/admin/rooms``: ``{"rooms": [...], "next": name | null}``."""
        _operator(request, self._s)
        query = request.query_params
        text = query.get("q", "")
        kind = query.get("kind") or None
        after = query.get("after") or None
        if len(text) > _MAX_QUERY or (after is not None and len(after) > _MAX_QUERY):
            raise ProtocolError(f"'q' and 'after' are at most {_MAX_QUERY} characters")
        if kind is not None and kind not in KINDS:
            raise ProtocolError(f"'kind' must be one of {', '.join(sorted(KINDS))}")
        limit = query_int(request, "limit", 50, low=1, high=MAX_SEARCH)
        found = await self.catalog.search(text, kind, after, limit)
        presences = await asyncio.gather(*(_presence(self._s, r.room) for r in found))
        return JSONResponse({"rooms": [self._summary(r, p) for r, p in
                                       zip(found, presences, strict=True)],
                             "next": found[-1].room if len(found) == limit else None})

    @describe(Operation(
        "One room in detail, and what a reset would lose", tags=_TAGS, params=(ROOM,),
        replies={200: json_reply("the room", _ROOM_ROW)}, errors=(400, 404, 503)))
    @handles_errors
    async def room(self, request: Request) -> Response:
        """``GET /v1/admin/rooms/{room}``: one room in detail (NOT_FOUND if never written)."""
        _operator(request, self._s)
        name = str(room_of(request))
        found = await self.catalog.room(name)
        if found is None:
            raise RoomlogError(ErrorCode.NOT_FOUND, f"{name} was never written")
        presence = await _presence(self._s, name)
        settings = self._s.settings
        body = self._summary(found, presence) | {
            "present": None if presence is None else presence["users"],
            "retention": {"max_messages": settings.retention_max_messages,
                          "max_age_s": settings.retention_max_age},
            "audiences": list(AUDIENCES.get(found.room.split(":", 1)[0], ())),
            "reset_loses": {"messages": found.head - found.trimmed,
                            "first": found.trimmed + 1, "last": found.head,
                            "epoch": found.epoch,
                            "state": found.room.split(":", 1)[0] in self._s.publisher.runners,
                            "subscribers": presence["connections"] if presence else
                            self._s.hub.subscriber_count(name)},
        }
        return JSONResponse(body)

    @describe(Operation(
        "A room's log, paged with filters", tags=_TAGS,
        params=(ROOM, Param("after", "query", {"type": "integer", "minimum": 0},
                            "from this seq on (default: the last page)"),
                Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                      "default 50"),
                Param("by", "query", {"type": "string"}, "only messages of this user"),
                Param("event", "query", {"type": "string"}, "only this event or type"),
                Param("text", "query", {"type": "string"}, "only messages containing it")),
        replies={200: json_reply("a page", obj(
            {"room": STRING, "epoch": STRING, "head": SEQ, "trimmed": SEQ,
             "messages": {"type": "array", "items": {"type": "object"}}}))},
        errors=(400, 503)))
    @handles_errors
    async def log(self, request: Request) -> Response:
        """``GET /v1/admin/rooms/{room}/log``: a page of the log, filtered."""
        _operator(request, self._s)
        name = str(room_of(request))
        s = self._s
        limit = query_int(request, "limit", 50, low=1, high=MAX_LIMIT)
        wanted = parse_filter(request.query_params)
        info = await s.log.info(name)
        after = query_int(request, "after", -1, low=0, high=2**62)
        if after < 0:  # the last page (a filtered one: from the oldest kept)
            after = max(info.trimmed, info.head - limit) if wanted.empty else info.trimmed
        after = max(after, info.trimmed)
        start, scanned = after, 0
        messages: list[dict[str, Any]] = []
        budget = s.settings.console_scan_max
        while len(messages) < limit and scanned < budget and after < info.head:
            page = await s.log.read(name, after, min(s.settings.page_size, budget - scanned))
            if page.info.epoch != info.epoch or page.trimmed or not page.messages:
                break  # reset or trimmed meanwhile: what was read is shown; ask again
            for message in page.messages:
                scanned += 1
                after = message.seq
                if wanted.matches(message):
                    messages.append(row(message))
                    if len(messages) == limit:
                        break
        return JSONResponse({
            "room": name, "epoch": info.epoch, "head": info.head, "trimmed": info.trimmed,
            "after": start, "messages": messages, "scanned": scanned,
            "next": after if after < info.head else None,
            "prev": max(info.trimmed, start - limit) if wanted.empty and start > info.trimmed
            else None,
            "filter": wanted.to_json()})

    @describe(Operation(
        "Reset a room: drop its log, start a new epoch", tags=_TAGS, params=(ROOM,),
        description=_AUDITED,
        body=Body({"application/json": obj({"confirm": STRING}, _REASON)}),
        replies={200: json_reply("reset", obj(
            {"room": STRING, "epoch": STRING, "head": SEQ, "dropped": SEQ,
             "audit_seq": SEQ}))}, errors=(400, 404, 413, 503)))
    @handles_errors
    async def reset(self, request: Request) -> Response:
        """``POST /v1/admin/rooms/{room}/reset``: ``{"room", "epoch", "head",
        "dropped", "audit_seq"}``."""
        who = _operator(request, self._s)
        name = str(room_of(request))
        body = await json_body(request, _MAX_BODY)
        if body.get("confirm") != name:
            raise RoomlogError(ErrorCode.INVALID_ARGS,
                                f"resetting drops the log: repeat the room's name in "
                                f"'confirm' ({name!r})")
        reason = _reason(body)
        check_resettable(name)
        before = await self._s.log.info(name)
        info = await self._s.publisher.reset(name)
        dropped = before.head - before.trimmed
        seq = await record(self._s, who, "reset", {"room": name}, reason=reason, details={
            "dropped": dropped, "old_epoch": before.epoch, "old_head": before.head,
            "epoch": info.epoch})
        return JSONResponse({"room": name, "epoch": info.epoch, "head": info.head,
                             "dropped": dropped, "audit_seq": seq})

    @describe(Operation(
        "Close a queue room to new requests", tags=_TAGS, params=(ROOM,),
        description=_AUDITED,
        body=Body({"application/json": obj({}, _REASON)}),
        replies={200: json_reply("closed (or already)", obj(
            {"room": STRING, "changed": {"type": "boolean"}, "audit_seq": SEQ}))},
        errors=(400, 404, 409, 413, 422, 429, 503)))
    @handles_errors
    async def close(self, request: Request) -> Response:
        """``POST /v1/admin/rooms/{room}/close``: close a queue room to new requests
        (``{"room", "seqs", "changed", "audit_seq"}``); the DJ may open it again."""
        who = _operator(request, self._s)
        room = room_of(request)
        if room.kind != "queue":
            raise RoomlogError(ErrorCode.NOT_FOUND, "only queue rooms close")
        reason = _reason(await json_body(request, _MAX_BODY))
        call = Call(who, Command("queue.close", {}), f"console-{secrets.token_hex(8)}")
        outcome = await self._s.gate.command(str(room), call)
        seq = await record(self._s, who, "close_queue", {"room": str(room)}, reason=reason,
                           details={"seqs": outcome.seqs})
        return JSONResponse({"room": str(room), "seqs": outcome.seqs,
                             "changed": bool(outcome.seqs), "audit_seq": seq})
