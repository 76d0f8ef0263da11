"""``RoomTxn.claim`` on every adapter: a key is used once ever, across rooms and
processes; a transaction that rolls back gives its claims back."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from roomlog.log import RoomTxn
from roomlog.log.schema import claims
from roomlog.log.sql import SqlLog
from tests.log.conftest import LogFactory


async def test_one_of_many_racing_claims_wins_in_any_room(make_log: LogFactory,
                                                          room: str) -> None:
    logs = [await make_log(), await make_log()]  # two processes

    async def claimer(n: int) -> bool:
        async def work(txn: RoomTxn) -> bool:
            taken = await txn.claim({"payment:same": f"u{n}"})
            if not taken:
                txn.append(f"u{n}", b"1")
            return not taken

        won, _ = await logs[n % 2].transact(f"{room}-{n % 5}", 1, work)
        return won

    wins = await asyncio.gather(*(claimer(n) for n in range(20)))
    assert sum(wins) == 1


async def test_a_claim_is_taken_within_its_own_transaction_and_freed_by_a_rollback(
        make_log: LogFactory, room: str) -> None:
    log = await make_log()

    async def twice(txn: RoomTxn) -> tuple[set[str], set[str]]:
        return (await txn.claim({"k:a": "u", "k:b": "u"}),
                await txn.claim({"k:b": "u", "k:c": "u"}))

    (first, second), _ = await log.transact(room, 1, twice)
    assert (first, second) == (set(), {"k:b"})

    async def fails(txn: RoomTxn) -> None:
        assert await txn.claim({"k:d": "u"}) == set()
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await log.transact(room, 1, fails)

    async def again(txn: RoomTxn) -> set[str]:
        return await txn.claim({"k:a": "u", "k:d": "u"})

    taken, _ = await log.transact(room + "-other", 1, again)
    assert taken == {"k:a"}


async def test_one_claim_records_each_key_with_its_own_actor(make_log: LogFactory,
                                                             room: str) -> None:
    log = await make_log()

    async def both(txn: RoomTxn) -> set[str]:
        return await txn.claim({"k:z": "zoe", "k:y": "yan"})

    taken, _ = await log.transact(room, 1, both)
    assert taken == set()

    async def actors(conn: AsyncConnection) -> dict[str, str]:
        rows = await conn.execute(sa.select(claims.c.key, claims.c.actor)
                                  .where(claims.c.key.in_(["k:y", "k:z"])))
        return {str(key): str(actor) for key, actor in rows}

    assert isinstance(log, SqlLog)
    assert await log.run(actors, write=False) == {"k:y": "yan", "k:z": "zoe"}
