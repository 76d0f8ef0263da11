"""Claims of a batch of commands (``roomlog.commands``), on real SQLite and PostgreSQL logs.

The paid submits of one batch claim their payment references in one statement; a
reference another room took meanwhile fails its own submit only, with
PAYMENT_ALREADY_USED and nothing stored of it, while the rest of the batch commits.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from roomlog.commands import Call, CommandRunner, Outcome
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal, Role
from roomlog.log import Log, RoomTxn
from roomlog.log.schema import claims
from roomlog.log.sql import SqlLog
from roomlog.rooms.domain import Approval, Command, Event, Meta
from roomlog.rooms.queue import QueueDomain

T = TypeVar("T")
DJ = Principal("dj", Role.DJ)


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite"
                                       else "pg_url"))


@pytest.fixture
def room() -> str:
    """A name no other test uses (of a room, without its kind)."""
    return f"t-{secrets.token_hex(6)}"


@pytest.fixture
async def log(url: str) -> AsyncIterator[SqlLog]:
    opened = SqlLog(url, migrate=True)
    await opened.open()
    yield opened
    await opened.close()


class _CountingTxn:
    """A RoomTxn that counts its ``claim`` statements."""

    def __init__(self, txn: RoomTxn, counts: list[int]) -> None:
        self._txn = txn
        self._counts = counts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._txn, name)

    async def claim(self, keys: Mapping[str, str]) -> set[str]:
        self._counts.append(len(keys))
        return await self._txn.claim(keys)


class _CountingLog:
    """The Log port of a real log, counting the claim statements of its transactions."""

    def __init__(self, log: Log) -> None:
        self._log = log
        self.claims: list[int] = []  # keys per statement

    async def transact(self, room: str, now_ms: int, work: Callable[[RoomTxn], Awaitable[T]]
                       ) -> tuple[T, Any]:
        async def counted(txn: RoomTxn) -> T:
            return await work(_CountingTxn(txn, self.claims))  # type: ignore[arg-type]

        return await self._log.transact(room, now_ms, counted)


def paid_submit(n: int, reference: str) -> Call:
    args = {"song_id": f"s{n}", "title": f"T{n}", "artist": "A",
            "payment": {"reference": reference}}
    return Call(Principal(f"guest{n}", Role.GUEST),
                Command("request.submit", args, Approval({"amount": 500, "currency": "EUR"})),
                f"c{n}")


async def paid_room(log: Log, runner: CommandRunner, room: str) -> None:
    settings = Call(DJ, Command("queue.settings", {"price": 500}), "settings")
    [ok], _ = await runner.commit(log, room, 1_000, [settings])
    assert isinstance(ok, Outcome)


async def claimed(log: SqlLog, prefix: str) -> dict[str, tuple[str, str]]:
    """key -> (room, actor) of the claims whose key starts with ``prefix``."""
    async def select(conn: AsyncConnection) -> dict[str, tuple[str, str]]:
        rows = await conn.execute(sa.select(claims.c.key, claims.c.room, claims.c.actor)
                                  .where(claims.c.key.startswith(prefix)))
        return {str(key): (str(room), str(actor)) for key, room, actor in rows}

    return await log.run(select, write=False)


def folded(runner: CommandRunner, room: str, messages: list[Any]) -> dict[str, Any]:
    domain = runner.domain
    state = domain.initial(room.split(":", 1)[1])
    for m in messages:
        domain.apply(state, Event.from_data(m.data), Meta(m.by, m.seq, m.ts))
    return dict(domain.dump(state))


async def test_a_batch_of_paid_submits_claims_its_references_in_one_statement(
        log: SqlLog, room: str) -> None:
    runner = CommandRunner(QueueDomain())
    counting = _CountingLog(log)
    queue = f"queue:{room}"
    await paid_room(log, runner, queue)
    calls = [paid_submit(n, f"{room}-ref{n}") for n in range(10)]
    outcomes, _ = await runner.commit(counting, queue, 2_000, calls)  # type: ignore[arg-type]
    assert all(isinstance(o, Outcome) and not o.duplicate for o in outcomes), outcomes
    assert counting.claims == [10]  # one statement, not one per submit
    assert await claimed(log, f"payment:{room}-") == {
        f"payment:{room}-ref{n}": (queue, f"guest{n}") for n in range(10)}
    # The same reference twice in one batch: the second is refused by the room itself.
    again = [paid_submit(10, f"{room}-x"), paid_submit(11, f"{room}-x")]
    first, second = (await runner.commit(log, queue, 3_000, again))[0]
    assert isinstance(first, Outcome)
    assert isinstance(second, RoomlogError) and second.code is ErrorCode.PAYMENT_ALREADY_USED


async def test_a_reference_taken_by_another_room_fails_only_its_own_submit(
        log: SqlLog, room: str) -> None:
    runner = CommandRunner(QueueDomain())
    queue, other = f"queue:{room}", f"queue:{room}-other"
    await paid_room(log, runner, queue)
    await paid_room(log, runner, other)
    [taker], _ = await runner.commit(log, other, 2_000, [paid_submit(99, f"{room}-ref3")])
    assert isinstance(taker, Outcome)

    calls = [paid_submit(n, f"{room}-ref{n}") for n in range(6)]
    outcomes, _ = await runner.commit(log, queue, 3_000, calls)
    refused = outcomes[3]
    assert isinstance(refused, RoomlogError) and refused.code is ErrorCode.PAYMENT_ALREADY_USED
    assert all(isinstance(o, Outcome) for i, o in enumerate(outcomes) if i != 3), outcomes
    # Nothing of the refused submit is stored; the others are, once each.
    page = await log.read(queue, 0, 100)
    submitted = [m.data for m in page.messages if m.data.get("event") == "request.submitted"]
    assert sorted(d["payment"]["reference"] for d in submitted) == sorted(
        f"{room}-ref{n}" for n in (0, 1, 2, 4, 5))
    assert await claimed(log, f"payment:{room}-ref3") == {
        f"payment:{room}-ref3": (other, "guest99")}
    # The state the runner keeps is the fold of what was stored.
    assert folded(runner, queue, page.messages) == await runner.read(
        log, queue, runner.domain.dump)
    # A retry of the refused one is refused again (not remembered: nothing was stored).
    [retry], _ = await runner.commit(log, queue, 4_000, [calls[3]])
    assert isinstance(retry, RoomlogError) and retry.code is ErrorCode.PAYMENT_ALREADY_USED


async def test_two_instances_racing_for_references_give_each_to_one_room(
        url: str, room: str) -> None:
    logs = [SqlLog(url, migrate=True), SqlLog(url, migrate=True)]  # two processes
    for opened in logs:
        await opened.open()
    try:
        runners = [CommandRunner(QueueDomain()), CommandRunner(QueueDomain())]
        rooms = [f"queue:{room}-a", f"queue:{room}-b"]
        for i in range(2):
            await paid_room(logs[i], runners[i], rooms[i])

        async def batch(i: int, start: int) -> list[Outcome | RoomlogError]:
            # references 5..7 in both batches: each goes to one room only
            calls = [paid_submit(start + n, f"{room}-ref{n + 5 * i}") for n in range(8)]
            outcomes, _ = await runners[i].commit(logs[i], rooms[i], 2_000, calls)
            return outcomes

        for_a, for_b = await asyncio.gather(batch(0, 0), batch(1, 100))
        won = {f"{room}-ref{n}": isinstance(o, Outcome) for n, o in enumerate(for_a)}
        for n, o in enumerate(for_b):
            reference = f"{room}-ref{n + 5}"
            ok = isinstance(o, Outcome)
            if not ok:
                assert isinstance(o, RoomlogError) and o.code is ErrorCode.PAYMENT_ALREADY_USED
            assert not (ok and won.get(reference)), f"{reference} funded two requests"
            won[reference] = won.get(reference, False) or ok
        assert all(won.values()) and len(won) == 13  # every reference funded one request
        rows = await claimed(logs[0], f"payment:{room}-")
        assert len(rows) == 13
    finally:
        for opened in logs:
            await opened.close()
