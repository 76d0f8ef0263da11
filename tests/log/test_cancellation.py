"""A caller's cancellation never reaches a database transaction (issue 10, section 1).

Clients cancel the tasks that serve them all the time: an unsubscribe cancels a
replay, a closing session cancels its reader, an SSE stream that ends cancels its
subscription. On SQLite, a cancellation that landed while ``BEGIN IMMEDIATE`` ran
left the write lock held for the life of the process. Here every operation of the
Log port is cancelled at each await point the database driver reaches
(SQLAlchemy's own deterministic tool, ``sqlalchemy.testing.cancellation``), and
many times at random moments, on both engines; afterwards every room must still
take a commit, from this log and from another one (another process), and what
the cancelled call did is whole or nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from sqlalchemy.testing.cancellation import await_points

from roomlog.log import Append, RoomTxn, pg_append, sqlite_driver
from roomlog.log.sql import SqlLog
from tests.log.conftest import LogFactory

WAIT = 30.0  # upper bound of a commit after the cancellations; a wedged log never makes it

Op = Callable[[SqlLog, str], Awaitable[Any]]


async def _two(txn: RoomTxn) -> int:
    """Write work with reads in between: two messages, remembered under one id."""
    await txn.prior([("u", "w")])
    first = txn.append("u", b'"a"')
    await txn.events(0)
    txn.append("u", b'"b"')
    txn.remember("u", f"w-{first.seq}", txn.head, None)
    return first.seq


async def _look(txn: RoomTxn) -> int:
    """Read-only work, as a domain room's access check or state view does."""
    await txn.events(0)
    await txn.snapshot()
    return txn.head


OPS: dict[str, Op] = {
    "append": lambda log, room: log.append(room, [Append("u", b'"p"', None)], now_ms=1),
    "transact": lambda log, room: log.transact(room, 1, _two),
    "look": lambda log, room: log.transact(room, 1, _look),
    "read": lambda log, room: log.read(room, 0, 100),
    "info": lambda log, room: log.info(room),
    "heads": lambda log, room: log.heads([room]),
    "reset": lambda log, room: log.reset(room),
}


async def _still_commits(logs: list[SqlLog], room: str) -> None:
    """Each log commits to the room; the log stays gapless and `transact`'s pairs whole."""
    async with asyncio.timeout(WAIT):
        for log in logs:
            await log.append(room, [Append("u", b'"after"')], now_ms=2)
    page = await logs[0].read(room, 0, 1000)
    assert [m.seq for m in page.messages] == list(range(1, page.info.head + 1))
    raws = [m.raw for m in page.messages]
    for i, raw in enumerate(raws):  # a pair of `_two` is never cut in half
        if raw == b'"a"':
            assert raws[i + 1] == b'"b"', raws
        if raw == b'"b"':
            assert i > 0 and raws[i - 1] == b'"a"', raws


class _Counted:
    """An awaitable that is an await point of ``points`` (``AwaitPoints``)."""

    def __init__(self, awaitable: Awaitable[Any], points: Callable[[Any], None]) -> None:
        self.awaitable, self.points = awaitable, points

    def __await__(self) -> Any:
        self.points(self.awaitable)
        return self.awaitable.__await__()


@contextlib.contextmanager
def _counting_appends_at_once(points: Callable[[Any], None]) -> Iterator[None]:
    """A plain append to a room with a row is one statement sent by asyncpg itself
    (``roomlog.log.pg_append``) or one trip to SQLite's thread
    (``roomlog.log.sqlite_append``), not through SQLAlchemy's greenlet that
    ``await_points`` watches: it is an await point too."""
    def counting(real: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            return await _Counted(real(*args, **kwargs), points)
        return counted

    with mock.patch.object(pg_append, "append", counting(pg_append.append)), \
            mock.patch.object(sqlite_driver, "in_thread", counting(sqlite_driver.in_thread)):
        yield


@pytest.mark.parametrize("op", list(OPS))
async def test_a_caller_cancelled_at_any_await_point_leaves_no_transaction_open(
        make_log: LogFactory, room: str, op: str) -> None:
    log, other = await make_log(), await make_log()
    await OPS[op](log, f"{room}-warm")  # connections made: count the points of a warm call
    point = 0
    while True:
        point += 1
        assert point < 500, "the sweep does not end"
        name = f"{room}-{point}"
        if point % 2:  # half of the rooms exist before the call, half are new to it
            await log.append(name, [Append("u", b'"before"')], now_ms=1)
        with await_points((point,)) as points, _counting_appends_at_once(points):
            task = points.create_task(OPS[op](log, name))
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await _still_commits([log, other], name)
        if not points.cancelled_at:  # the call ended before reaching this point: swept
            break
    # a read on PostgreSQL is BEGIN, the select and COMMIT (no ping: roomlog.log.pool);
    # an append to a room with a row one statement, and the checkout and return around it
    assert point > 2, "the operation reached too few await points to test anything"


async def test_callers_cancelled_at_random_moments_many_times(make_log: LogFactory,
                                                             room: str) -> None:
    log, other = await make_log(), await make_log()
    rng = random.Random(10)
    names = [f"{room}-{i}" for i in range(7)]
    for _ in range(300):
        op, name = rng.choice(list(OPS)), rng.choice(names)
        task = asyncio.create_task(OPS[op](log, name))
        for _ in range(rng.randrange(40)):
            await asyncio.sleep(0)
        if rng.random() < 0.3:
            await asyncio.sleep(rng.random() * 0.005)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # At once: a connection leaked in a transaction is closed (and its lock let go)
        # only when the garbage collector finds it, which a server may not do for hours.
        async with asyncio.timeout(WAIT):
            await log.append(name, [Append("u", b'"after"')], now_ms=2)
    for name in names:
        await _still_commits([log, other], name)
