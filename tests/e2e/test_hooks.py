"""Command hooks against a real backend (``tests/backend_server.py``) and real servers.

The backend allows (with data the event carries), denies with a code, times out,
fails with 500 or 503; a hook may fail open; a retry with the same command id
returns the first outcome, deny included, without asking the backend again; the
room's rules are checked before the backend is asked; a service may run a command
on behalf of a guest, whose rules then apply. Several instances: see
``test_hooks_cluster.py``.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from roomlog.identity import Role
from tests.backend_server import WAIT, Backend, Call, Reply, allow, deny, running_backend
from tests.e2e.conftest import MakeServer
from tests.e2e.support import (
    Server,
    bearer,
    open_client,
    post_command,
    unique_room,
)

HOOK_TIMEOUT = 1.0  # seconds the test hooks have to answer


def song(n: int | str) -> dict[str, str]:
    return {"song_id": f"song-{n}", "title": f"Title {n}", "artist": f"Artist {n}"}


def user(name: str) -> str:
    """A fresh user id: the shared server keeps per-user rate buckets across tests."""
    return f"{name}-{secrets.token_hex(3)}"


def write_backends(path: Path, backends: list[dict[str, Any]]) -> str:
    path.write_bytes(orjson.dumps({"backends": backends}))
    return str(path)


def hooks_of(main: Backend, votes: Backend) -> list[dict[str, Any]]:
    """The backends file of these tests: ``songapp`` decides submits, cancels and chat
    publishes; ``votes`` decides votes and fails open."""
    return [
        {"name": "songapp", "hooks": [{
            "on": ["queue:request.submit", "queue:request.cancel", "chat:publish"],
            "url": main.url, "secret": main.secret, "timeout": HOOK_TIMEOUT}]},
        {"name": "votes", "hooks": [{
            "on": ["queue:request.vote"], "url": votes.url, "secret": votes.secret,
            "timeout": HOOK_TIMEOUT, "fail_open": True}]},
    ]


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Backend, Backend]]:
    main, votes = Backend().start(), Backend().start()
    workdir = tmp_path_factory.mktemp("hooks")
    file = write_backends(workdir / "backends.json", hooks_of(main, votes))
    srv = Server(workdir, backends_file=file)
    try:
        srv.start()
        yield srv, main, votes
    finally:
        srv.stop()
        main.stop()
        votes.stop()
    srv.assert_clean_log()
    assert main.bad_signatures == votes.bad_signatures == 0


@pytest.fixture(autouse=True)
def allowing(hooked: tuple[Server, Backend, Backend]) -> None:
    """Each test starts with backends that allow."""
    for backend in hooked[1:]:
        backend.answer = lambda call: allow()


async def log_of(http: httpx.AsyncClient, srv: Server, room: str) -> list[dict[str, Any]]:
    reply = await http.get(f"{srv.base}/v1/rooms/{room}/messages", params={"after": 0},
                           headers=bearer("reader", Role.ADMIN))
    assert reply.status_code == 200, reply.text
    return reply.json()["frames"]  # type: ignore[no-any-return]


async def test_allow_with_data_the_event_carries(hooked: tuple[Server, Backend, Backend],
                                                 http: httpx.AsyncClient) -> None:
    srv, main, _ = hooked
    room, guest = unique_room("queue"), user("guest")
    main.answer = lambda call: allow({"amount": 500, "currency": "EUR"})
    ws = await open_client(srv.ws_url, user=guest)
    ack = await ws.command(room, "request.submit", song(1), ident="sub-1")
    assert ack["type"] == "ack" and ack["seqs"] == [1] and not ack["duplicate"]

    [call] = main.of(room)
    assert call.hook == call.body["hook"] and call.hook.startswith("hk_")
    assert call.body == {
        "type": "command", "hook": call.hook, "room": room, "kind": "queue",
        "epoch": ack["epoch"], "seq": 0, "ts": call.body["ts"],
        "command": {"id": "sub-1", "name": "request.submit", "args": song(1)},
        "principal": {"user": guest, "role": "guest"},
        "state": {"open": True, "owner": None, "settings": call.body["state"]["settings"],
                  "requests_last_hour": 0, "submits_last_minute": 0, "active": []}}
    [stored] = await log_of(http, srv, room)
    assert stored["data"]["hook"] == {"amount": 500, "currency": "EUR"}
    assert stored["data"]["event"] == "request.submitted"

    # The same id again, over HTTP: the first outcome, and the backend is not asked.
    again = await post_command(http, srv, room, "request.submit", song(1), user=guest,
                               ident="sub-1")
    assert again.status_code == 200 and again.json() == ack | {"duplicate": True}
    # A second request of the guest: the backend is told about the first one.
    await ws.command(room, "request.submit", song(2), ident="sub-2")
    assert [c.body["command"]["id"] for c in main.of(room)] == ["sub-1", "sub-2"]
    assert main.of(room)[1].body["state"]["active"] == [
        {"id": "r1", "song_id": "song-1", "status": "pending"}]
    await ws.close()


async def test_deny_with_a_code_is_the_outcome_of_its_id(
        hooked: tuple[Server, Backend, Backend], http: httpx.AsyncClient) -> None:
    srv, main, _ = hooked
    room, guest = unique_room("queue"), user("guest")
    main.answer = lambda call: deny("FORBIDDEN", "not on the guest list")
    ws = await open_client(srv.ws_url, user=guest)
    refused = await ws.command(room, "request.submit", song(1), ident="d-1")
    assert (refused["type"], refused["code"], refused["message"]) == (
        "error", "FORBIDDEN", "not on the guest list")

    # A code outside the list a backend may use: DENIED, with the backend's code.
    main.answer = lambda call: deny("GUEST_LIST_FULL", "card declined",
                                    details={"provider": "test"})
    declined = await post_command(http, srv, room, "request.submit", song(2), user=guest,
                                  ident="d-2")
    assert declined.status_code == 403
    assert declined.json() == {"error": {
        "code": "DENIED", "message": "card declined",
        "details": {"provider": "test", "code": "GUEST_LIST_FULL"}}}

    # The backend would allow now, but a retry of a denied id returns its deny,
    # on either transport, without asking again.
    main.answer = lambda call: allow()
    assert await ws.command(room, "request.submit", song(1), ident="d-1") == refused
    retried = await post_command(http, srv, room, "request.submit", song(2), user=guest,
                                 ident="d-2")
    assert retried.json() == declined.json()
    assert len(main.of(room)) == 2
    assert await log_of(http, srv, room) == []

    # A new id is a new command: asked again, allowed.
    ok = await ws.command(room, "request.submit", song(1), ident="d-3")
    assert ok["type"] == "ack" and ok["seqs"] == [1]
    await ws.close()


async def test_a_hook_that_times_out_or_fails_gives_unavailable_until_it_answers(
        hooked: tuple[Server, Backend, Backend], http: httpx.AsyncClient) -> None:
    srv, main, _ = hooked
    room, guest = unique_room("queue"), user("guest")
    ws = await open_client(srv.ws_url, user=guest)
    main.answer = lambda call: Reply(delay=30 * HOOK_TIMEOUT)  # longer than the hub waits
    slow = await ws.command(room, "request.submit", song(1), ident="u-1")
    assert slow["code"] == "UNAVAILABLE" and slow["retry_after"] == 1.0, slow

    main.answer = lambda call: Reply(status=500, body={"oops": True})
    failed = await post_command(http, srv, room, "request.submit", song(1), user=guest,
                                ident="u-1")
    assert failed.status_code == 503 and failed.json()["error"]["code"] == "UNAVAILABLE"

    main.answer = lambda call: Reply(status=503, headers={"retry-after": "7"})
    busy = await ws.command(room, "request.submit", song(1), ident="u-1")
    assert busy["code"] == "UNAVAILABLE" and busy["retry_after"] == 7.0

    main.answer = lambda call: Reply(body={"verdict": "maybe"})
    unclear = await ws.command(room, "request.submit", song(1), ident="u-1")
    assert unclear["code"] == "UNAVAILABLE"
    assert await log_of(http, srv, room) == []

    main.answer = lambda call: allow()
    ok = await ws.command(room, "request.submit", song(1), ident="u-1")
    assert ok["type"] == "ack" and ok["seqs"] == [1]
    hooks = {c.hook for c in main.of(room)}
    assert len(main.of(room)) == 5 and len(hooks) == 1  # one command, one hook id
    await ws.close()


async def test_a_hook_may_fail_open(hooked: tuple[Server, Backend, Backend],
                                    http: httpx.AsyncClient) -> None:
    srv, _, votes = hooked
    room, guest, voter = unique_room("queue"), user("guest"), user("voter")
    await post_command(http, srv, room, "request.submit", song(1), user=guest)
    votes.answer = lambda call: Reply(status=500)
    voted = await post_command(http, srv, room, "request.vote", {"request_id": "r1"},
                               user=voter, ident="v-1")
    assert voted.status_code == 200 and voted.json()["seqs"] == [2]
    [event] = (await log_of(http, srv, room))[1:]
    assert event["data"]["event"] == "request.voted" and "hook" not in event["data"]
    metrics = (await http.get(f"{srv.base}/metrics")).text
    assert 'roomlog_hook_calls_total{backend="votes",outcome="failed_open"}' in metrics

    # Failing open is for failures only: a deny is still a deny.
    votes.answer = lambda call: deny(message="voting is for members")
    other = user("other")
    refused = await post_command(http, srv, room, "request.vote", {"request_id": "r1"},
                                 user=other)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "DENIED"


async def test_the_rooms_rules_are_checked_before_the_backend_is_asked(
        hooked: tuple[Server, Backend, Backend], http: httpx.AsyncClient) -> None:
    srv, main, _ = hooked
    room, guest, dj = unique_room("queue"), user("guest"), user("dj")
    bad = await post_command(http, srv, room, "request.submit", {"song_id": "x"}, user=guest)
    assert bad.json()["error"]["code"] == "INVALID_ARGS"
    closed = await post_command(http, srv, room, "queue.close", {}, user=dj, role=Role.DJ)
    assert closed.status_code == 200
    refused = await post_command(http, srv, room, "request.submit", song(1), user=guest)
    assert refused.json()["error"]["code"] == "QUEUE_CLOSED"
    cancel = await post_command(http, srv, room, "request.cancel", {"request_id": "r9"},
                                user=guest)
    assert cancel.json()["error"]["code"] == "NOT_FOUND"
    assert main.of(room) == []


async def test_a_publish_hook(hooked: tuple[Server, Backend, Backend],
                              http: httpx.AsyncClient) -> None:
    srv, main, _ = hooked
    room, alice = unique_room("chat"), user("alice")
    url = f"{srv.base}/v1/rooms/{room}/messages"
    ok = await http.post(url, json={"id": "p-1", "data": {"text": "hi"}}, headers=bearer(alice))
    assert ok.status_code == 201 and ok.json()["seq"] == 1
    [call] = main.of(room)
    assert call.body["type"] == "publish" and call.body["command"] == {
        "id": "p-1", "name": "publish", "args": {"data": {"text": "hi"}}}
    assert call.body["state"] == {}

    main.answer = lambda call: deny("FORBIDDEN", "watch your language")
    ws = await open_client(srv.ws_url, user=alice)
    await ws.send({"type": "publish", "room": room, "id": "p-2", "data": {"text": "!!"}})
    refused = await ws.reply("p-2")
    assert (refused["code"], refused["message"]) == ("FORBIDDEN", "watch your language")
    main.answer = lambda call: allow()
    again = await http.post(url, json={"id": "p-2", "data": {"text": "!!"}},
                            headers=bearer(alice))
    assert again.status_code == 403 and again.json()["error"]["code"] == "FORBIDDEN"
    first = await http.post(url, json={"id": "p-1", "data": {"text": "hi"}},
                            headers=bearer(alice))
    assert first.status_code == 200 and first.json()["duplicate"] is True
    assert len(main.of(room)) == 2
    assert [f["data"] for f in await log_of(http, srv, room)] == [{"text": "hi"}]
    await ws.close()


async def test_a_service_runs_commands_on_behalf_of_a_guest(
        hooked: tuple[Server, Backend, Backend], http: httpx.AsyncClient) -> None:
    srv, main, _ = hooked
    room, guest, app = unique_room("queue"), user("guest"), user("songapp")

    async def submit(n: int, acting: dict[str, Any], who: str = app,
                     role: Role = Role.SERVICE) -> httpx.Response:
        body = {"name": "request.submit", "args": song(n), "id": f"s-{n}",
                "on_behalf_of": acting}
        return await http.post(f"{srv.base}/v1/rooms/{room}/commands", json=body,
                               headers=bearer(who, role))

    for n in (1, 2, 3):
        assert (await submit(n, {"user": guest})).status_code == 200
    # The guest's own rules apply: at most 3 active requests (the default).
    too_many = await submit(4, {"user": guest, "role": "guest"})
    assert too_many.json()["error"]["code"] == "TOO_MANY_ACTIVE"
    # The guest's own ids do not collide with the service's.
    mine = await post_command(http, srv, room, "request.cancel", {"request_id": "r1"},
                              user=guest, ident="s-1")
    assert mine.status_code == 200 and not mine.json()["duplicate"]

    frames = await log_of(http, srv, room)
    assert [(f["by"], f["data"].get("via")) for f in frames] == [
        (guest, app), (guest, app), (guest, app), (guest, None)]
    call = main.of(room)[0]
    assert call.body["principal"] == {"user": guest, "role": "guest"}
    assert call.body["sender"] == {"user": app, "role": "service"}

    for role in (Role.GUEST, Role.ADMIN, Role.DJ):
        refused = await submit(5, {"user": guest}, who=user("someone"), role=role)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "FORBIDDEN"
    for acting in ({"user": guest, "role": "admin"}, {"user": ""}, "guest", {"role": "dj"}):
        bad = await submit(6, acting)  # type: ignore[arg-type]
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "BAD_FRAME", acting


async def test_one_user_cannot_hold_a_slow_backend_for_everyone(
        make_server: MakeServer, tmp_path: Path) -> None:
    """A user may have ``hook_max_per_user`` commands waiting for the backend; more are
    RATE_LIMITED at once, and other users' commands still reach the backend."""
    with running_backend() as slow:
        release = threading.Event()

        def hold(call: Call) -> Reply:
            release.wait(WAIT)
            return allow()

        slow.answer = hold
        file = write_backends(tmp_path / "backends.json", [{"name": "slow", "hooks": [{
            "on": ["queue:request.submit"], "url": slow.url, "secret": slow.secret,
            "timeout": 60}]}])
        srv = await make_server(backends_file=file, hook_max_per_user=2)
        room, greedy, other = unique_room("queue"), user("greedy"), user("other")
        ws = await open_client(srv.ws_url, user=greedy)
        waiting = [await ws.send_command(room, "request.submit", song(n)) for n in (1, 2)]
        await asyncio.to_thread(slow.wait_calls, 2)
        third = await ws.command(room, "request.submit", song(3))
        assert third["code"] == "RATE_LIMITED" and third["retry_after"] == 0.5, third
        neighbour = await open_client(srv.ws_url, user=other)
        theirs = await neighbour.send_command(room, "request.submit", song(4))
        await asyncio.to_thread(slow.wait_calls, 3)
        release.set()
        for client, ident in ((ws, waiting[0]), (ws, waiting[1]), (neighbour, theirs)):
            assert (await client.reply(ident))["type"] == "ack"
        await ws.close()
        await neighbour.close()


async def test_the_same_id_twice_at_once_asks_the_backend_once(
        hooked: tuple[Server, Backend, Backend]) -> None:
    srv, main, _ = hooked
    room, guest = unique_room("queue"), user("guest")
    ws = await open_client(srv.ws_url, user=guest)
    for _ in range(2):  # back to back: the second arrives while the first waits, or after
        await ws.send_command(room, "request.submit", song(1), ident="twice")
    acks = [await ws.reply("twice"), await ws.reply("twice")]
    assert sorted(a["duplicate"] for a in acks) == [False, True]
    assert acks[0]["seqs"] == acks[1]["seqs"] == [1]
    assert len(main.of(room)) == 1
    await ws.close()
