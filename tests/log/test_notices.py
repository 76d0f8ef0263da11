"""Notices to many rooms in one transaction, on every adapter: rooms without a row are
made in a few statements whatever their number (a batch of paid submits notifies each
guest's ``user:`` room, most of them new), with the epoch they read as before, and two
processes making the same rooms at once never make one twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from roomlog.log import RoomTxn
from tests.log.conftest import LogFactory, stored_rooms


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL statements every engine of this process runs meanwhile."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


async def test_notices_make_many_new_rooms_in_a_few_statements(make_log: LogFactory,
                                                                room: str) -> None:
    log = await make_log()
    base = "user:" + room.split(":")[1]
    inboxes = [f"{base}-{n:02}" for n in range(30)]
    promised = {name: (await log.info(name)).epoch for name in inboxes}

    async def work(txn: RoomTxn) -> None:
        txn.append("u", b"{}")
        for name in inboxes[::-1]:  # in any order: locked in name order
            txn.notify(name, "u", name.encode())

    async def first(txn: RoomTxn) -> None:
        txn.append("u", b"{}")

    await log.transact(room, 1, first)  # the notifying room has a row; its id is cached
    with statements() as seen:
        _, stored = await log.transact(room, 2, work)
    assert len(seen) <= 8, seen  # whatever the number of rooms; before: five a new room
    for name in inboxes:
        assert [(m.seq, m.epoch, m.raw) for m in stored[name]] == [
            (1, promised[name], name.encode())]
        assert (await log.info(name)).head == 1
    assert await stored_rooms(log, base) == inboxes

    async def again(txn: RoomTxn) -> None:  # all known now: cached ids, one lock statement
        for name in inboxes:
            txn.notify(name, "u", b"2")

    with statements() as seen:
        _, stored = await log.transact(room, 3, again)
    assert all([m.seq for m in stored[name]] == [2] for name in inboxes)
    assert len(seen) <= 6, seen


async def test_notices_to_new_known_and_unseen_rooms_at_once(make_log: LogFactory,
                                                             room: str) -> None:
    log, other, reader = await make_log(), await make_log(), await make_log()  # 3 processes
    base = "user:" + room.split(":")[1]
    inboxes = [f"{base}-{n:02}" for n in range(30)]
    # 05 and 17 were written by another process (rows this one has not seen), 10 by
    # this one (its id is cached here); the rest are new.
    written = (inboxes[5], inboxes[17], inboxes[10])
    for name, writer in zip(written, (other, other, log), strict=True):
        async def first(txn: RoomTxn) -> None:
            txn.append("u", b"0")

        await writer.transact(name, 1, first)
    promised = {name: (await reader.info(name)).epoch for name in inboxes}

    async def work(txn: RoomTxn) -> None:
        txn.append("u", b"{}")
        for name in inboxes[::-1]:
            txn.notify(name, "u", name.encode())

    _, stored = await log.transact(room, 2, work)
    for name in inboxes:
        [message] = stored[name]
        assert (message.seq, message.epoch, message.raw) == (
            2 if name in written else 1, promised[name], name.encode())
        assert (await reader.info(name)).head == message.seq
    assert await stored_rooms(log, base) == inboxes


async def test_two_processes_making_the_same_rooms_at_once_make_each_once(
        make_log: LogFactory, room: str) -> None:
    logs = [await make_log(), await make_log()]
    base = "user:" + room.split(":")[1]
    inboxes = [f"{base}-{n:02}" for n in range(12)]

    async def writer(n: int) -> None:
        async def work(txn: RoomTxn) -> None:
            txn.append("u", b"{}")
            for name in inboxes[n % 3:]:
                txn.notify(name, "u", f"{n}".encode())

        await logs[n % 2].transact(f"{room}-{n}", 1, work)

    await asyncio.gather(*(writer(n) for n in range(8)))
    assert await stored_rooms(logs[0], base) == inboxes
    for i, name in enumerate(inboxes):
        page = await logs[1].read(name, 0, 100)
        writers = sum(1 for n in range(8) if i >= n % 3)
        assert [m.seq for m in page.messages] == list(range(1, writers + 1))
