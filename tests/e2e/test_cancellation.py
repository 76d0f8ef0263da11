"""Clients that cancel what they started never wedge the writer (issue 10, section 1).

Unsubscribing cancels the replay of a subscription; a closing connection cancels
its reader, which may be running a repair room's access check. Both used to reach
database transactions: on SQLite one guest subscribing to 100 new rooms and
unsubscribing 0.2 s later left the database write-locked for good, every later
write ``UNAVAILABLE`` and ``/health/ready`` still ``ok``.
"""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from roomlog.identity import Role
from tests.e2e.conftest import MakeServer
from tests.e2e.support import Server, open_client, post_command, unique_room


async def _churn(srv: Server) -> None:
    """What the issue did, and more of it: subscriptions cancelled at every moment."""
    rng = random.Random(10)
    guest = await open_client(srv.ws_url, user="churner")
    for _ in range(2):  # the rounds: 100 new rooms, unsubscribed 0.2 s later
        rooms = [unique_room(rng.choice(["chat", "queue"])) for _ in range(100)]
        for name in rooms:
            await guest.send({"type": "subscribe", "room": name})
        await asyncio.sleep(0.2)
        for name in rooms:
            await guest.send({"type": "unsubscribe", "room": name})
    for _ in range(300):  # one room at a time, unsubscribed after 0 to 10 ms
        name = unique_room(rng.choice(["chat", "queue"]))
        await guest.send({"type": "subscribe", "room": name})
        await asyncio.sleep(rng.random() * 0.01)
        await guest.send({"type": "unsubscribe", "room": name})
    await guest.ping()  # every frame handled
    await guest.close()
    for _ in range(20):  # connections closed while their reader checks a ticket's access
        customer = await open_client(srv.ws_url, user="c-churn", role=Role.CUSTOMER)
        for _ in range(10):
            await customer.send({"type": "subscribe", "room": unique_room("repair")})
        await asyncio.sleep(rng.random() * 0.01)
        customer.abort()


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
async def test_subscription_churn_never_wedges_the_writer(
        make_server: MakeServer, http: httpx.AsyncClient, request: pytest.FixtureRequest,
        db: str) -> None:
    url = None if db == "sqlite" else request.getfixturevalue("pg_migrated")
    srv = await make_server(url)
    await _churn(srv)
    # Afterwards, everyone else's writes still commit, and readiness says so truly.
    healthy = await open_client(srv.ws_url, user="healthy")
    room = unique_room()
    await healthy.subscribe(room)
    ack = await healthy.publish(room, {"n": 1})
    assert ack["seq"] == 1
    (message,) = await healthy.messages(room, 1)
    assert message["data"] == {"n": 1}
    queue = unique_room("queue")
    reply = await post_command(http, srv, queue, "request.submit",
                               {"song_id": "s1", "title": "T", "artist": "A"}, user="g1")
    assert reply.status_code == 200, reply.text
    ready = await http.get(srv.base + "/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ok", ready.text
    await healthy.close()
