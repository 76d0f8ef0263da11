"""The command runner with a backend's verdict, on a real (SQLite) log.

A deny is the command's remembered outcome and ``decide`` is not asked; an
approval's data is stamped into the events as ``hook``, a service's id as ``via``,
and the fold of the stored events is the state the runner kept; a room's own
refusal is not remembered, hooked or not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from roomlog.commands import Call, CommandRunner, Outcome, call_of
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.hooks.contract import Deny
from roomlog.identity import Principal, Role
from roomlog.log.sql import SqlLog
from roomlog.protocol import parse_command
from roomlog.rooms import parse_room
from roomlog.rooms.domain import Approval, Command, Event, Meta
from roomlog.rooms.queue import QueueDomain

GUEST = Principal("g1", Role.GUEST)
APP = Principal("app", Role.SERVICE)
ROOM = "queue:runner"


def submit(song: str, ident: str, **changes: Any) -> Call:
    args = {"song_id": song, "title": song.title(), "artist": "A"}
    return dataclasses.replace(Call(GUEST, Command("request.submit", args), ident), **changes)


@pytest.fixture
async def log(sqlite_url: str) -> AsyncIterator[SqlLog]:
    opened = SqlLog(sqlite_url, migrate=True)
    await opened.open()
    yield opened
    await opened.close()


async def run(log: SqlLog, runner: CommandRunner, *calls: Call) -> list[Outcome | RoomlogError]:
    outcomes, _ = await runner.commit(log, ROOM, 1_000, list(calls))
    return outcomes


async def test_a_deny_is_remembered_and_decide_is_not_asked(log: SqlLog) -> None:
    runner = CommandRunner(QueueDomain())
    deny = Deny(ErrorCode.DENIED, "card declined", {"code": "PAYMENT_DECLINED"})
    # The hook denies a submit that the room would refuse too (bad args): its deny wins.
    bad = Call(GUEST, Command("request.submit", {}), "c1", denied=deny)
    [outcome] = await run(log, runner, bad)
    assert isinstance(outcome, RoomlogError) and outcome.code is ErrorCode.DENIED
    # A retry (without a verdict: the gate found it remembered, or not) gets the deny.
    [again] = await run(log, runner, submit("s1", "c1"))
    assert isinstance(again, RoomlogError)
    assert (again.code, again.message, again.details) == (
        ErrorCode.DENIED, "card declined", {"code": "PAYMENT_DECLINED"})
    assert (await log.info(ROOM)).head == 0


async def test_an_approval_is_stamped_and_folds_like_the_live_state(log: SqlLog) -> None:
    runner = CommandRunner(QueueDomain(), snapshot_every=1000)
    approved = submit("s1", "c1", sender=APP,
                      command=Command("request.submit",
                                      {"song_id": "s1", "title": "S1", "artist": "A"},
                                      Approval({"amount": 300})))
    [ok] = await run(log, runner, approved)
    assert isinstance(ok, Outcome) and ok.seqs == [1]
    page = await log.read(ROOM, 0, 10)
    [message] = page.messages
    assert message.by == "g1"
    assert message.data["hook"] == {"amount": 300} and message.data["via"] == "app"

    # The retry is keyed by the sender: the service's id, not the guest's.
    [dup] = await run(log, runner, dataclasses.replace(approved, command=Command(
        "request.submit", {"song_id": "s1", "title": "S1", "artist": "A"})))
    assert isinstance(dup, Outcome) and dup.duplicate and dup.seqs == [1]
    [own] = await run(log, runner, submit("s2", "c1"))
    assert isinstance(own, Outcome) and not own.duplicate

    domain = QueueDomain()
    folded = domain.initial("runner")
    for stored in (await log.read(ROOM, 0, 10)).messages:
        domain.apply(folded, Event.from_data(stored.data), Meta(stored.by, stored.seq, stored.ts))
    assert domain.dump(folded) == await runner.read(log, ROOM, domain.dump)


async def test_the_rooms_own_refusal_after_an_approval_is_not_remembered(
        log: SqlLog) -> None:
    runner = CommandRunner(QueueDomain())
    closed = Call(Principal("dj", Role.DJ), Command("queue.close", {}), "close")
    await run(log, runner, closed)
    approved = submit("s1", "c1", command=Command(
        "request.submit", {"song_id": "s1", "title": "S1", "artist": "A"}, Approval({})))
    [refused] = await run(log, runner, approved)
    assert isinstance(refused, RoomlogError) and refused.code is ErrorCode.QUEUE_CLOSED
    await run(log, runner, Call(Principal("dj", Role.DJ), Command("queue.open", {}), "open"))
    [ok] = await run(log, runner, approved)
    assert isinstance(ok, Outcome) and not ok.duplicate
    stored = orjson.loads((await log.read(ROOM, 0, 10)).messages[-1].raw)
    assert stored["event"] == "request.submitted" and "hook" not in stored  # empty data


def test_only_a_service_acts_on_behalf_of_a_user() -> None:
    frame = parse_command({"name": "request.submit", "args": {}, "id": "c1",
                           "on_behalf_of": {"user": "g1"}}, parse_room("queue:x"))
    call = call_of(APP, frame)
    assert (call.who, call.sender, call.key) == (GUEST, APP, ("app", "c1"))
    for role in (Role.GUEST, Role.DJ, Role.ADMIN, Role.TECHNICIAN):
        with pytest.raises(RoomlogError) as refused:
            call_of(Principal("x", role), frame)
        assert refused.value.code is ErrorCode.FORBIDDEN
    plain = call_of(GUEST, dataclasses.replace(frame, on_behalf_of=None))
    assert (plain.who, plain.sender, plain.key) == (GUEST, None, ("g1", "c1"))
