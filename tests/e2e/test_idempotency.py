"""Exactly-once effect: a publish retried with the same id is stored once.

Over WebSocket and HTTP, and across the two: the retry gets the first seq
back marked ``duplicate``, subscribers see the message once, the log holds it
once.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from roomlog.identity import Role
from tests.e2e.support import Server, bearer, open_client, unique_room


async def log_of(http: httpx.AsyncClient, srv: Server, room: str) -> list[dict[str, object]]:
    reply = await http.get(f"{srv.base}/v1/rooms/{room}/messages", params={"after": 0},
                           headers=bearer())
    assert reply.status_code == 200
    return reply.json()["frames"]  # type: ignore[no-any-return]


async def test_same_id_twice_over_websocket(server: Server, http: httpx.AsyncClient) -> None:
    room = unique_room()
    sub = await open_client(server.ws_url, user="watcher")
    await sub.subscribe(room)
    pub = await open_client(server.ws_url, user="bob")
    first = await pub.publish(room, {"text": "hello"}, ident="msg-1")
    assert (first["seq"], first["duplicate"]) == (1, False)
    again = await pub.publish(room, {"text": "hello"}, ident="msg-1")
    assert again == first | {"duplicate": True}

    # Both sent back to back, before either is acknowledged (one group commit).
    await pub.send({"type": "publish", "room": room, "data": {"text": "x"}, "id": "msg-2"})
    await pub.send({"type": "publish", "room": room, "data": {"text": "x"}, "id": "msg-2"})
    acks = [await pub.expect("ack", id="msg-2"), await pub.expect("ack", id="msg-2")]
    assert sorted(a["duplicate"] for a in acks) == [False, True]
    assert {a["seq"] for a in acks} == {2}

    # A retry from a new connection (after a reconnect) is still a duplicate.
    await pub.close()
    pub = await open_client(server.ws_url, user="bob")
    assert (await pub.publish(room, {"text": "hello"}, ident="msg-1")) == first | {
        "duplicate": True}
    # The same id from another user is that user's own command.
    other = await open_client(server.ws_url, user="carol")
    assert (await other.publish(room, {"text": "mine"}, ident="msg-1"))["seq"] == 3

    got = await sub.messages(room, 3)
    assert [(m["seq"], m["by"], m["data"]) for m in got] == [
        (1, "bob", {"text": "hello"}), (2, "bob", {"text": "x"}), (3, "carol", {"text": "mine"})]
    await sub.ping()
    assert not [f for f in sub.frames if f["type"] == "message"]
    assert [f["seq"] for f in await log_of(http, server, room)] == [1, 2, 3]
    for client in (sub, pub, other):
        await client.close()


@pytest.mark.parametrize("backend", ["server", "pg_server"])
async def test_same_id_twice_over_http_and_across_transports(
    backend: str, request: pytest.FixtureRequest, http: httpx.AsyncClient,
) -> None:
    server: Server = request.getfixturevalue(backend)
    room = unique_room()
    url = f"{server.base}/v1/rooms/{room}/messages"
    headers = bearer("backend", Role.SERVICE)
    first = await http.post(url, json={"id": "order-7", "data": {"total": 12}}, headers=headers)
    assert first.status_code == 201
    body = first.json()
    assert (body["room"], body["id"], body["seq"], body["duplicate"]) == (room, "order-7", 1,
                                                                         False)
    again = await http.post(url, json={"id": "order-7", "data": {"total": 12}}, headers=headers)
    assert again.status_code == 200
    assert again.json() == body | {"duplicate": True}

    # Concurrent retries: one stores, the others are duplicates of it.
    replies = await asyncio.gather(*(
        http.post(url, json={"id": "order-8", "data": {"total": 5}}, headers=headers)
        for _ in range(5)))
    assert sorted(r.status_code for r in replies) == [200, 200, 200, 200, 201]
    assert {r.json()["seq"] for r in replies} == {2}

    # The same principal retrying over the WebSocket gets the HTTP result.
    ws = await open_client(server.ws_url, user="backend", role=Role.SERVICE)
    ack = await ws.publish(room, {"total": 12}, ident="order-7")
    assert (ack["seq"], ack["epoch"], ack["duplicate"]) == (1, body["epoch"], True)
    # And the other way round.
    ack = await ws.publish(room, {"total": 1}, ident="order-9")
    assert (ack["seq"], ack["duplicate"]) == (3, False)
    third = await http.post(url, json={"id": "order-9", "data": {"total": 1}}, headers=headers)
    assert third.status_code == 200 and third.json()["seq"] == 3 and third.json()["duplicate"]

    frames = await log_of(http, server, room)
    assert [(f["seq"], f["data"]) for f in frames] == [
        (1, {"total": 12}), (2, {"total": 5}), (3, {"total": 1})]
    await ws.close()
