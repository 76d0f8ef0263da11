"""Probes of hooked commands share their room's transaction (``roomlog.hooks.probes``),
on a real SQLite log."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from roomlog.hooks.probes import Probes
from roomlog.log import RoomTxn
from roomlog.log.sql import SqlLog


async def test_probes_that_arrive_together_share_transactions_and_keep_their_values(
        tmp_path: Path) -> None:
    log = SqlLog(f"sqlite+aiosqlite:///{tmp_path}/probes.db", migrate=True)
    await log.open()
    try:
        probes = Probes(log, lambda: 1)
        seen: list[int] = []

        def probe(n: int) -> Callable[[RoomTxn], Awaitable[int]]:
            async def work(txn: RoomTxn) -> int:
                seen.append(id(txn))
                return n * 10
            return work

        values = await asyncio.gather(*(probes.run("queue:p", probe(n)) for n in range(30)))
        assert values == [n * 10 for n in range(30)]
        assert len(set(seen)) < 30  # grouped, not a transaction each

        async def broken(txn: RoomTxn) -> int:
            raise RuntimeError("the database went away")

        results = await asyncio.gather(probes.run("queue:p", probe(1)),
                                       probes.run("queue:p", broken),
                                       return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)  # one transaction, one fate
        assert await probes.run("queue:p", probe(2)) == 20  # and the next one runs
    finally:
        await log.close()


