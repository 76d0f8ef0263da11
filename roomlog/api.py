"""HTTP API for backends and admins: publish, commands, state, analytics, rooms,
presence, disconnects, health and metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from roomlog.commands import call_of, retained_events
from roomlog.console.audit import check_resettable, record
from roomlog.drain import disconnect_here
from roomlog.errors import CloseCode, ErrorCode, ProtocolError, RoomlogError
from roomlog.identity import Principal, Role
from roomlog.limits import Kind
from roomlog.log import Append
from roomlog.metrics import Exporter
from roomlog.openapi.operation import Auth, Body, Operation, Param, Reply, describe
from roomlog.openapi.schemas import ROOM, json_reply, ref
from roomlog.protocol import encode_data, parse_command, parse_id
from roomlog.rooms.domain import Event, Meta
from roomlog.rooms.queue_analytics import summarize, to_csv
from roomlog.rooms.repair import can_open_upload
from roomlog.rooms.repair_stats import parse_sla
from roomlog.rooms.repair_stats import summarize as repair_summary
from roomlog.rooms.repair_stats import to_csv as repair_csv
from roomlog.services import Services
from roomlog.transports.http import (
    authenticate,
    handles_errors,
    json_body,
    query_int,
    read_body,
    room_of,
)

__all__ = ["Api"]

# An uploaded file is served as what we checked it is, and nothing in it may run
# if a browser opens it as a page: no type sniffing, no scripts, no plugins, no
# frames, and a sandbox (an opaque origin: no cookies, no storage of ours).
_INERT = {"x-content-type-options": "nosniff",
          "content-security-policy": "default-src 'none'; sandbox"}

# What the endpoints below say about themselves in /openapi.json (roomlog.openapi).
_ROOMS, _ADMIN, _HEALTH = ("rooms",), ("admin",), ("health",)
_RANGE = (Param("from", "query", {"type": "integer", "minimum": 0},
                "earliest submission time, ms since the Unix epoch"),
          Param("to", "query", {"type": "integer", "minimum": 0},
                "latest submission time, ms since the Unix epoch"),
          Param("format", "query", {"type": "string", "enum": ["json", "csv"]},
                "`csv`: one flat table"))
_CSV = {"text/csv": {"type": "string"}}
_JSON_BODY = (400, 413)  # not a JSON object; above the size limit


class Api:
    """Endpoints as bound methods; ``app.py`` lists them in its routes."""

    def __init__(self, services: Services) -> None:
        self._s = services
        self._metrics = Exporter(services)
        try:
            self._sla = parse_sla(services.settings.repair_sla)
        except ValueError as err:
            raise SystemExit(f"setting repair_sla: {err}") from None

    async def _rate_limit(self, who: Principal) -> None:
        """The user's write bucket, shared with its WebSockets (``roomlog.limits``):
        RATE_LIMITED, with Retry-After, when spent."""
        await self._s.limits.write(who, "http")

    def _read(self, who: Principal) -> None:
        self._s.limits.check(Kind.READ, who, "http")

    @describe(Operation(
        "Publish a message to a room", tags=_ROOMS, params=(ROOM,),
        description="Plain rooms; stored, then delivered on every transport. Retrying "
                    "with the same `id` stores nothing new (200, `duplicate: true`).",
        body=Body({"application/json": ref("PublishBody")}),
        replies={201: json_reply("stored", ref("Published")),
                 200: json_reply("a duplicate `id`: the first message", ref("Published"))},
        errors=(*_JSON_BODY, 404, 409, 429, 503)))
    @handles_errors
    async def publish(self, request: Request) -> Response:
        """``POST /v1/rooms/{room}/messages`` with ``{"data": ..., "id": "..."}``."""
        who = authenticate(request, self._s)
        room = room_of(request)
        room.check_publish(who)
        await self._rate_limit(who)
        settings = self._s.settings
        body = await json_body(request, settings.max_frame_bytes)
        ident = parse_id(body.get("id"))
        if "data" not in body:
            raise ProtocolError("the body needs 'data'")
        raw = encode_data(body["data"], settings.max_data_bytes,
                          max_depth=settings.max_nesting_depth)
        result = await self._s.gate.publish(str(room), Append(who.user, raw, ident), who)
        return JSONResponse({"room": str(room), "id": ident, "seq": result.seq,
                             "epoch": result.epoch, "duplicate": result.duplicate},
                            status_code=200 if result.duplicate else 201)

    @describe(Operation(
        "Run a command in a domain room", tags=_ROOMS, params=(ROOM,),
        description="Queue and repair rooms (docs/queue.md, docs/repair.md). The answer is "
                    "the WebSocket `ack`; a retried `id` returns the first outcome.",
        body=Body({"application/json": ref("CommandBody")}),
        replies={200: json_reply("done (or the first outcome of this id)", ref("CommandAck"))},
        errors=(*_JSON_BODY, 404, 409, 429, 503)))
    @handles_errors
    async def command(self, request: Request) -> Response:
        """``POST /v1/rooms/{room}/commands`` with ``{"name", "args", "id", "expected_seq"?}``."""
        who = authenticate(request, self._s)
        room = room_of(request)
        await self._rate_limit(who)
        settings = self._s.settings
        frame = parse_command(await json_body(request, settings.max_frame_bytes), room,
                              max_depth=settings.max_nesting_depth)
        call = call_of(who, frame)
        await self._s.check_command(room, frame.name, frame.args, call.who)
        outcome = await self._s.gate.command(str(room), call)
        return JSONResponse(outcome.frame(str(room), frame.id))

    @describe(Operation(
        "A domain room's state, as the caller may see it", tags=_ROOMS, params=(ROOM,),
        replies={200: json_reply("the state at `seq`", ref("RoomState"))},
        errors=(400, 404, 503)))
    @handles_errors
    async def state(self, request: Request) -> Response:
        """``GET /v1/rooms/{room}/state``: a domain room's state as the caller may see it."""
        who = authenticate(request, self._s)
        self._read(who)
        room = room_of(request)
        await self._s.check_read(room, who)
        runner = self._s.publisher.runners.get(room.kind)
        if runner is None:
            raise RoomlogError(ErrorCode.NOT_FOUND, f"{room.kind} rooms keep no state")
        seq, epoch, view = await runner.view(self._s.log, str(room), who)
        if view.get("readable") is False:  # access ended since the check above
            raise RoomlogError(ErrorCode.FORBIDDEN, f"{who.user} may not read {room}")
        return JSONResponse({"room": str(room), "epoch": epoch, "seq": seq, "state": view})

    @describe(Operation(
        "Queue analytics (the room's DJ, admins, services)", tags=_ROOMS,
        params=(ROOM, *_RANGE),
        replies={200: Reply("the report", {"application/json": ref("Analytics"), **_CSV})},
        errors=(400, 404, 503)))
    @handles_errors
    async def analytics(self, request: Request) -> Response:
        """``GET /v1/rooms/{room}/analytics?from=&to=&tz=&format=json|csv`` (staff):
        computed from the room's retained log; ``from``/``to`` are ms timestamps,
        ``tz`` the reader's offset in minutes east of UTC (the hour-of-day chart)."""
        who = authenticate(request, self._s)
        self._read(who)
        room = room_of(request)
        runner = self._s.publisher.runners.get(room.kind)
        if room.kind != "queue" or runner is None:
            raise RoomlogError(ErrorCode.NOT_FOUND, "analytics exist for queue rooms")
        _, _, view = await runner.view(self._s.log, str(room), who)
        if not (who.is_operator or (who.role is Role.DJ and view.get("owner") in (None, who.user))):
            raise RoomlogError(ErrorCode.FORBIDDEN, "analytics are for the room's DJ and admins")
        start, end = _time_range(request)
        offset = query_int(request, "tz", 0, low=-16 * 60, high=16 * 60)
        report = summarize(await self._events(str(room)), start_ms=start, end_ms=end,
                           utc_offset_min=offset)
        report["room"] = str(room)
        if request.query_params.get("format") == "csv":
            return Response(to_csv(report), media_type="text/csv; charset=utf-8")
        return JSONResponse(report)

    @describe(Operation(
        "A room's epoch, head and oldest retained seq", tags=_ROOMS, params=(ROOM,),
        replies={200: json_reply("the room", ref("RoomInfo"))}, errors=(400, 404, 503)))
    @handles_errors
    async def room_info(self, request: Request) -> Response:
        """``GET /v1/rooms/{room}``: epoch, head and the oldest retained seq."""
        who = authenticate(request, self._s)
        self._read(who)
        room = room_of(request)
        await self._s.check_read(room, who)
        info = await self._s.log.info(str(room))
        return JSONResponse({"room": info.room, "epoch": info.epoch, "head": info.head,
                             "trimmed": info.trimmed,
                             "subscribers": self._s.hub.subscriber_count(info.room)})

    @describe(Operation(
        "Reset a room: drop its log, start a new epoch (admin, service)", tags=_ROOMS,
        params=(ROOM,), replies={200: json_reply("the new epoch", ref("RoomReset"))},
        errors=(400, 404, 503)))
    @handles_errors
    async def reset_room(self, request: Request) -> Response:
        """``DELETE /v1/rooms/{room}`` (admin): drop the log, start a new epoch."""
        who = authenticate(request, self._s)
        if not who.is_operator:
            raise RoomlogError(ErrorCode.FORBIDDEN, "only admin or service may reset a room")
        name = str(room_of(request))
        check_resettable(name)
        before = await self._s.log.info(name)
        info = await self._s.publisher.reset(name)
        seq = await record(self._s, who, "reset", {"room": name}, details={
            "dropped": before.head - before.trimmed, "old_epoch": before.epoch,
            "old_head": before.head, "epoch": info.epoch})
        return JSONResponse({"room": info.room, "epoch": info.epoch, "head": info.head,
                             "audit_seq": seq})

    @describe(Operation(
        "Who is in a room, on every instance", tags=_ROOMS, params=(ROOM,),
        replies={200: json_reply("the members", ref("Presence"))}, errors=(400, 404, 503)))
    @handles_errors
    async def presence(self, request: Request) -> Response:
        """``GET /v1/rooms/{room}/presence``: who is in the room, on every instance."""
        who = authenticate(request, self._s)
        self._s.limits.check(Kind.PRESENCE, who, "http")
        room = room_of(request)
        await self._s.check_read(room, who)
        return JSONResponse(await self._s.presence.list(str(room)))

    @describe(Operation(
        "Close a user's or a connection's sockets on every instance (admin, service)",
        tags=_ADMIN, body=Body({"application/json": ref("DisconnectBody")}),
        replies={200: json_reply("closed here, and told the others", ref("Disconnected"))},
        errors=_JSON_BODY))
    @handles_errors
    async def disconnect(self, request: Request) -> Response:
        """``POST /v1/admin/disconnect`` (admin, service) with ``{"user"}`` or
        ``{"conn"}``, optional ``"code"`` (4003 stop, 4001 token revoked, 1001
        reconnect) and ``"reason"``: closes them on every instance, once. To keep
        someone out, ban them (``roomlog.admin_api``)."""
        who = authenticate(request, self._s)
        if not who.is_operator:
            raise RoomlogError(ErrorCode.FORBIDDEN, "only admin or service may disconnect")
        body = await json_body(request, 4096)
        user, conn = body.get("user"), body.get("conn")
        if not any(isinstance(v, str) and v for v in (user, conn)):
            raise ProtocolError("name a 'user' or a 'conn' to disconnect")
        code = body.get("code", int(CloseCode.FORBIDDEN))
        allowed = (CloseCode.FORBIDDEN, CloseCode.UNAUTHORIZED, CloseCode.GOING_AWAY)
        if code not in [int(c) for c in allowed]:
            raise ProtocolError("'code' must be 4003 (stop), 4001 (token revoked) or "
                                "1001 (reconnect)")
        payload = {"disconnect": {"user": user, "conn": conn, "code": code,
                                  "reason": body.get("reason")}}
        self._s.bus.broadcast(payload)  # the other instances
        closed = disconnect_here(self._s, payload)
        reason = body.get("reason")
        seq = await record(self._s, who, "disconnect", {"user": user, "conn": conn},
                           reason=reason if isinstance(reason, str) else None,
                           details={"code": code, "closed_here": closed})
        return JSONResponse({"closed_here": closed, "broadcast": True, "audit_seq": seq})

    @describe(Operation(
        "Upload a repair photo (staff)", tags=_ROOMS, params=(ROOM,),
        description="JPEG, PNG or WebP, checked from signature to end; then `photo.add` "
                    "with the `upload_id`.",
        body=Body({t: {"type": "string", "contentMediaType": t}
                   for t in ("image/jpeg", "image/png", "image/webp")}),
        replies={201: json_reply("stored", ref("Upload"))},
        errors=(*_JSON_BODY, 404, 429, 503)))
    @handles_errors
    async def upload_photo(self, request: Request) -> Response:
        """``POST /v1/rooms/repair:{ticket}/photos``: the image as the body, with its
        Content-Type. Staff who may read the ticket; the reply's ``upload_id`` goes
        into ``photo.add``."""
        who = authenticate(request, self._s)
        room = room_of(request)
        if room.kind != "repair":
            raise RoomlogError(ErrorCode.NOT_FOUND, "photos belong to repair rooms")
        if who.role not in (Role.TECHNICIAN, Role.ADMIN, Role.SERVICE):
            raise RoomlogError(ErrorCode.FORBIDDEN, "only staff upload photos")
        await self._s.check_read(room, who)
        runner = self._s.publisher.runners[room.kind]
        if not await runner.read(self._s.log, str(room), lambda state: state.exists):
            raise RoomlogError(ErrorCode.NOT_FOUND, f"no ticket {room.id!r}: create it first")
        await self._rate_limit(who)
        body = await read_body(request, self._s.settings.max_upload_bytes)
        upload_id = await self._s.media.save(str(room), request.headers.get("content-type", ""),
                                             body)
        return JSONResponse({"room": str(room), "upload_id": upload_id, "bytes": len(body),
                             "url": f"/v1/rooms/{room}/photos/{upload_id}"}, status_code=201)

    @describe(Operation(
        "A repair photo, for those who see it in the ticket", tags=_ROOMS,
        auth=Auth.BEARER_OR_QUERY,
        params=(ROOM, Param("upload_id", "path", {"type": "string"}, "from the upload")),
        replies={200: Reply("the image, as checked at upload", {"image/*": {}})},
        errors=(400, 404, 503)))
    @handles_errors
    async def open_photo(self, request: Request) -> Response:
        """``GET /v1/rooms/repair:{ticket}/photos/{upload_id}`` (Bearer or ``?token=``,
        for ``<img>``): for those who see the photo in the ticket."""
        who = authenticate(request, self._s, allow_query=True)
        self._read(who)
        room = room_of(request)
        upload_id = request.path_params["upload_id"]
        runner = self._s.publisher.runners.get(room.kind)
        if room.kind != "repair" or runner is None:
            raise RoomlogError(ErrorCode.NOT_FOUND, "photos belong to repair rooms")
        room.check_subscribe(who)
        allowed = await runner.read(self._s.log, str(room),
                                    lambda state: can_open_upload(state, who, upload_id))
        found = await self._s.media.find(str(room), upload_id) if allowed else None
        if found is None:  # not yours and not there look the same
            raise RoomlogError(ErrorCode.NOT_FOUND, "no such photo in this ticket")
        path, content_type = found
        return FileResponse(path, media_type=content_type, headers=_INERT | {
            "cache-control": "private, max-age=3600"})

    @describe(Operation(
        "Repair statistics from the `repairs:all` feed (admin, service)", tags=_ROOMS,
        params=_RANGE,
        replies={200: Reply("the report", {"application/json": ref("RepairStats"), **_CSV})},
        errors=(400, 503)))
    @handles_errors
    async def repair_stats(self, request: Request) -> Response:
        """``GET /v1/repairs/stats?from=&to=&format=json|csv`` (admin, service):
        from the ``repairs:all`` feed, which holds every ticket's events."""
        who = authenticate(request, self._s)
        self._read(who)
        if not who.is_operator:
            raise RoomlogError(ErrorCode.FORBIDDEN, "repair statistics are for admins")
        start, end = _time_range(request)
        report = repair_summary(await self._events("repairs:all"), start_ms=start, end_ms=end,
                                sla_ms=self._sla)
        if request.query_params.get("format") == "csv":
            return Response(repair_csv(report), media_type="text/csv; charset=utf-8")
        return JSONResponse(report)

    async def _events(self, room: str) -> list[tuple[Event, Meta]]:
        return await retained_events(self._s.log, room, self._s.settings.max_page_size)

    @describe(Operation(
        "Liveness: the process serves requests", tags=_HEALTH, auth=Auth.NONE,
        replies={200: json_reply("alive", ref("Live"))}))
    async def live(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @describe(Operation(
        "Readiness: a write transaction commits now", tags=_HEALTH, auth=Auth.NONE,
        replies={200: json_reply("ready (`degraded`: the bus is down, the log is polled)",
                                 ref("Ready")),
                 503: json_reply("draining, or the database cannot commit", ref("Ready"))}))
    async def ready(self, request: Request) -> Response:
        """200 while this instance can serve (the bus may be degraded: it then polls
        the log); 503 when the instance is draining or a write transaction cannot
        commit now: the database is down, locked (a wedged SQLite writer, another
        process holding its lock), read-only, or slower than ``ready_timeout``."""
        s = self._s
        bus = "ok" if s.cluster.connected else "degraded"
        body: dict[str, Any] = {"bus": bus, "instance": s.bus.instance,
                                "connections": len(s.sessions), "rooms": len(s.hub.rooms)}
        if s.draining:
            return JSONResponse(body | {"status": "draining"}, status_code=503)
        limit = s.settings.ready_timeout
        try:
            async with asyncio.timeout(limit):
                await s.log.check()
        except TimeoutError:
            why = f"no write transaction committed within {limit} s"
            return JSONResponse(body | {"status": "unavailable", "database": why},
                                status_code=503)
        except RoomlogError as err:
            return JSONResponse(body | {"status": "unavailable", "database": err.message},
                                status_code=503)
        return JSONResponse(body | {"status": "ok" if bus == "ok" else "degraded",
                                    "database": "ok"})

    @describe(Operation(
        "Prometheus metrics", tags=_HEALTH, auth=Auth.NONE,
        replies={200: Reply("the text exposition format", {"text/plain": {"type": "string"}})}))
    async def metrics(self, request: Request) -> Response:
        """``GET /metrics``: Prometheus text format."""
        await self._metrics.probe()
        body, content_type = self._metrics.render()
        return Response(body, media_type=content_type)


def _time_range(request: Request) -> tuple[int | None, int | None]:
    """``from`` and ``to`` (ms timestamps) of a statistics request; None when absent."""
    start = query_int(request, "from", -1, low=0, high=2**62)
    end = query_int(request, "to", -1, low=0, high=2**62)
    return (None if start < 0 else start), (None if end < 0 else end)
