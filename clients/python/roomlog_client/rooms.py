"""Rooms the client follows, and the one path every frame of their logs takes.

:class:`Reader` is that path, whichever transport a frame came from (a WebSocket
subscription, a long-poll page, a repair read): the room's :class:`RoomCursor`
judges it, and only what it accepts reaches the room's consumers. A gap is
repaired by reading the log over HTTP from the position (``after=seq&epoch=``)
before anything after it is handed over; a reset of a room without state is
followed by the messages still kept (backfill).

Callers hold ``room.lock`` around :meth:`Reader.apply` so frames of one room are
judged one at a time. Everything that moves the position is synchronous, so a
task cancelled in the middle (a transport being switched) leaves the cursor and
the consumers in step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from roomlog_client.cursor import RoomCursor, Verdict, VerdictKind
from roomlog_client.events import Position
from roomlog_client.http import HttpApi
from roomlog_client.subscription import Subscription

__all__ = ["Reader", "Resync", "Room"]

LOG_FRAMES = frozenset({"message", "skip", "reset"})


class Resync(Exception):
    """A room's stream cannot be continued in order here (a gap the HTTP log did not
    fill): subscribe again from the position and let the server replay."""


class Room:
    def __init__(self, name: str, position: Position | None, *, backfill: bool,
                 presence: bool) -> None:
        self.name = name
        self.cursor = RoomCursor(name, position, backfill=backfill)
        self.presence = presence
        self.sinks: list[Subscription] = []
        self.lock = asyncio.Lock()
        self.sub_id: str | None = None  # id of the subscribe frame on the current link
        self.poller: asyncio.Task[None] | None = None
        self._placed = asyncio.Event()
        if position is not None:
            self._placed.set()

    async def placed(self) -> Position:
        await self._placed.wait()
        assert self.cursor.position is not None
        return self.cursor.position

    def take(self, verdict: Verdict) -> None:
        """Hand over what ``verdict`` carries (synchronously: never half done)."""
        if verdict.kind is VerdictKind.DUPLICATE:
            return
        position = self.cursor.position
        for sink in self.sinks:
            sink.put(verdict.event, position)
        if position is not None:
            self._placed.set()

    def saved_position(self, *, final: bool) -> Position | None:
        """The position to save: what the slowest consumer finished (``final``: took)."""
        if not self.sinks:
            return self.cursor.position
        slowest = max(self.sinks, key=lambda sink: sink.pending())
        return slowest.taken if final else slowest.done

    async def wait_space(self) -> None:
        for sink in list(self.sinks):
            await sink.wait_space()

    def end(self, error: BaseException | None = None) -> None:
        for sink in self.sinks:
            sink.end(error)
        self.sinks.clear()
        if self.poller is not None:
            self.poller.cancel()
            self.poller = None


class Reader:
    """``on_moved(room)`` runs whenever a room's position moved (to persist it)."""

    def __init__(self, http: HttpApi, on_moved: Callable[[Room], None], *,
                 page_limit: int | None = None) -> None:
        self._http = http
        self._on_moved = on_moved
        self._page_limit = page_limit

    def _take(self, room: Room, verdict: Verdict) -> None:
        room.take(verdict)
        if verdict.kind is not VerdictKind.DUPLICATE:
            self._on_moved(room)

    def subscribed(self, room: Room, frame: dict[str, Any]) -> None:
        self._take(room, room.cursor.subscribed(frame))

    async def apply(self, room: Room, frame: dict[str, Any], *, repair: bool = True) -> None:
        """Judge one ``message``, ``skip`` or ``reset`` frame of ``room`` and hand over
        what it brings; with ``repair``, fill a gap (or a backfill) over HTTP first."""
        if frame.get("type") not in LOG_FRAMES:
            return
        await room.wait_space()
        verdict = room.cursor.accept(frame)
        if verdict.kind is VerdictKind.GAP:
            if not repair:
                raise Resync(f"{room.name}: gap before seq {frame.get('seq')}")
            await self.catch_up(room)
            verdict = room.cursor.accept(frame)
            if verdict.kind is VerdictKind.GAP:
                raise Resync(f"{room.name}: the log does not fill the gap before "
                             f"seq {frame.get('seq')}")
        self._take(room, verdict)
        if verdict.backfill and repair:
            await self.catch_up(room)

    async def catch_up(self, room: Room) -> None:
        """Read the log from the room's position up to the head as read now."""
        while True:
            pos = room.cursor.position
            if pos is None:
                await self.place(room)
                return
            page = await self._http.read(room.name, pos.seq, pos.epoch, limit=self._page_limit)
            for frame in page.frames:
                await self.apply(room, frame, repair=False)
            pos = room.cursor.position
            if not page.frames or pos is None or pos.seq >= page.head:
                return

    async def place(self, room: Room) -> None:
        """Place a fresh room over HTTP (as ``subscribed`` does on a WebSocket): at a
        domain room's state, or at the head of the log."""
        state = await self._http.state(room.name)
        if state is not None:
            verdict = room.cursor.start(str(state["epoch"]), int(state["seq"]),
                                        state.get("state"), has_state=True)
        else:
            head = await self._http.head(room.name)
            verdict = room.cursor.start(head.epoch, head.head)
        self._take(room, verdict)
