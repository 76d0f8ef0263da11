"""Same answer on every transport: long-polling and SSE read the WebSocket's log.

``GET /v1/rooms/{room}/messages?after=N`` (also held open with ``wait=``) and
``GET /v1/rooms/{room}/events`` (resumed with ``Last-Event-ID``) return
exactly the message frames a WebSocket subscriber saw.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from roomlog.identity import Role
from tests.e2e.conftest import MakeServer
from tests.e2e.support import (
    TIMEOUT,
    Server,
    WsClient,
    bearer,
    issue_token,
    open_client,
    sse,
    unique_room,
)

DATA: list[Any] = [
    {"text": "hello"}, [1, 2, 3], "plain string", 42, 3.5, None, True,
    {"nested": {"deep": ["ü", "日本", "😀"]}}, {"empty": {}}, 0, -7, "",
]


async def published_and_seen(srv: Server, room: str) -> tuple[WsClient, list[dict[str, Any]]]:
    """Publish DATA into ``room``; return the subscriber and the frames it saw."""
    sub = await open_client(srv.ws_url, user="watcher")
    await sub.subscribe(room)
    pub = await open_client(srv.ws_url, user="backend", role=Role.SERVICE)
    await pub.publish_many(room, DATA)
    await pub.close()
    seen = await sub.messages(room, len(DATA))
    assert [m["data"] for m in seen] == DATA
    return sub, seen


async def poll(http: httpx.AsyncClient, srv: Server, room: str, **params: Any) -> dict[str, Any]:
    reply = await http.get(f"{srv.base}/v1/rooms/{room}/messages", params=params,
                           headers=bearer("poller"))
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    return reply.json()  # type: ignore[no-any-return]


async def test_long_poll_returns_what_the_websocket_saw(
    server: Server, http: httpx.AsyncClient,
) -> None:
    room = unique_room()
    sub, seen = await published_and_seen(server, room)
    epoch, n = seen[0]["epoch"], len(seen)

    body = await poll(http, server, room, after=0)
    assert {k: body[k] for k in ("room", "epoch", "head", "trimmed", "next")} == {
        "room": room, "epoch": epoch, "head": n, "trimmed": 0, "next": n}
    assert body["frames"] == seen

    # Page by page with a cursor: the same frames, no gap, no overlap.
    pages, cursor = [], 0
    while True:
        body = await poll(http, server, room, after=cursor, limit=5, epoch=epoch)
        if not body["frames"]:
            assert body["next"] == cursor
            break
        pages.extend(body["frames"])
        cursor = body["next"]
        assert cursor == body["frames"][-1]["seq"]
    assert pages == seen

    # No cursor: where the head is, nothing else.
    body = await poll(http, server, room)
    assert (body["head"], body["next"], body["frames"]) == (n, n, [])
    # Nothing new within `wait`: an empty answer at the same cursor.
    body = await poll(http, server, room, after=n, wait=0.2)
    assert (body["next"], body["frames"]) == (n, [])
    await sub.close()


async def test_long_poll_wait_is_released_by_a_publish(
    make_server: MakeServer, http: httpx.AsyncClient,
) -> None:
    srv = await make_server()
    room = unique_room()
    pub = await open_client(srv.ws_url, user="backend", role=Role.SERVICE)
    await pub.publish_many(room, ["one", "two"])

    waiting = asyncio.create_task(poll(http, srv, room, after=2, wait=30))
    # The held request is the only interest in any room on this private server:
    # wait until the server reports it, so the publish below releases it.
    async def watched() -> None:
        while (await http.get(f"{srv.base}/health/ready")).json()["rooms"] < 1:
            assert not waiting.done(), waiting.result()
            await asyncio.sleep(0.02)
    await asyncio.wait_for(watched(), TIMEOUT)
    assert not waiting.done()

    ack = await pub.publish(room, "three")
    body = await asyncio.wait_for(waiting, TIMEOUT)
    assert [f["seq"] for f in body["frames"]] == [3] and body["next"] == 3

    # Exactly the frame a WebSocket subscriber replaying the log gets.
    sub = await open_client(srv.ws_url)
    await sub.subscribe(room, since={"epoch": ack["epoch"], "seq": 0})
    assert await sub.messages(room, 3) == (await poll(http, srv, room, after=0))["frames"]
    assert body["frames"] == (await poll(http, srv, room, after=2))["frames"]
    await sub.close()
    await pub.close()


# ---------------------------------------------------------------------------
# Server-Sent Events


async def test_sse_resumes_from_last_event_id_with_the_websocket_frames(
    server: Server, http: httpx.AsyncClient,
) -> None:
    room = unique_room()
    sub, seen = await published_and_seen(server, room)
    epoch, n = seen[0]["epoch"], len(seen)
    headers = bearer("reader") | {"last-event-id": "4"}
    async with sse(http, server, room, headers=headers) as stream:
        first = await stream.next()
        assert first["event"] == "subscribed"
        assert first["data"] == {"type": "subscribed", "room": room, "epoch": epoch, "head": n,
                                 "replayed": n - 4}
        replayed = [await stream.next() for _ in range(n - 4)]
        assert [e["event"] for e in replayed] == ["message"] * (n - 4)
        assert [int(e["id"]) for e in replayed] == list(range(5, n + 1))
        assert [e["data"] for e in replayed] == seen[4:]

        # Then live: the SSE stream and the WebSocket get the same next frame.
        pub = await open_client(server.ws_url, user="backend", role=Role.SERVICE)
        await pub.publish(room, {"live": True})
        live = await stream.next()
        [ws_live] = await sub.messages(room, 1)
        assert (live["event"], int(live["id"]), live["data"]) == ("message", n + 1, ws_live)
        await pub.close()
    await sub.close()


async def test_sse_with_query_token_from_the_start_and_without_a_position(
    server: Server, http: httpx.AsyncClient,
) -> None:
    room = unique_room()
    sub, seen = await published_and_seen(server, room)
    # EventSource cannot send headers: ?token= and ?after= do the same job.
    params = {"token": issue_token("reader"), "after": 0}
    async with sse(http, server, room, params=params) as stream:
        assert (await stream.next())["data"]["replayed"] == len(seen)
        assert [(await stream.next())["data"] for _ in seen] == seen

    # No Last-Event-ID: start at the head, then live.
    async with sse(http, server, room, headers=bearer("reader")) as stream:
        first = await stream.next()
        assert (first["data"]["head"], first["data"]["replayed"]) == (len(seen), 0)
        pub = await open_client(server.ws_url, user="backend", role=Role.SERVICE)
        await pub.publish(room, "next")
        event = await stream.next()
        [ws_frame] = await sub.messages(room, 1)
        assert (int(event["id"]), event["data"]) == (len(seen) + 1, ws_frame)
        await pub.close()
    await sub.close()
