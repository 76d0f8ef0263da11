"""Webhooks on two instances of one PostgreSQL database and one Redis.

Both instances take writes; the one that does not deliver announces its commits
(a broadcast hint), so the deliverer does not wait for its scan.

One instance delivers an endpoint (it holds the lease). Killed with SIGKILL in the
middle of a stream, the other takes over once the lease runs out, from the cursors
the first one stored: every message of every room arrives, in order (a redelivery
never skips ahead), and a message delivered twice carries the same webhook id.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from roomlog.identity import Role
from tests.backend_server import Backend, Reply
from tests.e2e.conftest import MakeServer
from tests.e2e.support import Server, bearer, migrate, unique_room
from tests.redis_server import RedisServer

WAIT = 30.0  # upper bound for the takeover and the rest of the stream
ADMIN = bearer("ops", Role.ADMIN)
ROOMS = 3
PER_ROOM = 40

SETTINGS: dict[str, object] = {
    "webhook_allow_private": "true",
    "webhook_lease_ttl": 1.0,
    "webhook_poll_interval": 5.0,  # commits of the other instance come by hints
    "webhook_cursor_flush": 0.05,
    "webhook_retry_base": 0.05,
    "webhook_retry_max": 0.3,
    "bus_ping_interval": 0.2,
    "bus_ping_timeout": 0.5,
}


async def holder(http: httpx.AsyncClient, servers: list[Server], webhook: str) -> Server:
    """The instance that delivers the webhook (it reports its delivery figures)."""
    deadline = time.monotonic() + WAIT
    while True:
        for srv in servers:
            reply = await http.get(f"{srv.base}/v1/admin/webhooks/{webhook}", headers=ADMIN)
            if reply.status_code == 200 and reply.json()["delivery"] is not None:
                return srv
        if time.monotonic() > deadline:
            raise AssertionError("no instance delivers the webhook")
        await asyncio.sleep(0.05)


async def test_kill_9_of_the_deliverer_loses_nothing_and_keeps_order(
        make_server: MakeServer, own_pg_url: str, redis_server: RedisServer,
        http: httpx.AsyncClient) -> None:
    # A database of its own: the session's shared servers would take part in the
    # endpoint's lease (without webhook_allow_private, and so never deliver).
    migrate(own_pg_url)
    one, two = await asyncio.gather(
        make_server(own_pg_url, redis_url=redis_server.url, **SETTINGS),
        make_server(own_pg_url, redis_url=redis_server.url, **SETTINGS))
    receiver = Backend().start()
    receiver.answer = lambda call: Reply(body={})
    try:
        prefix = unique_room("chat") + "-"
        rooms = [f"{prefix}{i}" for i in range(ROOMS)]
        created = await http.post(f"{one.base}/v1/admin/webhooks", headers=ADMIN, json={
            "url": receiver.url, "rooms": [prefix + "*"], "secret": receiver.secret})
        assert created.status_code == 201, created.text
        webhook = created.json()["webhook"]["id"]
        victim = await holder(http, [one, two], webhook)
        survivor = two if victim is one else one
        await asyncio.sleep(0.5)  # set-up: a round on each, so both know the endpoint
        killed = asyncio.Event()

        after_kill: list[int] = []

        async def publish(i: int, room: str) -> None:
            body = {"data": {"i": i}, "id": f"m-{i}"}
            if killed.is_set():
                after_kill.append(i)
            for srv in ([survivor] if killed.is_set() else [(one, two)[i % 2], survivor]):
                try:
                    reply = await http.post(f"{srv.base}/v1/rooms/{room}/messages",
                                            headers=ADMIN, json=body)
                except httpx.TransportError:
                    continue  # the killed one: the same id again on the survivor
                if reply.status_code in (200, 201):
                    return
            raise AssertionError(f"message {i} of {room} was not published")

        async def stream() -> None:
            for i in range(PER_ROOM):
                await asyncio.gather(*(publish(i, room) for room in rooms))
                await asyncio.sleep(0.01)

        async def kill_mid_stream() -> None:
            await asyncio.to_thread(receiver.wait_calls, ROOMS * PER_ROOM // 3, within=WAIT)
            await victim.akill()
            killed.set()

        await asyncio.wait_for(asyncio.gather(stream(), kill_mid_stream()), WAIT)
        deadline = time.monotonic() + WAIT
        while not all(_delivered(receiver, room) >= PER_ROOM for room in rooms):
            if time.monotonic() > deadline:
                raise AssertionError({r: _delivered(receiver, r) for r in rooms})
            await asyncio.sleep(0.05)
        assert await holder(http, [survivor], webhook) is survivor
        assert after_kill  # the kill came mid-stream

        for room in rooms:
            calls = receiver.of(room)
            seen: dict[int, str] = {}
            top = 0
            for call in calls:
                (message,) = call.body["messages"]
                seq = message["seq"]
                assert seq <= top + 1, f"{room}: {seq} arrived after {top}: a gap"
                top = max(top, seq)
                assert seen.setdefault(seq, call.hook) == call.hook  # a duplicate: same id
                assert message["data"] == {"i": seq - 1}
            assert sorted(seen) == list(range(1, PER_ROOM + 1))
    finally:
        receiver.stop()
    assert receiver.bad_signatures == 0


def _delivered(receiver: Backend, room: str) -> int:
    calls: list[Any] = receiver.of(room)
    return len({m["seq"] for c in calls for m in c.body["messages"]})
