"""SharedReads (``roomlog/log/shared.py``) as a pure unit: a log whose reads wait
until the test lets them go, so "waiting for its turn" and "started" are states
the test sets, never timings."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from roomlog.errors import Unavailable
from roomlog.log import Log, Page, RoomInfo
from roomlog.log.shared import SharedReads
from roomlog.stats import Stats


class GatedLog:
    """Reads and infos that return only when :meth:`release` lets them."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.gates: dict[tuple[Any, ...], asyncio.Event] = {}
        self.fail: set[tuple[Any, ...]] = set()

    def _gate(self, key: tuple[Any, ...]) -> asyncio.Event:
        return self.gates.setdefault(key, asyncio.Event())

    def release(self, *key: Any) -> None:
        self._gate(key).set()

    async def read(self, room: str, after: int, limit: int) -> Page:
        key = ("read", room, after, limit)
        self.calls.append(key)
        await self._gate(key).wait()
        if key in self.fail:
            raise Unavailable("down")
        return Page(RoomInfo(room, "e1", 10, 0), after, [])

    async def info(self, room: str) -> RoomInfo:
        key = ("info", room)
        self.calls.append(key)
        await self._gate(key).wait()
        return RoomInfo(room, "e1", 10, 0)


def shared(log: GatedLog, concurrency: int, stats: Stats) -> SharedReads:
    return SharedReads(log, concurrency=concurrency, stats=stats)  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_identical_reads_waiting_for_their_turn_share_one_read() -> None:
    log, stats = GatedLog(), Stats()
    reads = shared(log, 1, stats)
    first = asyncio.create_task(reads.read("a", 0, 500))  # takes the only slot
    await settle()
    waiting = [asyncio.create_task(reads.read("b", 5, 500)) for _ in range(10)]
    other = asyncio.create_task(reads.read("b", 6, 500))  # another position: its own read
    await settle()
    assert reads.waiting == 2
    log.release("read", "a", 0, 500)
    log.release("read", "b", 5, 500)
    log.release("read", "b", 6, 500)
    pages = await asyncio.gather(*waiting)
    await first
    await other
    assert all(page is pages[0] for page in pages)  # one read served all ten
    assert log.calls.count(("read", "b", 5, 500)) == 1
    assert (stats.catch_up_reads, stats.catch_up_shared) == (3, 9)


async def test_a_read_that_started_is_not_joined() -> None:
    log, stats = GatedLog(), Stats()
    reads = shared(log, 4, stats)
    early = asyncio.create_task(reads.info("a"))
    await settle()
    assert log.calls == [("info", "a")]  # running: its snapshot may predate a later call
    late = asyncio.create_task(reads.info("a"))
    await settle()
    log.release("info", "a")
    await asyncio.gather(early, late)
    assert log.calls == [("info", "a"), ("info", "a")]
    assert stats.catch_up_shared == 0


async def test_a_read_nobody_waits_for_any_more_is_never_made() -> None:
    log, stats = GatedLog(), Stats()
    reads = shared(log, 1, stats)
    blocker = asyncio.create_task(reads.read("a", 0, 1))
    await settle()
    callers = [asyncio.create_task(reads.read("b", 0, 1)) for _ in range(3)]
    await settle()
    callers[0].cancel()
    await settle()
    assert reads.waiting == 1  # two still want it
    for caller in callers[1:]:
        caller.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    assert reads.waiting == 0
    log.release("read", "a", 0, 1)
    await blocker
    await settle()
    assert ("read", "b", 0, 1) not in log.calls


async def test_a_failure_reaches_every_caller_of_the_shared_read() -> None:
    log, stats = GatedLog(), Stats()
    reads = shared(log, 1, stats)
    blocker = asyncio.create_task(reads.read("a", 0, 1))
    await settle()
    callers = [asyncio.create_task(reads.read("b", 0, 1)) for _ in range(3)]
    await settle()
    log.fail.add(("read", "b", 0, 1))
    log.release("read", "b", 0, 1)
    log.release("read", "a", 0, 1)
    await blocker
    for caller in callers:
        with pytest.raises(Unavailable):
            await caller


def test_shared_reads_is_a_log() -> None:
    reads: Log = SharedReads(GatedLog(), concurrency=1)  # type: ignore[arg-type]
    assert reads is not None
