"""Limits per principal (issue #10, section 6): what one user or one address may
hold and do, whatever the number of its connections and instances.

* connections per user (WebSocket, SSE, waiting long-polls) and per client address
  (``X-Forwarded-For`` from a trusted proxy), refused with LIMIT_EXCEEDED / 4029;
* one write bucket per user, over every connection, both transports and, with
  Redis, every instance;
* subscribe/unsubscribe, presence and HTTP reads rate limited; a WebSocket that
  keeps being refused is closed with 4029;
* services and admins get ``staff_limit_factor`` times the limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from roomlog.identity import Role
from tests.e2e.conftest import MakeServer
from tests.e2e.support import (
    RawWs,
    Server,
    WsClient,
    bearer,
    issue_token,
    open_client,
    sse,
    unique_room,
)
from tests.redis_server import RedisServer


async def refused_connect(srv: Server, user: str) -> tuple[dict[str, Any], int]:
    """Open a WebSocket as ``user`` whose ``connect`` is refused: (error, close code)."""
    client = await open_client(srv.ws_url, connect_frame=False)
    await client.send({"type": "connect", "token": issue_token(user), "id": "c"})
    error = await client.expect("error", id="c")
    return error, await client.closed()


async def connect_when_free(srv: Server, user: str) -> WsClient:
    """Connect as ``user`` as soon as one of its connections has been released."""
    for _ in range(100):
        client = await open_client(srv.ws_url, connect_frame=False)
        await client.send({"type": "connect", "token": issue_token(user), "id": "c"})
        frame = await client.next()
        if frame["type"] == "connected":
            return client
        await client.closed()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{user} never got a connection back")


async def publish_all(client: WsClient, room: str, n: int) -> list[dict[str, Any]]:
    """Send ``n`` publishes at once; every answer (ack or error), in order."""
    ids = [client.next_id() for _ in range(n)]
    for i, ident in enumerate(ids):
        await client.send({"type": "publish", "room": room, "data": i, "id": ident})
    return [await client.reply(ident) for ident in ids]


async def test_connections_per_user_are_capped(make_server: MakeServer,
                                               http: httpx.AsyncClient) -> None:
    srv = await make_server(max_connections_per_user=3)
    room = unique_room()
    held = [await open_client(srv.ws_url, user="greedy") for _ in range(2)]
    async with sse(http, srv, room, headers=bearer("greedy")):  # an SSE stream counts too
        error, code = await refused_connect(srv, "greedy")
        assert error["code"] == "LIMIT_EXCEEDED" and error["retry_after"] > 0
        assert code == 4029
        # a waiting long-poll counts too
        reply = await http.get(f"{srv.base}/v1/rooms/{room}/messages",
                               params={"after": 0, "wait": 5}, headers=bearer("greedy"))
        assert reply.status_code == 429 and reply.json()["error"]["code"] == "LIMIT_EXCEEDED"
        other = await open_client(srv.ws_url, user="someone-else")  # others are not limited
        await other.close()
    # the stream ended: a connection is free again (once the server saw it end)
    again = await connect_when_free(srv, "greedy")
    await held[0].close()
    assert (await again.ping())["type"] == "pong"
    for client in (again, held[1]):
        await client.close()
    metrics = (await http.get(f"{srv.base}/metrics")).text
    refused = re.search(r'roomlog_connections_refused_total\{reason="user_connections"\} (\S+)',
                        metrics)
    assert refused is not None and float(refused[1]) >= 2  # more if the wait above retried


async def test_connections_per_address_are_capped_behind_a_trusted_proxy(
    make_server: MakeServer, http: httpx.AsyncClient,
) -> None:
    srv = await make_server(max_connections_per_address=2, max_connections_per_user=100)
    hostile = {"x-forwarded-for": "203.0.113.9"}
    held = [await open_client(srv.ws_url, user=f"u{i}", additional_headers=hostile)
            for i in range(2)]
    third = await open_client(srv.ws_url, connect_frame=False, additional_headers=hostile)
    assert await third.closed() == 4029
    reply = await http.get(f"{srv.base}/health/live", headers=hostile)
    assert reply.status_code == 429 and reply.json()["error"]["code"] == "LIMIT_EXCEEDED"
    # another address (and the proxy itself) is served
    fine = await open_client(srv.ws_url, user="u9",
                             additional_headers={"x-forwarded-for": "198.51.100.7"})
    assert (await http.get(f"{srv.base}/health/live")).status_code == 200
    await held[0].close()
    back = await open_client(srv.ws_url, user="u3", additional_headers=hostile)
    for client in (back, fine, held[1]):
        await client.close()


async def test_the_write_rate_is_per_user_across_connections_and_transports(
    make_server: MakeServer, http: httpx.AsyncClient,
) -> None:
    srv = await make_server(publish_rate=0.01, publish_burst=10)
    room = unique_room()
    clients = [await open_client(srv.ws_url, user="flood") for _ in range(4)]
    answers = [a for c in clients for a in await publish_all(c, room, 5)]
    acked = [a for a in answers if a["type"] == "ack"]
    assert len(acked) == 10
    assert {a["code"] for a in answers if a["type"] == "error"} == {"RATE_LIMITED"}
    reply = await http.post(f"{srv.base}/v1/rooms/{room}/messages",
                            json={"id": "h1", "data": 1}, headers=bearer("flood"))
    assert reply.status_code == 429
    # another user has a bucket of its own
    other = await open_client(srv.ws_url, user="calm")
    assert [a["type"] for a in await publish_all(other, room, 3)] == ["ack"] * 3
    for client in (*clients, other):
        await client.close()


async def test_the_write_rate_holds_across_instances_with_redis(
    make_server: MakeServer, pg_migrated: str, redis_server: RedisServer,
) -> None:
    settings: dict[str, Any] = {"redis_url": redis_server.url, "publish_rate": 0.01,
                                "publish_burst": 8}
    a = await make_server(pg_migrated, **settings)
    b = await make_server(pg_migrated, **settings)
    room = unique_room()
    on_a = await open_client(a.ws_url, user="spread")
    on_b = await open_client(b.ws_url, user="spread")
    answers = [*await publish_all(on_a, room, 6), *await publish_all(on_b, room, 6)]
    assert sum(x["type"] == "ack" for x in answers) == 8
    for client in (on_a, on_b):
        await client.close()


async def test_subscribe_churn_is_rate_limited_and_then_closed(make_server: MakeServer) -> None:
    srv = await make_server(subscribe_rate=1, subscribe_burst=20, max_rate_strikes=10)
    room = unique_room()
    churn = await open_client(srv.ws_url, user="churner")
    with contextlib.suppress(ConnectionClosed):  # closed while it was still sending
        for n in range(200):
            await churn.send({"type": "unsubscribe" if n % 2 else "subscribe", "room": room,
                              "id": f"f{n}"})
    frames = [frame async for frame in churn]
    assert churn.close_code == 4029
    refused = [f["id"] for f in frames if f["type"] == "error"]
    assert {f["code"] for f in frames if f["type"] == "error"} == {"RATE_LIMITED"}
    assert refused[0] == "f20"  # the burst went through
    assert len(refused) <= 10 + 5  # the strikes, and a few refilled meanwhile


async def test_presence_and_http_reads_are_rate_limited(make_server: MakeServer,
                                                        http: httpx.AsyncClient) -> None:
    srv = await make_server(read_rate=0.01, read_burst=3, presence_rate=0.01, presence_burst=2)
    room = unique_room()
    url = f"{srv.base}/v1/rooms/{room}/messages"
    statuses = [(await http.get(url, params={"after": 0}, headers=bearer("reader"))).status_code
                for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    reply = await http.get(f"{srv.base}/v1/rooms/{room}", headers=bearer("reader"))
    assert reply.status_code == 429
    assert reply.json()["error"]["code"] == "RATE_LIMITED"
    assert (await http.get(url, params={"after": 0}, headers=bearer("other"))).status_code == 200
    client = await open_client(srv.ws_url, user="watcher")
    await client.subscribe(room)
    for n in range(3):
        await client.send({"type": "presence", "room": room, "id": f"p{n}"})
    answers = [await client.next() for _ in range(3)]
    assert [a.get("code", "ok") for a in answers] == ["ok", "ok", "RATE_LIMITED"]
    await client.close()
    metrics = (await http.get(f"{srv.base}/metrics")).text
    assert 'roomlog_rate_limited_total{kind="read",transport="http"} 3.0' in metrics
    assert 'roomlog_rate_limited_total{kind="presence",transport="websocket"} 1.0' in metrics


async def test_services_get_the_staff_factor(make_server: MakeServer,
                                             http: httpx.AsyncClient) -> None:
    srv = await make_server(publish_rate=0.01, publish_burst=2, staff_limit_factor=3)
    room = unique_room()
    url = f"{srv.base}/v1/rooms/{room}/messages"
    codes = [(await http.post(url, json={"id": f"s{n}", "data": n},
                              headers=bearer("backend", Role.SERVICE))).status_code
             for n in range(8)]
    assert codes == [201] * 6 + [429] * 2


# ---------------------------------------------------------------------------
# Abuse beside a healthy client: it loses nothing (SQLite and PostgreSQL)


@pytest.fixture(params=["sqlite", "postgresql"])
async def abused(request: pytest.FixtureRequest, make_server: MakeServer) -> Server:
    url = request.getfixturevalue("pg_migrated") if request.param == "postgresql" else None
    return await make_server(url, max_connections_per_user=4, max_rate_strikes=20,
                             subscribe_rate=5, subscribe_burst=20, header_timeout=2,
                             outbox_max_bytes=300_000)


async def test_a_guest_with_many_connections_hurts_only_itself(abused: Server) -> None:
    """Eight connections of one guest churn subscriptions and flood publishes; a
    healthy subscriber gets every message of a healthy writer, in order, once."""
    srv = abused
    room = unique_room()
    healthy = await open_client(srv.ws_url, user="healthy")
    await healthy.subscribe(room)
    writer = await open_client(srv.ws_url, user="writer")
    spam_room = unique_room()

    async def attacker(n: int) -> int | None:
        """One connection of the attacker; its close code."""
        client = await open_client(srv.ws_url, connect_frame=False)
        await client.send({"type": "connect", "token": issue_token("attacker"), "id": "c"})
        with contextlib.suppress(ConnectionClosed):
            for i in range(300):
                await client.send({"type": "subscribe" if i % 2 else "unsubscribe",
                                   "room": unique_room(), "id": f"s{n}-{i}"})
                await client.send({"type": "publish", "room": spam_room, "data": i,
                                   "id": f"p{n}-{i}"})
        return await client.closed(within=60)

    attack = [asyncio.create_task(attacker(n)) for n in range(8)]
    acks = await publish_all(writer, room, 100)
    assert [a["type"] for a in acks] == ["ack"] * 100
    assert set(await asyncio.gather(*attack)) == {4029}  # refused, or closed after its strikes
    got = await healthy.messages(room, 100)
    assert [m["data"] for m in got] == list(range(100))
    assert [m["seq"] for m in got] == list(range(1, 101))
    await healthy.ping()
    assert not [f for f in healthy.frames if f["type"] == "message"]  # nothing twice
    for client in (healthy, writer):
        await client.close()


async def test_slow_readers_and_hostile_heads_hurt_nobody(abused: Server) -> None:
    """Subscribers that stop reading, a 16 MiB header and slow heads beside a healthy
    subscriber: it gets every message, in order, once."""
    srv = abused
    room = unique_room()
    healthy = await open_client(srv.ws_url, user="healthy")
    await healthy.subscribe(room)
    slow = []
    for i in range(3):
        raw = await RawWs.open(srv.port, rcvbuf=4096)
        await raw.send_text({"type": "connect", "token": issue_token(f"slow{i}")})
        await raw.expect("connected")
        await raw.send_text({"type": "subscribe", "room": room})
        await raw.expect("subscribed")
        slow.append(raw)

    async def huge_head() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(16):
                writer.write(b"a" * 1_048_576)
                await writer.drain()
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    async def slow_head() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        with contextlib.suppress(ConnectionError):
            for byte in b"GET / HTTP/1.1\r\nX: " + b"a" * 100:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)
                if reader.at_eof():
                    break
        writer.close()

    attack = [asyncio.create_task(huge_head()), *(asyncio.create_task(slow_head())
                                                  for _ in range(50))]
    pub = await open_client(srv.ws_url, user="backend", role=Role.SERVICE)
    reading = asyncio.create_task(healthy.messages(room, 500, within=60))
    for n in range(10):
        await pub.publish_many(room, [{"n": n * 50 + i, "pad": "x" * 2000} for i in range(50)])
    got = await reading
    assert [m["data"]["n"] for m in got] == list(range(500))
    assert [m["seq"] for m in got] == list(range(1, 501))
    await healthy.ping()
    assert not [f for f in healthy.frames if f["type"] == "message"]
    for task in attack:
        task.cancel()
    await asyncio.gather(*attack, return_exceptions=True)
    for raw in slow:
        raw.close()
    for client in (healthy, pub):
        await client.close()
