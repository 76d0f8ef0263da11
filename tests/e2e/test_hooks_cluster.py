"""Command hooks on two instances of one PostgreSQL database.

A backend's verdict and the command it decided are one durable outcome: a retry
on the other instance returns it (allow or deny) and the backend, whose calls are
counted, is not asked again; the same command on both instances at once commits
one outcome; an instance killed between the backend's answer and the commit
leaves nothing, and the retry elsewhere asks again with the same hook id.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import httpx
import pytest

from tests.backend_server import Backend, Call, Reply, allow, deny
from tests.e2e.conftest import MakeServer
from tests.e2e.support import Server, bearer, post_command, unique_room
from tests.e2e.test_hooks import hooks_of, song, user, write_backends


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[Backend, Backend]]:
    main, votes = Backend().start(), Backend().start()
    yield main, votes
    main.stop()
    votes.stop()
    assert main.bad_signatures == votes.bad_signatures == 0


@pytest.fixture
async def pair(make_server: MakeServer, pg_migrated: str, tmp_path: object,
               backends: tuple[Backend, Backend]) -> tuple[Server, Server]:
    main, votes = backends
    main.answer = lambda call: allow()
    file = write_backends(tmp_path / "backends.json", hooks_of(main, votes))  # type: ignore[operator]
    first, second = await asyncio.gather(make_server(pg_migrated, backends_file=file),
                                         make_server(pg_migrated, backends_file=file))
    return first, second


async def submitted(http: httpx.AsyncClient, srv: Server, room: str) -> list[int]:
    reply = await http.get(f"{srv.base}/v1/rooms/{room}/messages", params={"after": 0},
                           headers=bearer())
    frames = reply.json()["frames"]
    return [f["seq"] for f in frames if f["data"]["event"] == "request.submitted"]


async def test_a_retry_on_the_other_instance_returns_the_first_outcome(
        pair: tuple[Server, Server], backends: tuple[Backend, Backend],
        http: httpx.AsyncClient) -> None:
    one, two = pair
    main = backends[0]
    room, guest = unique_room("queue"), user("guest")
    main.answer = lambda call: allow({"amount": 300})
    first = await post_command(http, one, room, "request.submit", song(1), user=guest,
                               ident="x-1")
    assert first.status_code == 200
    retried = await post_command(http, two, room, "request.submit", song(1), user=guest,
                                 ident="x-1")
    assert retried.json() == first.json() | {"duplicate": True}

    main.answer = lambda call: deny("CONFLICT", "that payment was used")
    refused = await post_command(http, two, room, "request.submit", song(2), user=guest,
                                 ident="x-2")
    assert refused.status_code == 409
    main.answer = lambda call: allow()
    again = await post_command(http, one, room, "request.submit", song(2), user=guest,
                               ident="x-2")
    assert again.status_code == 409 and again.json() == refused.json()

    assert len(main.of(room)) == 2  # one call per command, none for the retries
    assert await submitted(http, two, room) == [1]


async def test_one_command_on_both_instances_at_once_commits_one_outcome(
        pair: tuple[Server, Server], backends: tuple[Backend, Backend],
        http: httpx.AsyncClient) -> None:
    one, two = pair
    main = backends[0]
    room, guest = unique_room("queue"), user("guest")

    def together(call: Call) -> Reply:
        """Answer once both instances have asked: neither has committed yet."""
        main.wait_calls(2, hook=call.hook)
        return allow({"n": len(main.of(room))})

    main.answer = together
    replies = await asyncio.gather(*(
        post_command(http, srv, room, "request.submit", song(1), user=guest, ident="same")
        for srv in (one, two)))
    bodies = [r.json() for r in replies]
    assert all(r.status_code == 200 for r in replies), bodies
    assert sorted(b["duplicate"] for b in bodies) == [False, True]
    assert bodies[0]["seqs"] == bodies[1]["seqs"] == [1]
    calls = main.of(room)
    assert len(calls) == 2 and calls[0].hook == calls[1].hook  # the backend dedupes on it
    assert await submitted(http, one, room) == [1]


async def test_a_crash_between_the_answer_and_the_commit_asks_again(
        pair: tuple[Server, Server], backends: tuple[Backend, Backend],
        http: httpx.AsyncClient) -> None:
    one, two = pair
    main = backends[0]
    room, guest = unique_room("queue"), user("guest")
    assert one.proc is not None
    victim = one.proc.pid

    def crash(call: Call) -> None:
        if len(main.of(room)) == 1:
            os.kill(victim, signal.SIGKILL)
            one.proc.wait(10)  # type: ignore[union-attr]

    main.before_answer = crash
    try:
        with pytest.raises(httpx.TransportError):
            await post_command(http, one, room, "request.submit", song(1), user=guest,
                               ident="k-1")
        assert await submitted(http, two, room) == []
        retried = await post_command(http, two, room, "request.submit", song(1), user=guest,
                                     ident="k-1")
    finally:
        main.before_answer = None
    assert retried.status_code == 200 and retried.json()["seqs"] == [1]
    calls = main.of(room)
    assert len(calls) == 2 and calls[0].hook == calls[1].hook
    assert await submitted(http, two, room) == [1]
