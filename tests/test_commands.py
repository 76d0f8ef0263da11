"""CommandRunner against real logs: its state cache is bounded and survives what
clients do to their own requests (issue 10, sections 2 and 6)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from roomlog.commands import Call, CommandRunner
from roomlog.identity import Principal, Role
from roomlog.log.sql import SqlLog
from roomlog.rooms.domain import Command
from roomlog.rooms.queue import QueueDomain
from tests.log.conftest import stored_rooms

DJ = Principal("dj1", Role.DJ)


@pytest.fixture(params=["sqlite", "postgres"])
async def log(request: pytest.FixtureRequest) -> AsyncIterator[SqlLog]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    opened = SqlLog(url, migrate=True)
    await opened.open()
    yield opened
    await opened.close()


def submit(who: Principal, song: str, ident: str) -> Call:
    return Call(who, Command("request.submit", {"song_id": song, "title": song,
                                                "artist": "A"}), ident)


async def test_the_state_cache_is_bounded(log: SqlLog, room: str) -> None:
    runner = CommandRunner(QueueDomain(), cache_size=2)
    rooms = [room.replace("chat:", "queue:") + f"-{i}" for i in range(5)]
    for n, name in enumerate(rooms):
        for i in range(n + 1):
            guest = Principal(f"g{i}", Role.GUEST)
            (outcome,), _ = await runner.commit(log, name, 1_000, [submit(guest, f"s{i}", "c")])
            assert not isinstance(outcome, Exception), outcome
        assert runner.cached <= 2
    for n, name in enumerate(rooms):  # evicted states are rebuilt whole from the log
        pending = await runner.read(log, name, lambda state: len(state.requests))
        assert pending == n + 1


async def test_looks_at_rooms_nobody_wrote_cache_nothing(log: SqlLog, room: str) -> None:
    # Readers of room names nobody wrote must not push the states of real rooms out.
    runner = CommandRunner(QueueDomain(), cache_size=5)
    real = room.replace("chat:", "queue:")
    await runner.commit(log, real, 1_000, [submit(Principal("g", Role.GUEST), "s", "c1")])
    for i in range(20):
        seq, _, view = await runner.view(log, f"{real}-never-{i}", DJ)
        assert seq == 0 and view["queue"] == []
    assert runner.cached == 1


async def test_a_look_whose_caller_went_away_keeps_the_cached_state(log: SqlLog,
                                                                   room: str) -> None:
    # Each subscribe to a domain room looks at its state; a client that subscribes and
    # unsubscribes in a loop used to drop the room's cached state each time, making
    # the DJ's next command rebuild it from the snapshot and the log.
    runner = CommandRunner(QueueDomain())
    name = room.replace("chat:", "queue:")
    await runner.commit(log, name, 1_000, [submit(Principal("g", Role.GUEST), "s", "c1")])
    assert runner.cached == 1
    for spins in range(30):
        look = asyncio.create_task(runner.view(log, name, DJ))
        for _ in range(spins):
            await asyncio.sleep(0)
        look.cancel()
        await asyncio.gather(look, return_exceptions=True)
        assert runner.cached == 1


async def test_notices_to_no_valid_room_are_not_stored(log: SqlLog, room: str) -> None:
    # A token's `sub` may be up to 200 characters, a room id 128: `user:{sub}` of a
    # long one is no room anybody can read. On PostgreSQL its name overflowed the
    # rooms table's column and failed the guest's command and its whole batch.
    runner = CommandRunner(QueueDomain())
    name = room.replace("chat:", "queue:")
    tag = room.rsplit("-", 1)[1]
    guests = [Principal("g" * 187 + tag, Role.GUEST), Principal(f"has space {tag}", Role.GUEST),
              Principal(f"ok-{tag}", Role.GUEST)]
    outcomes, stored = await runner.commit(log, name, 1_000, [
        submit(who, f"s{i}", f"c{i}") for i, who in enumerate(guests)])
    assert all(not isinstance(o, Exception) for o in outcomes), outcomes
    dj_calls: list[Any] = [Call(DJ, Command("request.accept", {"request_id": rid}), f"a{i}")
                           for i, rid in enumerate(o.result["request_id"] for o in outcomes
                                                   if not isinstance(o, Exception))]
    outcomes, stored = await runner.commit(log, name, 2_000, dj_calls)
    assert all(not isinstance(o, Exception) for o in outcomes), outcomes
    assert set(stored) == {name, f"user:ok-{tag}"}
    assert await stored_rooms(log, "user:ggg") == []
    assert await stored_rooms(log, "user:has space") == []
    assert await stored_rooms(log, f"user:ok-{tag}") == [f"user:ok-{tag}"]
