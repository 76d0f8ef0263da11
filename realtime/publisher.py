"""The write path for plain rooms: group commit, then fan-out.

Concurrent publishes to one room queue up; one drain task per room appends
each queue as a single transaction (up to ``commit_batch`` items), then hands
the committed messages to the local hub and the bus. Rooms commit in
parallel; within a room, commits and deliveries happen in seq order.
Nothing is delivered or acknowledged before its transaction commits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from realtime.bus import Bus
from realtime.errors import RealtimeError
from realtime.hub import Hub
from realtime.log import Append, Appended, Log, RoomInfo

__all__ = ["Publisher"]

logger = logging.getLogger(__name__)

_Pending = tuple[Append, "asyncio.Future[Appended]"]


class Publisher:
    def __init__(self, log: Log, hub: Hub, bus: Bus, *, clock_ms: Callable[[], int],
                 max_batch: int = 500) -> None:
        self._log = log
        self._hub = hub
        self._bus = bus
        self._clock_ms = clock_ms
        self._max_batch = max_batch
        self._queues: dict[str, list[_Pending]] = {}
        self._drains: set[asyncio.Task[None]] = set()
        self.commits = 0
        self.published = 0

    async def publish(self, room: str, item: Append) -> Appended:
        """Store one message (group-committed with its neighbours); return its seq."""
        future: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(room)
        if queue is None:
            queue = self._queues[room] = []
            task = asyncio.get_running_loop().create_task(self._drain(room, queue))
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
        queue.append((item, future))
        return await future

    async def _drain(self, room: str, queue: list[_Pending]) -> None:
        try:
            while queue:
                batch = queue[: self._max_batch]
                del queue[: self._max_batch]
                await self._commit(room, batch)
        finally:
            self._queues.pop(room, None)

    async def _commit(self, room: str, batch: list[_Pending]) -> None:
        try:
            results, stored = await self._log.append(
                room, [item for item, _ in batch], now_ms=self._clock_ms())
        except RealtimeError as err:
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        except Exception as exc:
            logger.exception("append to %s failed", room)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.commits += 1
        self.published += len(stored)
        if stored:
            self._hub.deliver(room, stored)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
        if stored:
            try:  # awaited before the next commit of this room: the bus sees seq order
                await self._bus.publish(room, stored)
            except Exception:  # peers repair the gap from the log
                logger.exception("bus publish for %s failed", room)

    async def reset(self, room: str) -> RoomInfo:
        """Drop the room's log and start a new epoch; subscribers get a reset."""
        info = await self._log.reset(room)
        self._hub.reset(room, info)
        return info

    async def close(self) -> None:
        """Let queued publishes finish committing (drain on shutdown)."""
        if self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)
