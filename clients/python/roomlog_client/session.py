"""One WebSocket session: from ``connected`` until the link ends.

On start it subscribes every room from its position (``since``) and puts the
outbox back in line; then three tasks run until the first of them ends:

* the reader: every server frame, in order, to where it belongs (log frames
  through the client's ``Reader``, acks and errors to the outbox, replies to
  their requests, ``reconnect`` remembered for the supervisor);
* the sender: the outbox's due entries, at most ``window`` unanswered;
* the pinger: an application ``ping`` every ``ping_interval``; no frame at all
  within ``ping_timeout`` (while the reader is idle) means the link is dead.

The token is refreshed with another ``connect`` frame when 80 % of its remaining
lifetime has passed (when there is a token provider).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from roomlog_client.errors import ClientError, ServerError, SubscriptionError
from roomlog_client.events import Ack
from roomlog_client.http import HttpRefused, TransportError
from roomlog_client.rooms import Resync, Room
from roomlog_client.ws import Link, LinkClosed

if TYPE_CHECKING:
    from roomlog_client.client import Client

__all__ = ["SessionEnd", "WsSession"]

logger = logging.getLogger("roomlog_client")

#: Subscription errors that no retry fixes: the subscription ends with them.
FINAL_SUBSCRIBE_CODES = frozenset({"FORBIDDEN", "INVALID_ROOM", "LIMIT_EXCEEDED", "BAD_FRAME"})


@dataclass(frozen=True, slots=True)
class SessionEnd:
    code: int  # the close code (1006: none, the link just died)
    reason: str
    token: str  # the token the link used last
    retry_after: float | None = None  # from a `reconnect` frame
    resync: bool = False  # the client closed it to subscribe again from its positions


class _Dead(Exception):
    """No frame within ping_timeout of a ping."""


class WsSession:
    def __init__(self, client: Client, link: Link) -> None:
        self._c = client
        self.link = link
        self._alive = asyncio.Event()
        self._busy = False
        self._retry_after: float | None = None
        self._requests: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._timers: list[asyncio.TimerHandle] = []
        self._refresher: asyncio.Task[None] | None = None

    async def run(self) -> SessionEnd:
        self._c.auth.accepted()
        self._connected(self.link.connected)
        for room in list(self._c.rooms.values()):
            self.subscribe(room)
        self._c.outbox.requeue()
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._read()), loop.create_task(self._send()),
                 loop.create_task(self._ping())]
        resync = dead = False
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            error = next(iter(done)).exception()
            if isinstance(error, _Dead):
                logger.info("no pong within %ss: the link is dead", self._c.ping_timeout)
                dead = True
            elif isinstance(error, Resync | HttpRefused | TransportError):
                logger.info("subscribing again from the positions: %s", error)
                resync = True
            elif error is not None:  # a bug: reconnect (after a backoff), keep going
                logger.error("session failed", exc_info=error)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._stop()
            if dead:
                self.link.abort()
            else:
                await self.link.close()
        return SessionEnd(self.link.close_code, self.link.close_reason, self.link.token,
                          self._retry_after, resync)

    def _stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._refresher is not None:
            self._refresher.cancel()
        for future in self._requests.values():
            if not future.done():
                future.set_exception(ClientError("the link was lost"))
        self._requests.clear()
        self._c.outbox.requeue()

    # -- rooms ---------------------------------------------------------------------

    def subscribe(self, room: Room) -> None:
        ident = f"sub-{next(self._ids)}"
        room.sub_id = ident
        frame: dict[str, Any] = {"type": "subscribe", "room": room.name, "id": ident}
        pos = room.cursor.position
        if pos is not None:
            frame["since"] = {"epoch": pos.epoch, "seq": pos.seq}
        if room.presence:
            frame["presence"] = True
        self.link.post(frame)

    def unsubscribe(self, room: Room) -> None:
        self.link.post({"type": "unsubscribe", "room": room.name})

    def _resubscribe(self, room: Room) -> None:
        if self._c.rooms.get(room.name) is room:
            self.subscribe(room)

    async def presence(self, room: str) -> dict[str, Any]:
        ident = f"presence-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._requests[ident] = future
        self.link.post({"type": "presence", "room": room, "id": ident})
        try:
            async with asyncio.timeout(self._c.connect_timeout):
                frame = await future
        finally:
            self._requests.pop(ident, None)
        return {k: v for k, v in frame.items() if k not in ("type", "id")}

    # -- tasks -------------------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            try:
                frames = await self.link.recv()
            except LinkClosed:
                return
            self._alive.set()
            self._busy = True
            try:
                for frame in frames:
                    await self._on_frame(frame)
            finally:
                self._busy = False

    async def _send(self) -> None:
        outbox, window = self._c.outbox, self._c.window
        while True:
            for entry in outbox.due(window):
                self.link.post(entry.frame())
                outbox.sent(entry)
            await outbox.wait(outbox.next_due_in(window))

    async def _ping(self) -> None:
        if not self._c.ping_interval:
            await asyncio.Event().wait()  # off: run until cancelled
        for n in itertools.count(1):
            await asyncio.sleep(self._c.ping_interval)
            self._alive.clear()
            self.link.post({"type": "ping", "id": f"ping-{n}"})
            while True:
                try:
                    async with asyncio.timeout(self._c.ping_timeout):
                        await self._alive.wait()
                    break
                except TimeoutError:
                    if not self._busy:  # a long repair holds the reader: not the link's fault
                        raise _Dead() from None

    # -- frames --------------------------------------------------------------------------

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind in ("message", "skip", "reset"):
            room = self._c.rooms.get(frame.get("room", ""))
            if room is not None:
                async with room.lock:
                    await self._c.reader.apply(room, frame)
        elif kind == "subscribed":
            room = self._c.rooms.get(frame.get("room", ""))
            if room is not None and frame.get("id") == room.sub_id:
                async with room.lock:
                    self._c.reader.subscribed(room, frame)
        elif kind == "ack":
            self._c.outbox.resolve(str(frame.get("id")), Ack.from_reply(frame))
        elif kind == "error":
            self._on_error(frame)
        elif kind == "connected":
            self._connected(frame)
        elif kind == "reconnect":
            retry = frame.get("retry_after")
            self._retry_after = float(retry) if isinstance(retry, int | float) else 1.0
        elif kind == "presence":
            future = self._requests.pop(str(frame.get("id")), None)
            if future is not None and not future.done():
                future.set_result(frame)
        # pong (seen by the pinger through _alive), presence_diff, unsubscribed: nothing

    def _on_error(self, frame: dict[str, Any]) -> None:
        error = ServerError.from_frame(frame)
        ident = error.id
        if ident is not None and ident in self._c.outbox:
            self._c.reject(ident, error)
            return
        future = self._requests.pop(ident, None) if ident is not None else None
        if future is not None:
            if not future.done():
                future.set_exception(error)
            return
        room = self._room_of(ident, error.room)
        if room is not None:
            if error.code in FINAL_SUBSCRIBE_CODES:
                self._c.fail_room(room, SubscriptionError(
                    error.code, error.message, details=error.details, room=room.name, id=ident))
            else:  # the subscription is gone (the database failed): again, same position
                delay = error.retry_after if error.retry_after is not None else 1.0
                self._timers.append(asyncio.get_running_loop().call_later(
                    delay, self._resubscribe, room))
            return
        if ident is not None and ident.startswith("refresh-"):
            logger.warning("token refresh refused: %s", error)
            return
        logger.warning("error from the server: %s", error)

    def _room_of(self, ident: str | None, name: str | None) -> Room | None:
        if ident is not None and ident.startswith("sub-"):
            for room in self._c.rooms.values():
                if room.sub_id == ident:
                    return room
            return None
        return self._c.rooms.get(name) if name else None

    # -- tokens ----------------------------------------------------------------------------

    def _connected(self, frame: dict[str, Any]) -> None:
        expires = frame.get("expires")
        if self._c.auth.provider is None or not isinstance(expires, int | float):
            return
        if self._refresher is not None:
            self._refresher.cancel()
        delay = max(0.1, 0.8 * (expires - time.time()))
        self._refresher = asyncio.get_running_loop().create_task(self._refresh(delay))

    async def _refresh(self, delay: float) -> None:
        await asyncio.sleep(delay)
        while True:
            try:
                token = await self._c.auth.fresh()
                break
            except Exception:  # try again shortly; at expiry the close (4001) decides
                logger.exception("the token provider failed")
                await asyncio.sleep(5.0)
        self.link.token = token
        self.link.post({"type": "connect", "token": token, "id": f"refresh-{next(self._ids)}"})

