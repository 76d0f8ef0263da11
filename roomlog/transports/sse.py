"""``GET /v1/rooms/{room}/events``: a room as Server-Sent Events.

The same subscription as a WebSocket (replay, then live, through a bounded
outbox); each message is an event with ``id: <seq>`` so a reconnecting
EventSource resumes through ``Last-Event-ID``. Other frames (``subscribed``,
``reset``, ``error``) are events named after their type. A comment line is sent
every ``sse_keepalive`` seconds so proxies keep the stream open.

A stream ends like a WebSocket when its token expires (an ``error`` event
UNAUTHORIZED) or a ban covers it (``error`` BANNED): the client needs a new
token (or the ban lifted) before it reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from roomlog import logs, params
from roomlog.bans import banned_error
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.hub import Subscription
from roomlog.identity import Grant
from roomlog.limits import Kind, Release
from roomlog.openapi.operation import Auth, Operation, Param, Reply, describe
from roomlog.openapi.schemas import ROOM
from roomlog.outbox import Outbox
from roomlog.protocol import Format, Since, encode, error_frame
from roomlog.services import Services
from roomlog.transports.http import grant_of, handles_errors, room_of

__all__ = ["Stream", "server_sent_events"]

_KEEPALIVE = b": keepalive\n\n"


_OPERATION = Operation(
    "Subscribe to a room as Server-Sent Events", tags=("rooms",), auth=Auth.BEARER_OR_QUERY,
    description="Replay after the position, then live, until the client leaves, the token "
                "expires (an `error` event) or the instance drains. `message` events carry "
                "`id: <seq>`, so `EventSource` resumes through `Last-Event-ID`.",
    params=(ROOM,
            Param("after", "query", {"type": "integer", "minimum": 0},
                  "the last seq the client has (`Last-Event-ID` wins)"),
            Param("epoch", "query", {"type": "string"}, "the epoch the position belongs to"),
            Param("presence", "query", {"type": "string", "enum": ["1", "true"]},
                  "also send `presence_diff` events"),
            Param("Last-Event-ID", "header", {"type": "string", "pattern": "^[0-9]+$"},
                  "sent by `EventSource` when it reconnects")),
    replies={200: Reply("the stream: one event per frame", {"text/event-stream": {
        "type": "object", "required": ["data"],
        "description": "an event (keep-alive comments aside)",
        "properties": {
            "event": {"type": "string", "description": "the frame's type: `message`, "
                      "`subscribed`, `reset`, `skip`, `presence_diff`, `error`"},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "description": "the frame, as on a WebSocket"},
            "id": {"type": "string", "description": "the seq, on `message` events"}}}})},
    errors=(400, 404, 503))


def server_sent_events(services: Services) -> object:
    @describe(_OPERATION)
    @handles_errors
    async def endpoint(request: Request) -> Response:
        grant = grant_of(request, services, allow_query=True)
        services.limits.check(Kind.READ, grant.principal, "http")
        room = room_of(request)
        await services.check_read(room, grant.principal)
        raw = request.headers.get("last-event-id")
        name = "Last-Event-ID"
        if raw is None:
            raw, name = request.query_params.get("after"), "after"
        since = None
        if raw is not None:
            seq = params.integer(raw, name, low=0, high=2**62)
            since = Since(request.query_params.get("epoch") or None, seq)
        presence = request.query_params.get("presence") in ("1", "true")
        release = services.limits.open_user(grant.principal)  # until the stream ends
        return Stream(services, str(room), since, grant, presence, release)

    return endpoint


class Stream(Response):
    """One SSE client; listed in ``services.streams`` while it is open (drain,
    admin disconnects, metrics) and present in its room."""

    media_type = "text/event-stream"

    def __init__(self, services: Services, room: str, since: Since | None,
                 grant: Grant, presence: bool = False,
                 release: Release | None = None) -> None:
        super().__init__(headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
        # Response.__init__ declares the empty body as `content-length: 0`, which
        # would end the stream before its first event: the stream has no length.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._services = services
        self._room = room
        self._since = since
        self.grant = grant
        self.viewer = grant.principal
        self._presence = presence
        self.conn = services.presence.new_conn()
        self._stopped = asyncio.Event()
        self._outbox: Outbox | None = None
        self._sub: Subscription | None = None
        self._release = release  # the user's connection count, given back at the end

    def stop(self) -> None:
        """End the stream (drain, disconnect): the client reconnects elsewhere."""
        self._stopped.set()

    def revoke(self, err: RoomlogError) -> bool:
        """End the stream with an ``error`` event saying why (expired, banned);
        False if it was ending already."""
        if self._stopped.is_set() or self._outbox is None or self._outbox.closed:
            return False
        if self._sub is not None:  # nothing of the room after the error
            self._services.hub.unsubscribe(self._sub)
        self._outbox.put(encode(Format.SSE, error_frame(err) | {"room": self._room}))
        self._stopped.set()
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._run(receive, send)
        finally:
            if self._release is not None:
                self._release()

    async def _run(self, receive: Receive, send: Send) -> None:
        s = self._services.settings
        gone = asyncio.Event()
        outbox = self._outbox = Outbox(Format.SSE, max_frames=s.outbox_max_messages,
                                       max_bytes=s.outbox_max_bytes,
                                       coalesce=s.coalesce_max_frames, on_overflow=gone.set)

        async def write(payload: bytes) -> None:
            await send({"type": "http.response.body", "body": payload, "more_body": True})

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        async def keepalive() -> None:
            while True:
                await asyncio.sleep(s.sse_keepalive)
                if not len(outbox):
                    outbox.put(_KEEPALIVE)

        logs.bind(conn=self.conn)
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        dropped = asyncio.Event()
        services = self._services
        sub = self._sub = services.hub.subscribe(
            self._room, outbox, self._since, on_drop=dropped.set, viewer=self.viewer,
            presence=self._presence)
        services.streams.add(self)
        expiry = asyncio.get_running_loop().call_later(
            max(0.0, self.grant.expires - time.time()), self.revoke,
            RoomlogError(ErrorCode.UNAUTHORIZED, "token expired"))
        services.presence.join(self._room, self.conn, self.viewer)
        ban = services.revocation.blocking(self.grant)
        if ban is not None:  # made since the request was checked, before it was listed
            self.revoke(banned_error(ban))
        if self._presence:
            services.presence.watching(sub)
        tasks = [asyncio.create_task(coro) for coro in
                 (outbox.run(write), until_disconnect(), keepalive(), gone.wait(),
                  dropped.wait(), self._stopped.wait())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if (dropped.is_set() or self._stopped.is_set()) and not gone.is_set():
                with contextlib.suppress(TimeoutError):  # let the error event out first
                    await asyncio.wait_for(outbox.drained(), 2.0)
        finally:
            expiry.cancel()
            services.streams.discard(self)
            services.presence.leave(self._room, self.conn, self.viewer)
            services.hub.unsubscribe(sub)
            outbox.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
