"""The ban endpoints of the admin API (``/v1/admin/bans``), for admins and services.

* ``POST /v1/admin/bans``: ban a user (every role, or one ``role``) or one token
  (``jti``), with a ``reason`` and an end (``duration`` in seconds or ``until``
  in ms; neither: until lifted). What is open for it ends on every instance.
* ``GET /v1/admin/bans``: the list, newest first, filtered by ``user``, ``jti``,
  ``status`` (active, expired, lifted, all), paged with ``limit`` and ``before``.
* ``GET /v1/admin/bans/{id}``: one ban. ``DELETE /v1/admin/bans/{id}``: lift it.

``docs/protocol.md`` documents the bodies; ``roomlog.revocation`` how a ban
reaches every instance.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from roomlog.bans import parse_ban, parse_query
from roomlog.console.audit import record
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal
from roomlog.openapi.operation import Body, Operation, Param, describe
from roomlog.openapi.schemas import json_reply, ref
from roomlog.services import Services
from roomlog.transports.http import authenticate, handles_errors, json_body

__all__ = ["BanApi"]

_MAX_BODY = 4096
_TAGS = ("admin",)
_BAN_ID = Param("ban_id", "path", {"type": "integer", "minimum": 0}, "the ban's id")


class BanApi:
    """Endpoints as bound methods; ``app.py`` lists them in its routes."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def _operator(self, request: Request) -> Principal:
        who = authenticate(request, self._s)
        if not who.is_operator:
            raise RoomlogError(ErrorCode.FORBIDDEN, "only admin or service may manage bans")
        return who

    @describe(Operation(
        "Ban a user, one role of a user, or one token", tags=_TAGS,
        description="What is open for it ends on every instance; until `duration`, "
                    "`until`, or until lifted.",
        body=Body({"application/json": ref("BanBody")}),
        replies={201: json_reply("banned", ref("BanCreated"))}, errors=(400, 413, 503)))
    @handles_errors
    async def create(self, request: Request) -> Response:
        """``POST /v1/admin/bans``: 201 ``{"ban": {...}, "closed_here": n}``."""
        who = self._operator(request)
        revocation = self._s.revocation
        now_ms = revocation.now_ms()  # one moment: `duration` and `created` agree
        new = parse_ban(await json_body(request, _MAX_BODY), now_ms)
        ban, closed = await revocation.ban(new, who, now_ms)
        seq = await record(self._s, who, "ban", _target(ban.id, revocation.json(ban)),
                           reason=ban.reason, details={"until": ban.until_ms,
                                                       "closed_here": closed})
        return JSONResponse({"ban": revocation.json(ban), "closed_here": closed,
                             "audit_seq": seq}, status_code=201)

    @describe(Operation(
        "The bans, newest first", tags=_TAGS,
        params=(Param("user", "query", {"type": "string"}, "only this user's"),
                Param("jti", "query", {"type": "string"}, "only this token's"),
                Param("status", "query", {"type": "string",
                                          "enum": ["active", "expired", "lifted", "all"]},
                      "default `all`"),
                Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500},
                      "default 100"),
                Param("before", "query", {"type": "integer", "minimum": 0},
                      "only bans with a lower id: the `next` of the previous page")),
        replies={200: json_reply("a page", ref("BanList"))}, errors=(400, 503)))
    @handles_errors
    async def listing(self, request: Request) -> Response:
        """``GET /v1/admin/bans``: ``{"bans": [...], "next": id | null}``."""
        self._operator(request)
        query = parse_query(dict(request.query_params))
        found = await self._s.revocation.find(query)
        more = len(found) == query.limit
        return JSONResponse({"bans": [self._s.revocation.json(b) for b in found],
                             "next": found[-1].id if more else None})

    @describe(Operation(
        "One ban", tags=_TAGS, params=(_BAN_ID,),
        replies={200: json_reply("the ban", ref("BanOne"))}, errors=(404, 503)))
    @handles_errors
    async def details(self, request: Request) -> Response:
        """``GET /v1/admin/bans/{id}``: ``{"ban": {...}}``."""
        self._operator(request)
        ban = await self._s.revocation.get(_ban_id(request))
        if ban is None:
            raise RoomlogError(ErrorCode.NOT_FOUND, "no such ban")
        return JSONResponse({"ban": self._s.revocation.json(ban)})

    @describe(Operation(
        "Lift a ban on every instance", tags=_TAGS, params=(_BAN_ID,),
        replies={200: json_reply("lifted (or as it was, if lifted before)", ref("BanOne"))},
        errors=(404, 503)))
    @handles_errors
    async def lift(self, request: Request) -> Response:
        """``DELETE /v1/admin/bans/{id}``: lifts the ban everywhere (a ban lifted
        before stays as it was); ``{"ban": {...}}``."""
        who = self._operator(request)
        was = await self._s.revocation.get(_ban_id(request))
        ban = await self._s.revocation.lift(_ban_id(request), who)
        if ban is None:
            raise RoomlogError(ErrorCode.NOT_FOUND, "no such ban")
        shown = self._s.revocation.json(ban)
        seq = None
        if was is not None and was.lifted_ms is None:  # lifted now, not before
            seq = await record(self._s, who, "unban", _target(ban.id, shown),
                               reason=ban.reason)
        return JSONResponse({"ban": shown, "audit_seq": seq})


def _target(ban_id: int, ban: dict[str, Any]) -> dict[str, Any]:
    """What a ban's audit entry names: the ban and whom it covers."""
    return {"ban": ban_id, "user": ban["user"], "role": ban["role"], "jti": ban["jti"]}


def _ban_id(request: Request) -> int:
    """The path's ban id; NOT_FOUND for anything but digits, and beyond what ids reach
    (the route takes any segment: a malformed id is a missing ban, not another route)."""
    raw = request.path_params["ban_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > 2**62:
        raise RoomlogError(ErrorCode.NOT_FOUND, "no such ban")
    return int(raw)
