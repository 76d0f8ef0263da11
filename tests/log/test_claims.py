"""``RoomTxn.claim`` on every adapter: a key is used once ever, across rooms and
processes; a transaction that rolls back gives its claims back."""

from __future__ import annotations

import asyncio

import pytest

from roomlog.log import RoomTxn
from tests.log.conftest import LogFactory


async def test_one_of_many_racing_claims_wins_in_any_room(make_log: LogFactory,
                                                          room: str) -> None:
    logs = [await make_log(), await make_log()]  # two processes

    async def claimer(n: int) -> bool:
        async def work(txn: RoomTxn) -> bool:
            taken = await txn.claim(["payment:same"], f"u{n}")
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
        return (await txn.claim(["k:a", "k:b"], "u"), await txn.claim(["k:b", "k:c"], "u"))

    (first, second), _ = await log.transact(room, 1, twice)
    assert (first, second) == (set(), {"k:b"})

    async def fails(txn: RoomTxn) -> None:
        assert await txn.claim(["k:d"], "u") == set()
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await log.transact(room, 1, fails)

    async def again(txn: RoomTxn) -> set[str]:
        return await txn.claim(["k:a", "k:d"], "u")

    taken, _ = await log.transact(room + "-other", 1, again)
    assert taken == {"k:a"}
