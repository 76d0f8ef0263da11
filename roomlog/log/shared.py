"""Log reads of catching-up subscribers: coalesced per room and position, bounded.

After a deploy or a crash every client reconnects at once and resumes each of
its rooms from its last seq. Most clients of a room saw the same last message,
so thousands of subscriptions ask the log for the same page. :class:`SharedReads`
wraps the log for the hub: at most ``concurrency`` page reads and as many head
lookups run at once (so a storm never takes every pooled connection from the
writers), and a read asked
for while an identical one *waits for its turn* joins it: one log read serves
every client asking for it.

A caller joins only a read that has not started: one that has begun may hold a
snapshot older than the caller's request, so a caller arriving then waits for
a read of its own. Every caller thus gets what a read made after its call would
return, as without coalescing. A read whose callers all gave up before its turn
is dropped. No SQLAlchemy here: plain asyncio over the ``Log`` port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from roomlog.log import Append, Appended, Log, Page, RoomInfo, RoomTxn
from roomlog.protocol import Message
from roomlog.stats import Stats

__all__ = ["SharedReads"]

T = TypeVar("T")


@dataclass(eq=False)
class _Pending:
    task: asyncio.Task[Any]
    waiters: int = 1
    started: bool = False


class SharedReads:
    """A ``Log`` whose ``read`` and ``info`` are coalesced and bounded (see the module
    docstring); every other operation goes straight to the wrapped log."""

    def __init__(self, log: Log, *, concurrency: int, stats: Stats | None = None) -> None:
        self._log = log
        self._stats = stats or Stats()
        # Page reads and head lookups queue apart: reads stuck on a slow page never
        # hold up the cheap lookups that confirm new subscriptions.
        self._slots = {kind: asyncio.Semaphore(max(1, concurrency)) for kind in ("read", "info")}
        self._pending: dict[tuple[Any, ...], _Pending] = {}

    @property
    def waiting(self) -> int:
        """Reads waiting for their turn (not started yet)."""
        return sum(1 for p in self._pending.values() if not p.started)

    async def read(self, room: str, after: int, limit: int) -> Page:
        page: Page = await self._shared(("read", room, after, limit),
                                        lambda: self._log.read(room, after, limit))
        return page

    async def info(self, room: str) -> RoomInfo:
        info: RoomInfo = await self._shared(("info", room), lambda: self._log.info(room))
        return info

    async def _shared(self, key: tuple[Any, ...], op: Callable[[], Awaitable[T]]) -> T:
        pending = self._pending.get(key)
        if pending is None:
            task = asyncio.get_running_loop().create_task(self._run(key, op))
            task.add_done_callback(_retrieve)
            pending = self._pending[key] = _Pending(task)
        else:
            pending.waiters += 1
            self._stats.catch_up_shared += 1
        try:
            result: T = await asyncio.shield(pending.task)
            return result
        except asyncio.CancelledError:
            pending.waiters -= 1
            if not pending.waiters and not pending.started:  # nobody wants it any more
                pending.task.cancel()
                if self._pending.get(key) is pending:
                    del self._pending[key]
            raise

    async def _run(self, key: tuple[Any, ...], op: Callable[[], Awaitable[T]]) -> T:
        async with self._slots[key[0]]:
            pending = self._pending.pop(key, None)  # from now on a new caller reads anew
            if pending is not None:
                pending.started = True
            self._stats.catch_up_reads += 1
            return await op()

    # -- the rest of the Log port, unchanged -------------------------------------------

    async def open(self) -> None:
        await self._log.open()

    async def close(self) -> None:
        await self._log.close()

    async def append(self, room: str, items: Sequence[Append], *,
                     now_ms: int) -> tuple[list[Appended], list[Message]]:
        return await self._log.append(room, items, now_ms=now_ms)

    async def append_many(
        self, batches: Mapping[str, Sequence[Append]], *, now_ms: int
    ) -> tuple[dict[str, list[Appended]], dict[str, list[Message]]]:
        return await self._log.append_many(batches, now_ms=now_ms)

    async def transact(self, room: str, now_ms: int, work: Callable[[RoomTxn], Awaitable[T]]
                       ) -> tuple[T, dict[str, list[Message]]]:
        return await self._log.transact(room, now_ms, work)

    async def transact_many(
        self, names: Sequence[str], now_ms: int,
        work: Callable[[Sequence[RoomTxn]], Awaitable[T]],
        prior: Mapping[str, Iterable[tuple[str, str]]] | None = None,
    ) -> tuple[T, dict[str, list[Message]]]:
        return await self._log.transact_many(names, now_ms, work, prior)

    async def heads(self, names: Sequence[str]) -> dict[str, RoomInfo]:
        return await self._log.heads(names)

    async def reset(self, room: str) -> RoomInfo:
        return await self._log.reset(room)

    async def trim_before(self, cutoff_ms: int) -> int:
        return await self._log.trim_before(cutoff_ms)

    async def expire_ids(self, cutoff_ms: int) -> int:
        return await self._log.expire_ids(cutoff_ms)

    async def check(self) -> None:
        await self._log.check()


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a failure as seen: its callers may all have gone."""
    if not task.cancelled():
        task.exception()
