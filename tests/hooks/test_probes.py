"""Probes of hooked commands share their room's transaction (``roomlog.hooks.probes``),
on a real SQLite log."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from roomlog.hooks.probes import Probes
from roomlog.log import Append, Log, Prior, RoomTxn
from roomlog.log.sql import SqlLog

T = TypeVar("T")


async def test_probes_that_arrive_together_share_transactions_and_keep_their_values(
        tmp_path: Path) -> None:
    log = SqlLog(f"sqlite+aiosqlite:///{tmp_path}/probes.db", migrate=True)
    await log.open()
    try:
        probes = Probes(log, lambda: 1)
        seen: list[int] = []

        def probe(n: int) -> Callable[[RoomTxn, Prior | None], Awaitable[int]]:
            async def work(txn: RoomTxn, prior: Prior | None) -> int:
                seen.append(id(txn))
                return n * 10
            return work

        values = await asyncio.gather(*(probes.run("queue:p", None, probe(n))
                                        for n in range(30)))
        assert values == [n * 10 for n in range(30)]
        assert len(set(seen)) < 30  # grouped, not a transaction each

        async def broken(txn: RoomTxn, prior: Prior | None) -> int:
            raise RuntimeError("the database went away")

        results = await asyncio.gather(probes.run("queue:p", None, probe(1)),
                                       probes.run("queue:p", None, broken),
                                       return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)  # one transaction, one fate
        assert await probes.run("queue:p", None, probe(2)) == 20  # and the next one runs
    finally:
        await log.close()


class _CountingTxn:
    """A RoomTxn that counts its ``prior`` lookups (each one a query)."""

    def __init__(self, txn: RoomTxn, lookups: list[int]) -> None:
        self._txn = txn
        self._lookups = lookups

    def __getattr__(self, name: str) -> Any:
        return getattr(self._txn, name)

    async def prior(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Prior]:
        self._lookups.append(1)
        return await self._txn.prior(keys)


class _CountingLog:
    def __init__(self, log: Log) -> None:
        self._log = log
        self.lookups: list[int] = []

    async def transact(self, room: str, now_ms: int, work: Callable[[RoomTxn], Awaitable[T]]
                       ) -> tuple[T, Any]:
        async def counted(txn: RoomTxn) -> T:
            return await work(_CountingTxn(txn, self.lookups))  # type: ignore[arg-type]

        return await self._log.transact(room, now_ms, counted)


async def test_a_group_of_probes_looks_up_remembered_outcomes_in_one_query(
        tmp_path: Path) -> None:
    log = SqlLog(f"sqlite+aiosqlite:///{tmp_path}/probes.db", migrate=True)
    await log.open()
    try:
        # ids 0, 2, 4, ... remembered before (as a publish remembers its id)
        await log.append("queue:p", [Append(f"u{n}", b"{}", id=f"c{n}") for n in range(0, 30, 2)],
                         now_ms=1)
        counting = _CountingLog(log)
        probes = Probes(counting, lambda: 1)  # type: ignore[arg-type]

        def probe(n: int) -> Callable[[RoomTxn, Prior | None], Awaitable[bool]]:
            async def work(txn: RoomTxn, prior: Prior | None) -> bool:
                return prior is not None
            return work

        found = await asyncio.gather(*(probes.run("queue:p", (f"u{n}", f"c{n}"), probe(n))
                                       for n in range(30)))
        assert found == [n % 2 == 0 for n in range(30)]  # each probe gets its own
        transactions = 2  # the first probe's, then the group that waited for it
        assert len(counting.lookups) <= transactions  # not one query per probe (30)
    finally:
        await log.close()
