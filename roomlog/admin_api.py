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

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from roomlog.bans import parse_ban, parse_query
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal
from roomlog.services import Services
from roomlog.transports.http import authenticate, handles_errors, json_body

__all__ = ["BanApi"]

_MAX_BODY = 4096


class BanApi:
    """Endpoints as bound methods; ``app.py`` lists them in its routes."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def _operator(self, request: Request) -> Principal:
        who = authenticate(request, self._s)
        if not who.is_operator:
            raise RoomlogError(ErrorCode.FORBIDDEN, "only admin or service may manage bans")
        return who

    @handles_errors
    async def create(self, request: Request) -> Response:
        """``POST /v1/admin/bans``: 201 ``{"ban": {...}, "closed_here": n}``."""
        who = self._operator(request)
        revocation = self._s.revocation
        now_ms = revocation.now_ms()  # one moment: `duration` and `created` agree
        new = parse_ban(await json_body(request, _MAX_BODY), now_ms)
        ban, closed = await revocation.ban(new, who, now_ms)
        return JSONResponse({"ban": revocation.json(ban), "closed_here": closed},
                            status_code=201)

    @handles_errors
    async def listing(self, request: Request) -> Response:
        """``GET /v1/admin/bans``: ``{"bans": [...], "next": id | null}``."""
        self._operator(request)
        query = parse_query(dict(request.query_params))
        found = await self._s.revocation.find(query)
        more = len(found) == query.limit
        return JSONResponse({"bans": [self._s.revocation.json(b) for b in found],
                             "next": found[-1].id if more else None})

    @handles_errors
    async def details(self, request: Request) -> Response:
        """``GET /v1/admin/bans/{id}``: ``{"ban": {...}}``."""
        self._operator(request)
        ban = await self._s.revocation.get(_ban_id(request))
        if ban is None:
            raise RoomlogError(ErrorCode.NOT_FOUND, "no such ban")
        return JSONResponse({"ban": self._s.revocation.json(ban)})

    @handles_errors
    async def lift(self, request: Request) -> Response:
        """``DELETE /v1/admin/bans/{id}``: lifts the ban everywhere (a ban lifted
        before stays as it was); ``{"ban": {...}}``."""
        who = self._operator(request)
        ban = await self._s.revocation.lift(_ban_id(request), who)
        if ban is None:
            raise RoomlogError(ErrorCode.NOT_FOUND, "no such ban")
        return JSONResponse({"ban": self._s.revocation.json(ban)})


def _ban_id(request: Request) -> int:
    """The path's ban id (digits, by the route); NOT_FOUND beyond what ids reach."""
    ban_id = int(request.path_params["ban_id"])
    if ban_id > 2**62:
        raise RoomlogError(ErrorCode.NOT_FOUND, "no such ban")
    return ban_id
