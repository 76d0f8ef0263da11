"""One WebSocket client: authentication, subscriptions, publishes, its outbox.

The transport feeds inbound payloads to :meth:`Session.handle` and drains
``session.outbox``; the session asks it to close through the ``close``
callback. The session's state only moves forward, in one place
(:meth:`Session._enter`): AWAITING_CONNECT -> OPEN -> CLOSED.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from roomlog.bans import banned_error
from roomlog.commands import call_of
from roomlog.errors import CloseCode, ErrorCode, ProtocolError, RoomlogError
from roomlog.hub import Subscription
from roomlog.identity import Grant, Principal
from roomlog.limits import Kind, Release, Strikes
from roomlog.log import Append
from roomlog.outbox import Direct, Outbox
from roomlog.protocol import (
    CommandFrame,
    Connect,
    Format,
    Ping,
    PresenceQuery,
    Publish,
    Subscribe,
    Unsubscribe,
    decode,
    encode,
    encode_data,
    error_frame,
    frame_id,
    parse_frame,
)
from roomlog.services import Services

__all__ = ["Session", "SessionState"]

logger = logging.getLogger(__name__)

Close = Callable[[CloseCode, str], None]


class SessionState(enum.Enum):
    AWAITING_CONNECT = "awaiting_connect"
    OPEN = "open"
    CLOSED = "closed"


class Session:
    def __init__(self, fmt: Format, services: Services, close: Close,
                 direct: Direct | None = None) -> None:
        s = services.settings
        self._services = services
        services.stats.session_objects += 1
        self._close_transport = close
        self.state = SessionState.AWAITING_CONNECT
        self.principal: Principal | None = None
        self.grant: Grant | None = None  # the token in force (a refresh replaces it)
        self.conn = services.presence.new_conn()  # this connection's id in the cluster
        self.subscriptions: dict[str, Subscription] = {}
        self.outbox = Outbox(fmt, max_frames=s.outbox_max_messages, max_bytes=s.outbox_max_bytes,
                             coalesce=s.coalesce_max_frames, on_overflow=self._overflowed,
                             direct=direct, flusher=services.flusher)
        # Made on first use: most connections never publish or get rate-limited, and
        # an idle connection's bytes are the hub's scale limit (issue #13).
        self._strikes: Strikes | None = None
        self._release_user: Release | None = None  # this connection counted for its user
        self._inflight: asyncio.Semaphore | None = None
        self._handed_on: asyncio.Future[None] | None = None  # set once the last write is queued
        self._tasks: set[asyncio.Task[None]] | None = None
        self._bad_frames = 0
        # Connect timeout, then token expiry: on the process's shared timers.
        self.due_at = -1
        self._due_why = "no connect frame in time"
        services.deadlines.set(self, s.connect_timeout)

    def __del__(self) -> None:
        self._services.stats.session_objects -= 1

    # -- state -------------------------------------------------------------------

    def _enter(self, new: SessionState) -> None:
        allowed = {SessionState.AWAITING_CONNECT: {SessionState.OPEN, SessionState.CLOSED},
                   SessionState.OPEN: {SessionState.CLOSED}}
        if new not in allowed.get(self.state, set()):
            raise RuntimeError(f"session is {self.state.value}; cannot become {new.value}")
        self.state = new

    def close(self, code: CloseCode, reason: str) -> None:
        """Stop everything this session holds and ask the transport to close."""
        if self.state is SessionState.CLOSED:
            return
        self._enter(SessionState.CLOSED)
        self._services.deadlines.cancel(self)
        for name, sub in self.subscriptions.items():
            self._services.hub.unsubscribe(sub)
            self._left(name)
        self.subscriptions.clear()
        for task in self._tasks or ():
            task.cancel()
        if self._release_user is not None:
            self._release_user()
            self._release_user = None
        close_transport, self._close_transport = self._close_transport, _ignore
        close_transport(code, reason)

    @property
    def idle(self) -> bool:
        """No write of this connection is waiting for its commit."""
        return not self._tasks

    def _left(self, room: str) -> None:
        assert self.principal is not None
        self._services.presence.leave(room, self.conn, self.principal)

    def _overflowed(self) -> None:
        self._services.stats.slow_disconnects += 1
        self.close(CloseCode.SLOW, "outbox overflow: client too slow, resume by replay")

    def deadline_passed(self) -> None:
        """No connect frame in time, or the token expired (see Deadlines)."""
        self._expire(self._due_why)

    def _expire(self, why: str, ident: str | None = None) -> None:
        self.send(error_frame(RoomlogError(ErrorCode.UNAUTHORIZED, why), ident))
        self.close(CloseCode.UNAUTHORIZED, why)

    def revoke(self, err: RoomlogError) -> bool:
        """End the session for ``err`` (BANNED: close 4003; else 4001); False if it
        had ended already."""
        if self.state is SessionState.CLOSED:
            return False
        self.send(error_frame(err))
        banned = err.code is ErrorCode.BANNED
        self.close(CloseCode.FORBIDDEN if banned else CloseCode.UNAUTHORIZED,
                   "banned" if banned else err.message[:120])
        return True

    def send(self, frame: dict[str, Any]) -> None:
        self.outbox.put(encode(self.outbox.format, frame))

    # -- inbound -----------------------------------------------------------------

    async def handle(self, payload: str | bytes) -> None:
        """Handle one inbound WebSocket frame. Never raises for bad input."""
        if self.state is SessionState.CLOSED:
            return
        obj: Any = None
        try:
            if len(payload) > self._services.settings.max_frame_bytes:
                raise RoomlogError(ErrorCode.PAYLOAD_TOO_LARGE, "frame too large")
            obj = decode(self.outbox.format, payload)
            frame = parse_frame(obj, max_depth=self._services.settings.max_nesting_depth)
            if self.state is SessionState.AWAITING_CONNECT and not isinstance(frame, Connect):
                self._expire("send a connect frame first", frame_id(obj))
                return
            if isinstance(frame, Connect):
                self._connect(frame)
            elif isinstance(frame, Subscribe):
                await self._subscribe(frame)
            elif isinstance(frame, Unsubscribe):
                self._unsubscribe(frame)
            elif isinstance(frame, Publish):
                await self._publish(frame)
            elif isinstance(frame, CommandFrame):
                await self._command(frame)
            elif isinstance(frame, PresenceQuery):
                await self._presence(frame)
            elif isinstance(frame, Ping):
                self.send({"type": "pong"} | ({"id": frame.id} if frame.id else {}))
        except RoomlogError as err:
            self._reject(err, frame_id(obj))

    def _reject(self, err: RoomlogError, ident: str | None) -> None:
        self.send(error_frame(err, ident))
        if err.code is ErrorCode.RATE_LIMITED:
            if self._strikes is None:
                self._strikes = self._services.limits.strikes()
            if self._strikes.strike():
                self.close(CloseCode.LIMITED, "rate limits exceeded again and again: back off")
        if isinstance(err, ProtocolError):
            self._bad_frames += 1
            if self._bad_frames > self._services.settings.max_bad_frames:
                self.close(CloseCode.PROTOCOL, "too many bad frames")

    def _connect(self, frame: Connect) -> None:
        grant = self._services.tokens.verify(frame.token)
        principal = grant.principal
        ban = self._services.revocation.blocking(grant)
        if ban is not None:
            if self.principal is None:  # a banned token opens no session: stop (4003)
                self.send(error_frame(banned_error(ban), frame.id))
                self.close(CloseCode.FORBIDDEN, "banned")
                return
            raise banned_error(ban)  # a refresh: the token in force stays
        if self.principal is not None and principal != self.principal:
            raise RoomlogError(ErrorCode.FORBIDDEN,
                                "a refreshed token must name the same user and role")
        if self.principal is None:  # the user's connections are counted from here on
            try:
                self._release_user = self._services.limits.open_user(principal)
            except RoomlogError as err:
                self.send(error_frame(err, frame.id))
                self.close(CloseCode.LIMITED, "too many connections of this user")
                return
        self._due_why = "token expired"
        self._services.deadlines.set(self, grant.expires - time.time())
        reply: dict[str, Any] = {"type": "connected", "user": principal.user,
                                 "role": principal.role.value, "expires": int(grant.expires)}
        self.grant = grant
        if self.principal is None:
            self.principal = principal
            self._enter(SessionState.OPEN)
        self.send(reply | ({"id": frame.id} if frame.id else {}))

    async def _subscribe(self, frame: Subscribe) -> None:
        assert self.principal is not None
        self._services.limits.check(Kind.SUBSCRIBE, self.principal, "websocket")
        await self._services.check_read(frame.room, self.principal)
        if self.state is SessionState.CLOSED:  # closed while the check read the room
            return
        name = str(frame.room)
        old = self.subscriptions.pop(name, None)
        if old is not None:  # re-subscribing moves the position
            self._services.hub.unsubscribe(old)
        elif len(self.subscriptions) >= self._services.settings.max_subscriptions:
            raise RoomlogError(
                ErrorCode.LIMIT_EXCEEDED,
                f"at most {self._services.settings.max_subscriptions} subscriptions per "
                "connection; unsubscribe from one first")
        made: list[Subscription] = []
        made.append(self._services.hub.subscribe(
            name, self.outbox, frame.since, frame.id, viewer=self.principal,
            presence=frame.presence, on_drop=lambda: self._dropped(name, made[0])))
        self.subscriptions[name] = made[0]
        if old is None:
            self._services.presence.join(name, self.conn, self.principal)
        if frame.presence:
            self._services.presence.watching(self.subscriptions[name])

    def _dropped(self, name: str, sub: Subscription) -> None:
        """The hub ended ``sub`` (access revoked, the log failed) and sent the error
        frame saying why: forget it here too, unless it was replaced meanwhile."""
        if self.subscriptions.get(name) is sub:
            del self.subscriptions[name]
            self._left(name)

    def _unsubscribe(self, frame: Unsubscribe) -> None:
        assert self.principal is not None
        self._services.limits.check(Kind.SUBSCRIBE, self.principal, "websocket")
        sub = self.subscriptions.pop(str(frame.room), None)
        if sub is not None:
            self._services.hub.unsubscribe(sub)
            self._left(str(frame.room))
        self.send({"type": "unsubscribed", "room": str(frame.room)}
                  | ({"id": frame.id} if frame.id else {}))

    async def _presence(self, frame: PresenceQuery) -> None:
        assert self.principal is not None
        self._services.limits.check(Kind.PRESENCE, self.principal, "websocket")
        await self._services.check_read(frame.room, self.principal)
        members = await self._services.presence.list(str(frame.room))
        self.send({"type": "presence"} | members | ({"id": frame.id} if frame.id else {}))

    async def _publish(self, frame: Publish) -> None:
        assert self.principal is not None
        frame.room.check_publish(self.principal)
        settings = self._services.settings
        raw = encode_data(frame.data, settings.max_data_bytes,
                          max_depth=settings.max_nesting_depth)
        item = Append(self.principal.user, raw, frame.id)
        room = str(frame.room)

        async def commit() -> dict[str, Any]:
            assert self.principal is not None
            result = await self._services.gate.publish(room, item, self.principal)
            return {"type": "ack", "id": item.id, "room": room, "seq": result.seq,
                    "epoch": result.epoch, "duplicate": result.duplicate}

        await self._in_flight(commit, frame.id, room)

    async def _command(self, frame: CommandFrame) -> None:
        assert self.principal is not None
        room = str(frame.room)
        call = call_of(self.principal, frame)
        await self._services.check_command(frame.room, frame.name, frame.args, call.who)

        async def run() -> dict[str, Any]:
            outcome = await self._services.gate.command(room, call)
            return outcome.frame(room, frame.id)

        await self._in_flight(run, frame.id, room)

    async def _in_flight(self, work: Callable[[], Awaitable[dict[str, Any]]], ident: str,
                         room: str) -> None:
        """Run a write in the background, answering with its ack or its error.

        Its write token is taken there too. With several instances the user's bucket
        is in the bus, a round trip away; awaited while reading, it held up this
        connection's next frame, and a connection's writes reached the commit one or
        two at a time (issue 13). The writes of a connection still reach the publisher
        in the order they were read: each hands on to the next once it is queued, or
        refused."""
        who = self.principal
        assert who is not None
        if self._inflight is None:
            self._inflight = asyncio.Semaphore(self._services.settings.max_inflight)
        inflight = self._inflight
        await inflight.acquire()  # backpressure: stop reading while too many are open
        before = self._handed_on
        mine = self._handed_on = asyncio.get_running_loop().create_future()

        async def answer() -> None:
            try:
                refused = await self._token(who, before, mine)
                if refused is not None:
                    self._reject(refused, ident)  # as when it was refused on reading
                    return
                self.send(await work())  # queued before the next write goes on
            except RoomlogError as err:
                self.send(error_frame(err, ident) | {"room": room})
            except Exception:
                logger.exception("write to %s failed", room)
                self.send(error_frame(RoomlogError(ErrorCode.INTERNAL, "write failed"), ident))
            finally:
                if not mine.done():
                    mine.set_result(None)
                if self._handed_on is mine:  # the last write: an idle session keeps none
                    self._handed_on = None
                inflight.release()

        task = asyncio.get_running_loop().create_task(answer())
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _token(self, who: Principal, before: asyncio.Future[None] | None,
                     mine: asyncio.Future[None]) -> RoomlogError | None:
        """A write token for ``who`` (None), or why not; then, once the connection's
        earlier write has gone on, this one's turn (``mine``)."""
        try:
            await self._services.limits.write(who, "websocket")
            return None
        except RoomlogError as err:
            return err
        finally:
            if before is not None and not before.done():
                await before
            mine.set_result(None)


def _ignore(code: CloseCode, reason: str) -> None:
    return None
