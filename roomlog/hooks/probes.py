"""Probes of hooked commands, grouped per room into one transaction.

A hooked command visits its room twice: a probe (is its id remembered? do the room's
rules refuse it? what is the hook told?), then, after the backend answered, the commit.
Commits are grouped by the publisher; probes are grouped here, the same way: the probes
that arrive for a room while one of its probe transactions runs wait for it and then
share the next one. Without this, a burst of paid submits into one room took the room's
lock once per probe, one after the other (measured: 200 submits at once waited seconds
for their probes on a loaded machine).

Each probe is a piece of work on the transaction, run in arrival order; a probe's own
outcome is a value (a recalled outcome, a refusal, or what to ask), so one probe never
fails another. A probe names the (actor, client id) whose remembered outcome it needs:
the group looks them all up in one query, before the first probe runs, and hands each
probe its own (a query per probe kept the room locked for one round trip to the
database per paid submit, measured with loadtest/paid.py). If the transaction itself
fails (the database), every probe of the group gets that error. A caller that goes away
stops waiting; its probe still runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from roomlog.log import Log, Prior, RoomTxn

__all__ = ["Key", "Probes", "Work"]

Key = tuple[str, str]  # (actor, client id)
Work = Callable[[RoomTxn, Prior | None], Awaitable[Any]]
_Waiting = tuple[Key | None, Work, "asyncio.Future[Any]"]


class Probes:
    def __init__(self, log: Log, clock_ms: Callable[[], int], *, max_batch: int = 256) -> None:
        self._log = log
        self._clock_ms = clock_ms
        self._max_batch = max_batch
        self._waiting: dict[str, list[_Waiting]] = {}
        self._draining: dict[str, asyncio.Task[None]] = {}

    async def run(self, room: str, key: Key | None, work: Work) -> Any:
        """``work`` on a transaction of ``room`` (shared with other probes), given the
        remembered outcome of ``key`` (None: none, or no key); its value."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(room, []).append((key, work, future))
        if room not in self._draining:
            self._draining[room] = asyncio.create_task(self._drain(room))
        return await asyncio.shield(future)

    async def _drain(self, room: str) -> None:
        """One transaction after another while probes wait. Between the last check and
        the end there is no await, so a probe that arrives finds this drain running (and
        is taken) or finds it gone (and starts the next one)."""
        try:
            while waiting := self._waiting.get(room):
                batch = waiting[:self._max_batch]
                del waiting[:len(batch)]
                await self._one(room, batch)
        finally:
            self._draining.pop(room, None)
            if not self._waiting.get(room):
                self._waiting.pop(room, None)

    async def _one(self, room: str, batch: list[_Waiting]) -> None:
        async def work(txn: RoomTxn) -> list[Any]:
            known = await txn.prior({key for key, _, _ in batch if key is not None})
            return [await each(txn, None if key is None else known.get(key))
                    for key, each, _ in batch]

        try:
            values, _ = await self._log.transact(room, self._clock_ms(), work)
        except Exception as exc:  # the database: every probe of the group gets it
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: a caller may have gone
            return
        for (_, _, future), value in zip(batch, values, strict=True):
            if not future.done():
                future.set_result(value)
