"""The Python client (clients/python) against real server processes.

What the application sees is checked, never timing: every message once, in order,
across a SIGKILL of the server, a fallback to long-polling and the return to the
WebSocket, and a restart of the client itself (state file); writes issued while
the server is down are applied once; a rejected command raises its code.
Timeouts here only turn a hang into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from roomlog_client import (
    Ack,
    Client,
    ClientClosed,
    ClientStopped,
    CommandError,
    ConnectionState,
    Message,
    Pending,
    Position,
    Reset,
    Subscription,
)

from roomlog.identity import Role
from tests.clients.conftest import MakeServer
from tests.e2e.support import Server, issue_token, unique_room

TIMEOUT = 30.0  # upper bound for anything awaited here: only a broken client reaches it

# Fast schedules so that a test waits milliseconds where a real client waits seconds.
FAST: dict[str, Any] = {"backoff": (0.05, 0.1, 0.2), "jitter": 0.0,
                        "network_probe_interval": 0.2, "ws_probe_interval": 0.3,
                        "poll_wait": 2.0}


class States:
    """Every state a client went through, and a way to wait for the next one."""

    def __init__(self) -> None:
        self.seen: list[ConnectionState] = []
        self._changed = asyncio.Event()

    def __call__(self, state: ConnectionState) -> None:
        self.seen.append(state)
        self._changed.set()

    async def reach(self, state: ConnectionState, *, after: int = 0) -> int:
        """Wait until ``state`` occurs at index >= ``after``; its index."""
        async def wait() -> int:
            while True:
                for i in range(after, len(self.seen)):
                    if self.seen[i] is state:
                        return i
                self._changed.clear()
                await self._changed.wait()
        try:
            return await asyncio.wait_for(wait(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"never {state.value}; went through {self.seen}") from None


def client_for(srv: Server, user: str = "reader", *, states: States | None = None,
               **options: Any) -> Client:
    return Client(srv.ws_url, token=issue_token(user), on_state=states, **(FAST | options))


async def publish_over_http(srv: Server, room: str, ns: Iterable[Any], *,
                            pace: float = 0.0) -> None:
    """A publisher that does not give up: each message with its own id, retried with
    the same id while the server is down, so each is stored once."""
    headers = {"authorization": f"Bearer {issue_token('backend', Role.SERVICE)}"}
    async with httpx.AsyncClient(timeout=5.0) as http:
        for n in ns:
            body = {"id": f"pub-{n}", "data": {"n": n}}
            while True:
                with contextlib.suppress(httpx.TransportError):
                    response = await http.post(f"{srv.base}/v1/rooms/{room}/messages",
                                               json=body, headers=headers)
                    if response.status_code in (200, 201):
                        break
                    assert response.status_code == 503, response.text
                await asyncio.sleep(0.05)
            if pace:
                await asyncio.sleep(pace)


async def take(sub: Subscription, got: list[Message], n: int) -> list[Message]:
    """Messages of ``sub`` into ``got`` until it holds ``n``."""
    async def run() -> None:
        async for event in sub:
            if isinstance(event, Message):
                got.append(event)
                if len(got) >= n:
                    return
    try:
        await asyncio.wait_for(run(), TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"{len(got)} of {n} messages; last {got[-3:]}") from None
    return got


async def until(condition: Any, what: str) -> None:
    async def wait() -> None:
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(wait(), TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"never: {what}") from None


def assert_exactly(got: list[Message], ns: Iterable[Any]) -> None:
    """Each of ``ns`` once, in order, at consecutive seqs of one epoch."""
    assert [m.data["n"] for m in got] == list(ns)
    assert [m.seq for m in got] == list(range(got[0].seq, got[0].seq + len(got)))
    assert len({m.epoch for m in got}) == 1


async def assert_nothing_more(srv: Server, room: str, sub: Subscription) -> None:
    """After the last expected message the next one is a fresh marker: nothing was
    delivered twice, nothing is still on its way."""
    await publish_over_http(srv, room, ["end"])
    extra = await take(sub, [], 1)
    assert extra[0].data == {"n": "end"}, extra


async def read_log(srv: Server, room: str) -> list[dict[str, Any]]:
    headers = {"authorization": f"Bearer {issue_token('auditor', Role.ADMIN)}"}
    async with httpx.AsyncClient(timeout=10.0) as http:
        response = await http.get(f"{srv.base}/v1/rooms/{room}/messages",
                                  params={"after": 0, "limit": 1000}, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["frames"])


def submit(song: str) -> dict[str, Any]:
    return {"song_id": f"spotify:{song}", "title": f"Song {song}", "artist": "Band"}


# ---------------------------------------------------------------------------------


async def test_sigkill_mid_stream_delivers_every_message_once_in_order(
        make_server: MakeServer) -> None:
    srv = await make_server()
    room = unique_room()
    states = States()
    total = 150
    async with client_for(srv, states=states, poll_after=1000) as client:
        sub = client.subscribe(room)
        await asyncio.wait_for(sub.ready(), TIMEOUT)
        got: list[Message] = []
        publisher = asyncio.create_task(
            publish_over_http(srv, room, range(1, total + 1), pace=0.01))
        reader = asyncio.create_task(take(sub, got, total))
        await until(lambda: len(got) >= 40, "40 messages before the kill")
        assert not publisher.done()
        await srv.akill()
        await srv.astart()
        await asyncio.wait_for(publisher, TIMEOUT)
        await reader
        assert_exactly(got, range(1, total + 1))
        lost = await states.reach(ConnectionState.RECONNECTING)
        back = await states.reach(ConnectionState.CONNECTED, after=lost)

        # A graceful restart (SIGTERM: a `reconnect` frame, then 1001) mid-stream too.
        publisher = asyncio.create_task(
            publish_over_http(srv, room, range(total + 1, 2 * total + 1), pace=0.01))
        reader = asyncio.create_task(take(sub, got, 2 * total))
        await until(lambda: len(got) >= total + 20, "20 more messages before the restart")
        await srv.arestart()
        await asyncio.wait_for(publisher, TIMEOUT)
        await reader
        assert_exactly(got, range(1, 2 * total + 1))
        await assert_nothing_more(srv, room, sub)
        lost = await states.reach(ConnectionState.RECONNECTING, after=back)
        await states.reach(ConnectionState.CONNECTED, after=lost)
        assert ConnectionState.POLLING not in states.seen


async def test_falls_back_to_polling_and_returns_to_the_websocket(
        make_server: MakeServer) -> None:
    srv = await make_server(websockets=False)  # every handshake refused with HTTP 403
    room = unique_room()
    own = unique_room()
    states = States()
    async with client_for(srv, states=states) as client:
        sub = client.subscribe(room)
        polling = await states.reach(ConnectionState.POLLING)
        assert ConnectionState.CONNECTED not in states.seen
        assert states.seen[0] is ConnectionState.CONNECTING
        await asyncio.wait_for(sub.ready(), TIMEOUT)

        got: list[Message] = []
        await publish_over_http(srv, room, range(1, 21))
        await take(sub, got, 20)
        # Writes go over HTTP POST meanwhile; a rejection still carries its code.
        ack = await asyncio.wait_for(client.publish(own, {"while": "polling"}), TIMEOUT)
        assert ack.seq == 1 and not ack.duplicate
        try:
            await asyncio.wait_for(client.command(room, "room.explode"), TIMEOUT)
            raise AssertionError("a chat room has no commands")
        except CommandError as err:
            assert err.code == "UNKNOWN_COMMAND"

        # The same server (port, database) comes back with WebSockets on, while a
        # publisher goes on: the client returns to the WebSocket, losing nothing.
        srv.settings["websockets"] = True
        publisher = asyncio.create_task(publish_over_http(srv, room, range(21, 81), pace=0.01))
        await srv.arestart()
        await states.reach(ConnectionState.CONNECTED, after=polling)
        await asyncio.wait_for(publisher, TIMEOUT)
        await take(sub, got, 80)
        assert_exactly(got, range(1, 81))
        await assert_nothing_more(srv, room, sub)
        assert client.state is ConnectionState.CONNECTED
    assert [f["data"] for f in await read_log(srv, own)] == [{"while": "polling"}]


async def test_writes_issued_while_the_server_is_down_are_applied_once(
        make_server: MakeServer) -> None:
    srv = await make_server()
    room = unique_room()
    queue = unique_room("queue")
    states = States()
    async with client_for(srv, "guest1", states=states, poll_after=1000) as client:
        sub = client.subscribe(room)
        await asyncio.wait_for(sub.ready(), TIMEOUT)
        await srv.akill()
        await states.reach(ConnectionState.RECONNECTING)

        publishes = [asyncio.create_task(client.publish(room, {"n": i}, id=f"offline-{i}"))
                     for i in range(20)]
        command = asyncio.create_task(client.command(queue, "request.submit", submit("a1"),
                                                     id="offline-submit"))
        await until(lambda: len(client.pending()) == 21, "21 writes in the outbox")
        await srv.astart()
        acks = await asyncio.wait_for(asyncio.gather(*publishes), TIMEOUT)
        result = await asyncio.wait_for(command, TIMEOUT)
        assert [a.seq for a in acks] == list(range(1, 21))  # sent again in the order issued
        assert result["request_id"]

        # A burst cut by a SIGKILL: whatever was committed but not acknowledged is
        # sent again with its id, and stored once.
        burst = [asyncio.create_task(client.publish(room, {"n": i}, id=f"burst-{i}"))
                 for i in range(20, 220)]
        await until(lambda: any(t.done() for t in burst), "a first ack of the burst")
        await srv.akill()
        await srv.astart()
        acks = await asyncio.wait_for(asyncio.gather(*burst), TIMEOUT)
        assert len({a.seq for a in acks}) == 200
        assert client.pending() == []

        got = await take(sub, [], 220)
        assert_exactly(got, range(220))
    log = await read_log(srv, room)
    assert [f["data"]["n"] for f in log] == list(range(220))
    requests = [f for f in await read_log(srv, queue)
                if f["data"].get("event") == "request.submitted"]
    assert len(requests) == 1 and requests[0]["data"]["request"]["id"] == result["request_id"]


async def test_rejected_writes_raise_command_error_with_the_server_code(
        make_server: MakeServer) -> None:
    srv = await make_server()
    queue = unique_room("queue")
    async with client_for(srv, "guest2") as client:
        first = await asyncio.wait_for(client.command(queue, "request.submit", submit("x")),
                                       TIMEOUT)
        cases: list[tuple[str, Any]] = [
            ("INVALID_ARGS", client.command(queue, "request.submit", {"title": "no song"})),
            ("DUPLICATE_REQUEST", client.command(queue, "request.submit", submit("x"))),
            ("UNKNOWN_COMMAND", client.command(unique_room(), "request.submit", submit("y"))),
            ("FORBIDDEN", client.publish(unique_room("feed"), {"guests": "may not"})),
        ]
        for code, write in cases:
            try:
                await asyncio.wait_for(write, TIMEOUT)
                raise AssertionError(f"expected {code}")
            except CommandError as err:
                assert err.code == code, err
                assert err.message
                if code == "DUPLICATE_REQUEST":
                    assert err.details is not None
                    assert err.details["request_id"] == first["request_id"]
        assert client.pending() == []  # nothing rejected is sent again


async def test_a_new_client_with_the_state_file_resumes_rooms_and_outbox(
        make_server: MakeServer, tmp_path: Path) -> None:
    srv = await make_server()
    room = unique_room()
    path = tmp_path / "client-state.json"
    states = States()
    first = client_for(srv, "writer", states=states, state_file=str(path), poll_after=1000)
    async with first:
        sub = first.subscribe(room)
        await asyncio.wait_for(sub.ready(), TIMEOUT)
        await publish_over_http(srv, room, range(1, 11))
        got = await take(sub, [], 10)
        # Writes while the server is down stay in the outbox of the state file.
        await srv.akill()
        await states.reach(ConnectionState.RECONNECTING)
        offline = [asyncio.create_task(first.publish(room, {"own": i}, id=f"saved-{i}"))
                   for i in range(3)]
        await until(lambda: len(first.pending()) == 3, "3 writes in the outbox")
    for task in offline:  # the process "ends": its callers hear so
        try:
            await task
            raise AssertionError("the write cannot have been answered")
        except ClientClosed:
            pass
    saved = json.loads(path.read_text())
    assert saved["rooms"][room]["seq"] == 10
    assert [e["id"] for e in saved["outbox"]] == ["saved-0", "saved-1", "saved-2"]

    await srv.astart()
    await publish_over_http(srv, room, range(11, 21))  # while no client runs
    settled: list[tuple[Pending, Ack | CommandError]] = []
    second = client_for(srv, "writer", state_file=str(path),
                        on_settled=lambda entry, outcome: settled.append((entry, outcome)))
    async with second:
        sub = second.subscribe(room)  # no `since`: the position comes from the file
        events: list[Message] = []
        await take(sub, events, 13)
        ours = [m for m in events if "own" in m.data]
        theirs = [m for m in events if "n" in m.data]
        assert [m.data["n"] for m in theirs] == list(range(11, 21))
        assert sorted(m.data["own"] for m in ours) == [0, 1, 2]
        assert [m.seq for m in events] == list(range(11, 24))
        assert events[0].epoch == got[0].epoch
        await until(lambda: len(settled) == 3, "the saved writes answered")
        assert sorted(entry.id for entry, _ in settled) == ["saved-0", "saved-1", "saved-2"]
        assert all(isinstance(outcome, Ack) for _, outcome in settled)
        await assert_nothing_more(srv, room, sub)
    log = await read_log(srv, room)
    assert sorted(f["data"]["own"] for f in log if "own" in f["data"]) == [0, 1, 2]
    assert json.loads(path.read_text())["outbox"] == []


async def test_a_refused_token_is_refreshed_once_else_the_client_stops(
        make_server: MakeServer) -> None:
    srv = await make_server()
    forged = issue_token("alice", secret="not-the-server-secret-" + "y" * 20)

    calls: list[str] = []

    async def provider() -> str:
        calls.append("fresh")
        return issue_token("alice")

    async with Client(srv.ws_url, token=forged, token_provider=provider, **FAST) as client:
        ack = await asyncio.wait_for(client.publish(unique_room(), {"hello": 1}), TIMEOUT)
        assert ack.seq == 1 and calls == ["fresh"]
        assert client.state is ConnectionState.CONNECTED

    states = States()
    async with Client(srv.ws_url, token=forged, on_state=states, **FAST) as client:
        await states.reach(ConnectionState.CLOSED)
        assert isinstance(client.stop_reason, ClientStopped)
        assert client.stop_reason.close_code == 4001
        try:
            await client.publish(unique_room(), {"never": 1})
            raise AssertionError("a stopped client takes no writes")
        except ClientStopped:
            pass


async def test_a_frozen_server_is_noticed_by_the_application_ping(
        make_server: MakeServer) -> None:
    srv = await make_server()
    room = unique_room()
    states = States()
    client = client_for(srv, states=states, poll_after=1000, ping_interval=0.2,
                        ping_timeout=0.5, connect_timeout=1.0)
    assert srv.proc is not None
    async with client:
        sub = client.subscribe(room)
        await asyncio.wait_for(sub.ready(), TIMEOUT)
        await publish_over_http(srv, room, range(1, 6))
        got = await take(sub, [], 5)
        # No close, no RST: the socket stays open and silent; only the ping can tell.
        os.kill(srv.proc.pid, signal.SIGSTOP)
        try:
            lost = await states.reach(ConnectionState.RECONNECTING)
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
        await states.reach(ConnectionState.CONNECTED, after=lost)
        await publish_over_http(srv, room, range(6, 11))
        await take(sub, got, 10)
        assert_exactly(got, range(1, 11))


async def test_resets_hand_over_state_and_the_messages_still_kept(
        make_server: MakeServer) -> None:
    srv = await make_server(retention_max_messages=10)
    room = unique_room()
    queue = unique_room("queue")
    await publish_over_http(srv, room, range(1, 31))  # seqs 1-20 are trimmed
    headers = {"authorization": f"Bearer {issue_token('auditor', Role.ADMIN)}"}
    async with httpx.AsyncClient(timeout=10.0) as http:
        info = (await http.get(f"{srv.base}/v1/rooms/{room}", headers=headers)).json()
    async with client_for(srv, "dj-fan", poll_after=1000) as client:
        # A position older than what is kept: a reset, then the kept messages (over
        # HTTP), then live ones, in one ordered stream.
        sub = client.subscribe(room, since=Position(info["epoch"], 3))
        first = await asyncio.wait_for(anext(sub), TIMEOUT)
        assert isinstance(first, Reset) and first.reason == "trimmed", first
        assert (first.epoch, first.seq, first.trimmed) == (info["epoch"], 30, 20)
        # The live ones only once the kept ones are read: five more messages trim 21-25,
        # and a read after that answers with a second reset, as it should.
        got = await take(sub, [], 10)
        await publish_over_http(srv, room, range(31, 36))
        assert_exactly(await take(sub, got, 15), range(21, 36))

        # A domain room subscribed without a position starts with its state.
        q = client.subscribe(queue)
        initial = await asyncio.wait_for(anext(q), TIMEOUT)
        assert isinstance(initial, Reset) and initial.reason == "initial"
        assert initial.state["queue"] == [] and initial.seq == 0
        result = await asyncio.wait_for(client.command(queue, "request.submit", submit("q")),
                                        TIMEOUT)
        event = await asyncio.wait_for(anext(q), TIMEOUT)
        assert isinstance(event, Message) and event.seq == 1
        assert event.data["request"]["id"] == result["request_id"]

        # An admin resets the room: the live subscription moves to the new epoch.
        async with httpx.AsyncClient(timeout=10.0) as http:
            reset = (await http.delete(f"{srv.base}/v1/rooms/{room}", headers=headers)).json()
        moved = await asyncio.wait_for(anext(sub), TIMEOUT)
        assert isinstance(moved, Reset) and moved.reason == "epoch"
        assert (moved.epoch, moved.seq) == (reset["epoch"], 0)
        await publish_over_http(srv, room, ["after-reset"])
        again = await take(sub, [], 1)
        assert again[0].data == {"n": "after-reset"} and again[0].seq == 1
        assert again[0].epoch == reset["epoch"] != info["epoch"]


async def test_the_token_is_refreshed_before_it_expires(make_server: MakeServer) -> None:
    srv = await make_server()
    room = unique_room()
    calls: list[str] = []

    def provider() -> str:
        calls.append("fresh")
        return issue_token("shortlived", ttl=3)

    states = States()
    async with Client(srv.ws_url, token=issue_token("shortlived", ttl=3),
                      token_provider=provider, on_state=states, **FAST) as client:
        sub = client.subscribe(room)
        await asyncio.wait_for(sub.ready(), TIMEOUT)
        # The second refresh is only scheduled by the `connected` answering the first:
        # two calls mean a refresh went through on the open connection.
        await until(lambda: len(calls) >= 2, "two token refreshes")
        await publish_over_http(srv, room, [1, 2])
        assert_exactly(await take(sub, [], 2), [1, 2])
        assert states.seen == [ConnectionState.CONNECTING, ConnectionState.CONNECTED]


async def test_an_unreachable_network_is_offline_and_writes_wait() -> None:
    states = States()
    async with Client("ws://roomlog-test.invalid/ws", token="t", on_state=states,
                      **FAST) as client:
        write = asyncio.create_task(client.publish(unique_room(), {"queued": True}))
        await states.reach(ConnectionState.OFFLINE)
        await until(lambda: len(client.pending()) == 1, "the write in the outbox")
        client.reconnect_now()  # the application knows the network is back: try now
        assert not write.done()
    assert client.state is ConnectionState.CLOSED
    try:
        await write
        raise AssertionError("nothing could have answered it")
    except ClientClosed:
        pass
