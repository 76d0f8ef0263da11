"""The write path against real logs: one bad item never fails its batch (issue 10, §2).

Group commit puts a batch in one transaction. On PostgreSQL one publish whose
actor or id held a NUL failed the whole batch's transaction, so every other
client's write in it got UNAVAILABLE. Items are checked at the edge now (see
tests/test_protocol_fuzz.py); these tests go past the edge on purpose, with items
the database refuses and a domain whose ``apply`` raises, and check that the
others commit, in order, and the bad one alone gets a coded error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest

from roomlog.bus.memory import MemoryBus
from roomlog.cluster import Cluster
from roomlog.commands import Call, CommandRunner, Outcome
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.hub import Hub
from roomlog.identity import Principal, Role
from roomlog.log import Append, Appended
from roomlog.log.sql import SqlLog
from roomlog.publisher import Publisher, lane_of
from roomlog.rooms.domain import Command, Decision, Event, Meta, Notice
from roomlog.stats import Stats


@dataclass
class Tally:
    applied: list[str] = field(default_factory=list)


class Counter:
    """A domain of one command, ``add``; its ``apply`` raises for ``{"n": 13}``,
    as a bug in a real domain's fold would for one command."""

    kind = "queue"
    private = False

    def initial(self, room_id: str) -> Tally:
        return Tally()

    def decide(self, state: Tally, command: Command, actor: Principal, now_ms: int) -> Decision:
        return Decision([Event("added", {"n": command.args["n"]})], {"n": command.args["n"]})

    def apply(self, state: Tally, event: Event, meta: Meta) -> list[Notice]:
        if event.data["n"] == 13:
            raise ValueError("unlucky")
        state.applied.append(str(event.data["n"]))
        return []

    def view(self, state: Tally, viewer: Principal) -> dict[str, Any]:
        return {"applied": state.applied}

    def dump(self, state: Tally) -> dict[str, Any]:
        return {"applied": state.applied}

    def load(self, data: dict[str, Any]) -> Tally:
        return Tally(list(data["applied"]))

    def can_subscribe(self, who: Principal, room_id: str) -> bool:
        return True

    def can_publish(self, who: Principal, room_id: str) -> bool:
        return False

    def can_read(self, state: Tally, who: Principal) -> bool:
        return True

    def audience(self, who: Principal) -> str | None:
        return None

    def redact(self, data: dict[str, Any], audience: str) -> dict[str, Any] | None:
        return data

    def still_reads(self, data: dict[str, Any], who: Principal) -> bool | None:
        return None


@pytest.fixture(params=["sqlite", "postgres"])
async def parts(request: pytest.FixtureRequest) -> AsyncIterator[tuple[SqlLog, Publisher]]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    log = SqlLog(url, migrate=True)
    await log.open()
    stats = Stats()
    hub = Hub(log)
    cluster = Cluster(log, hub, MemoryBus(), stats)
    await cluster.start()
    runners = {"queue": CommandRunner(Counter())}
    publisher = Publisher(log, cluster, stats, clock_ms=lambda: 1, max_batch=500,
                          runners=runners, lanes=1)
    yield log, publisher
    await publisher.close()
    await cluster.close()
    await log.close()


async def _all(*writes: Any) -> list[Any]:
    """Submitted together: they queue while the first commit runs, one batch."""
    return await asyncio.gather(*writes, return_exceptions=True)


async def test_a_message_the_database_refuses_fails_alone(parts: Any, room: str) -> None:
    log, publisher = parts
    if log.url.startswith("sqlite"):
        bad = Append("u1", b"{}", "id-\ud800")  # no UTF-8 for a lone surrogate
    else:
        bad = Append("u1", b"{}", "id-\x00")  # PostgreSQL's text takes no NUL
    items = [Append(f"u{i}", b"%d" % i, f"id-{i}") for i in range(20)]
    results = await _all(*(publisher.publish(room, item) for item in [*items[:7], bad,
                                                                      *items[7:]]))
    refused = results.pop(7)
    assert isinstance(refused, RoomlogError) and refused.code is ErrorCode.BAD_FRAME
    assert all(isinstance(r, Appended) for r in results), results
    assert [r.seq for r in results] == list(range(1, 21))  # the others, in their order
    page = await log.read(room, 0, 100)
    assert [m.data for m in page.messages] == list(range(20))
    assert publisher.commits >= 2  # split, then committed around the bad one
    # A later batch is not affected.
    (again,) = await _all(publisher.publish(room, Append("u1", b"99", "id-later")))
    assert again.seq == 21


async def test_a_command_that_breaks_the_fold_fails_alone(parts: Any) -> None:
    log, publisher = parts
    room = "queue:split-" + log.url[:6]
    who = Principal("dj1", Role.DJ)
    numbers = [1, 2, 13, 4, 5, 6]
    results = await _all(*(publisher.command(room, Call(who, Command("add", {"n": n}),
                                                        f"c{n}")) for n in numbers))
    failed = results.pop(2)
    assert isinstance(failed, RoomlogError) and failed.code is ErrorCode.INTERNAL
    assert all(isinstance(r, Outcome) for r in results), results
    assert [r.seqs for r in results] == [[1], [2], [3], [4], [5]]
    runner = publisher.runners["queue"]
    view = await runner.read(log, room, lambda state: list(state.applied))
    assert view == ["1", "2", "4", "5", "6"]  # the state holds what committed, once


async def test_a_command_id_the_database_refuses_fails_alone(parts: Any) -> None:
    log, publisher = parts
    room = "queue:bad-id-" + log.url[:6]
    who = Principal("dj1", Role.DJ)
    # SQLite stores a NUL, but its driver cannot encode a lone surrogate.
    ids = ["a", "b\ud800" if log.url.startswith("sqlite") else "b\x00", "c"]
    results = await _all(*(publisher.command(room, Call(who, Command("add", {"n": i}), ident))
                           for i, ident in enumerate(ids)))
    assert isinstance(results[1], RoomlogError) and results[1].code is ErrorCode.INVALID_ARGS
    assert [r.seqs for r in (results[0], results[2])] == [[1], [2]]


class Feeding(Counter):
    """Counter whose every event is also an entry of one shared room (as every repair
    ticket writes to the admins' feed)."""

    def __init__(self, feed: str) -> None:
        self.feed = feed

    def apply(self, state: Tally, event: Event, meta: Meta) -> list[Notice]:
        super().apply(state, event, meta)
        return [Notice("", {"n": event.data["n"]}, room=self.feed)]


async def test_commands_to_many_rooms_of_a_kind_across_rooms_commit_together(
        parts: Any, room: str) -> None:
    log, publisher = parts
    feed = "user:" + room.split(":")[1] + "-feed"
    publisher.runners["queue"] = CommandRunner(Feeding(feed), across_rooms=True)
    rooms = [f"queue:{room.split(':')[1]}-t{i}" for i in range(10)]
    who = Principal("dj1", Role.DJ)
    # one command that breaks the fold among them: it fails alone, the others commit
    calls = [(rooms[i % 10], Call(who, Command("add", {"n": 13 if i == 25 else 100 + i}),
                                   f"c{i}"))
             for i in range(40)]
    commits = publisher.commits
    results = await _all(*(publisher.command(r, c) for r, c in calls))
    failed = results.pop(25)
    assert isinstance(failed, RoomlogError) and failed.code is ErrorCode.INTERNAL
    assert all(isinstance(r, Outcome) for r in results), results
    for i, name in enumerate(rooms):  # each room's commands in the order they came
        seqs = [r.seqs[0] for (n, _), r in zip(calls[:25] + calls[26:], results, strict=True)
                if n == name]
        assert seqs == list(range(1, 4 if i == 5 else 5))
    assert publisher.commits - commits < 10  # many rooms a transaction, split around 13
    page = await log.read(feed, 0, 100)
    assert len(page.messages) == 39 and page.info.head == 39
    assert sorted(m.data["n"] for m in page.messages) == [100 + i for i in range(40) if i != 25]


async def test_publishes_to_many_plain_rooms_commit_together(parts: Any, room: str) -> None:
    """A room that gets one message now and then costs no transaction of its own:
    publishes to 40 rooms, submitted together, are a couple of commits (the first
    alone, the rest in one batch), each room gapless and in its order; a duplicate id
    in one room is answered from that room's memory; a refused item fails alone."""
    log, publisher = parts
    rooms = [f"{room}-{i}" for i in range(40)]
    writes = [publisher.publish(r, Append("u1", b"%d" % n, f"id-{n}"))
              for n in range(3) for r in rooms]
    results = await _all(*writes)
    assert all(isinstance(r, Appended) for r in results), results
    assert [r.seq for r in results] == [n + 1 for n in range(3) for _ in rooms]
    assert publisher.commits <= 3, publisher.commits  # not 40 (one per room), nor 120
    for r in rooms:
        page = await log.read(r, 0, 10)
        assert [m.data for m in page.messages] == [0, 1, 2]
    if log.url.startswith("sqlite"):
        bad = Append("u1", b"{}", "id-\ud800")
    else:
        bad = Append("u1", b"{}", "id-\x00")
    again = await _all(publisher.publish(rooms[0], Append("u1", b"0", "id-0")),  # a retry
                       publisher.publish(rooms[1], bad),
                       publisher.publish(rooms[2], Append("u1", b"3", "id-3")))
    assert isinstance(again[0], Appended) and again[0].duplicate and again[0].seq == 1
    assert isinstance(again[1], RoomlogError) and again[1].code is ErrorCode.BAD_FRAME
    assert isinstance(again[2], Appended) and again[2].seq == 4


@contextlib.asynccontextmanager
async def plain_publisher(url: str, lanes: int) -> AsyncIterator[Publisher]:
    """A publisher of plain rooms on its own log, committing in ``lanes`` lanes."""
    log = SqlLog(url, migrate=True)
    await log.open()
    stats = Stats()
    cluster = Cluster(log, Hub(log), MemoryBus(), stats)
    await cluster.start()
    publisher = Publisher(log, cluster, stats, clock_ms=lambda: 1, lanes=lanes)
    try:
        yield publisher
    finally:
        await publisher.close()
        await cluster.close()
        await log.close()


async def test_plain_rooms_can_commit_one_by_one(sqlite_url: str, room: str) -> None:
    """``commit_lanes`` 0: a transaction per room, as before."""
    async with plain_publisher(sqlite_url, lanes=0) as publisher:
        rooms = [f"{room}-{i}" for i in range(10)]
        results = await _all(*(publisher.publish(r, Append("u1", b"1", "a")) for r in rooms))
        assert [r.seq for r in results] == [1] * 10
        assert publisher.commits == 10


async def test_a_held_room_delays_its_lane_only(pg_url: str, room: str) -> None:
    """The price of lanes, and its bound: while another session holds a room's row
    lock, a publish to it waits, and so does one to another room of its lane (one
    commit in flight per lane); a room of another lane commits meanwhile."""
    names = [f"{room}-{i}" for i in range(40)]
    held = names[0]
    same = next(n for n in names[1:] if lane_of(n, 4) == lane_of(held, 4))
    other = next(n for n in names[1:] if lane_of(n, 4) != lane_of(held, 4))
    db = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        async with plain_publisher(pg_url, lanes=4) as publisher:
            for name in (held, same, other):  # their rows exist
                await publisher.publish(name, Append("u1", b"0"))
            lock = db.transaction()
            await lock.start()
            await db.execute("SELECT 1 FROM rt_rooms WHERE name = $1 FOR UPDATE", held)
            stuck = asyncio.ensure_future(publisher.publish(held, Append("u1", b"1")))
            await asyncio.sleep(0.2)  # its lane's commit now waits for the lock
            behind = asyncio.ensure_future(publisher.publish(same, Append("u1", b"1")))
            free = await asyncio.wait_for(publisher.publish(other, Append("u1", b"1")), 10)
            assert free.seq == 2
            await asyncio.sleep(0.2)
            assert not stuck.done() and not behind.done()
            await lock.rollback()
            assert (await asyncio.wait_for(stuck, 10)).seq == 2
            assert (await asyncio.wait_for(behind, 10)).seq == 2
    finally:
        await db.close()
