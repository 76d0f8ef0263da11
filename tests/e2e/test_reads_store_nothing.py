"""Reading a room stores nothing (issue 10, section 6).

Every read of a new room name used to insert a row into ``rt_rooms`` that was
never deleted: one guest made 5,000 in 14 s. A room that was only read reads as
head 0 on every path (subscribe, long-poll, SSE, room info, state, access checks)
and is created by its first write, under the epoch its readers were given.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3

import httpx

from roomlog.identity import Role
from tests.e2e.support import Server, bearer, open_client, post_command, sse


def _stored(srv: Server, tag: str) -> list[str]:
    """Rooms with a row in the server's SQLite database whose name holds ``tag``."""
    db = sqlite3.connect(f"file:{srv.workdir / 'roomlog.db'}?mode=ro", uri=True)
    try:
        return [name for (name,) in db.execute(
            "SELECT name FROM rt_rooms WHERE name LIKE ? ORDER BY name", (f"%{tag}%",))]
    finally:
        db.close()


async def test_reads_of_rooms_nobody_wrote_store_nothing(server: Server,
                                                         http: httpx.AsyncClient) -> None:
    tag = secrets.token_hex(6)
    headers = bearer("reader")
    base = f"{server.base}/v1/rooms"
    for i in range(40):
        room = f"chat:{tag}-{i}"
        assert (await http.get(f"{base}/{room}", headers=headers)).json()["head"] == 0
        for query in ("", "?after=0", "?after=0&wait=0"):
            reply = await http.get(f"{base}/{room}/messages{query}", headers=headers)
            assert reply.status_code == 200 and reply.json()["head"] == 0, reply.text
        state = await http.get(f"{base}/queue:{tag}-{i}/state", headers=headers)
        assert state.status_code == 200 and state.json()["seq"] == 0, state.text
        assert (await http.get(f"{base}/{room}/presence", headers=headers)).status_code == 200
        # A customer asking for a ticket that does not exist: its access check reads it.
        ticket = await http.get(f"{base}/repair:{tag}-{i}/state",
                                headers=bearer("cust", Role.CUSTOMER))
        assert ticket.status_code == 403, ticket.text
    for i in range(10):
        async with sse(http, server, f"chat:{tag}-sse-{i}", headers=headers) as stream:
            assert (await stream.next())["event"] == "subscribed"
    client = await open_client(server.ws_url, user="reader")
    for i in range(40):
        for kind in ("chat", "queue"):
            subscribed = await client.subscribe(f"{kind}:{tag}-ws-{i}")
            assert subscribed["head"] == 0
            await client.send({"type": "unsubscribe", "room": f"{kind}:{tag}-ws-{i}"})
    await client.ping()
    await client.close()
    assert _stored(server, tag) == []
    # The first write creates the room, and only it.
    reply = await http.post(f"{base}/chat:{tag}-0/messages", json={"id": "p1", "data": 1},
                            headers=headers)
    assert reply.status_code == 201, reply.text
    assert _stored(server, tag) == [f"chat:{tag}-0"]


async def test_the_first_write_continues_what_readers_hold(server: Server,
                                                           http: httpx.AsyncClient) -> None:
    # Readers of a room nobody wrote hold (epoch, 0). The write that creates the room
    # must continue exactly that: no reset on any transport.
    tag = secrets.token_hex(6)
    chat, queue = f"chat:{tag}", f"queue:{tag}"
    watcher = await open_client(server.ws_url, user="watcher")
    subscribed = await watcher.subscribe(chat)
    in_queue = await watcher.subscribe(queue)
    epoch = subscribed["epoch"]
    head = (await http.get(f"{server.base}/v1/rooms/{chat}/messages",
                           headers=bearer("poller"))).json()
    assert (head["epoch"], head["next"]) == (epoch, 0)
    poll = asyncio.create_task(http.get(
        f"{server.base}/v1/rooms/{chat}/messages",
        params={"after": 0, "epoch": epoch, "wait": 10}, headers=bearer("poller")))
    async with sse(http, server, chat, headers=bearer("streamer"),
                   params={"after": 0, "epoch": epoch}) as stream:
        assert (await stream.next())["event"] == "subscribed"
        publisher = await open_client(server.ws_url, user="writer")
        ack = await publisher.publish(chat, {"n": 1})
        assert (ack["seq"], ack["epoch"]) == (1, epoch)
        event = await stream.next()
        assert (event["event"], event["data"]["seq"], event["data"]["epoch"]) == (
            "message", 1, epoch)
    (message,) = await watcher.messages(chat, 1)
    assert (message["seq"], message["epoch"]) == (1, epoch)
    polled = (await poll).json()
    assert [f["type"] for f in polled["frames"]] == ["message"] and polled["epoch"] == epoch
    reply = await post_command(http, server, queue, "request.submit",
                               {"song_id": "s", "title": "T", "artist": "A"}, user="g1")
    assert reply.status_code == 200 and reply.json()["epoch"] == in_queue["epoch"], reply.text
    (event,) = await watcher.messages(queue, 1)
    assert (event["seq"], event["epoch"]) == (1, in_queue["epoch"])
    assert not [f for f in watcher.frames if f["type"] == "reset"]
    await publisher.close()
    await watcher.close()
