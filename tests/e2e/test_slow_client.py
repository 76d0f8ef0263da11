"""A slow client never slows anyone else (promise 6), and resumes by replay.

A subscriber that stops reading fills its socket buffers and then its bounded
outbox; the server drops it (its subscription goes at once; the client sees
close 4008 when it reads again, or just the end of the stream if the server
gave up on sending the close frame) while the fast subscribers keep getting
every message. The slow client then reconnects
with ``since`` and gets everything it missed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from roomlog.identity import Role
from tests.e2e.conftest import MakeServer
from tests.e2e.support import RawWs, WsClient, bearer, issue_token, open_client, unique_room

FAST = 3
BATCH = 20  # publishes in flight at once
CAP = 6000  # the slow client must be dropped long before this many messages
PAYLOAD = "x" * 4000


async def test_slow_subscriber_is_dropped_and_fast_ones_get_everything(
    make_server: MakeServer, http: httpx.AsyncClient,
) -> None:
    srv = await make_server(outbox_max_messages=200, outbox_max_bytes=256_000,
                            commit_batch=BATCH, coalesce_max_frames=64,
                            publish_rate=100_000, publish_burst=100_000)
    room = unique_room()

    # The slow one: a bare socket with a small receive window that stops reading
    # right after its subscription is confirmed.
    slow = await RawWs.open(srv.port, rcvbuf=4096)
    await slow.send_text({"type": "connect", "token": issue_token("slow")})
    await slow.expect("connected")
    await slow.send_text({"type": "subscribe", "room": room})
    epoch = (await slow.expect("subscribed"))["epoch"]

    fast = [await open_client(srv.ws_url, user=f"fast{i}") for i in range(FAST)]
    for client in fast:
        await client.subscribe(room)
    received: list[list[dict[str, Any]]] = [[] for _ in fast]

    async def read(client: WsClient, into: list[dict[str, Any]]) -> None:
        while True:
            into.extend(await client.messages(room, 1, within=60))

    readers = [asyncio.create_task(read(c, r)) for c, r in zip(fast, received, strict=True)]

    async def subscribers() -> int:
        reply = await http.get(f"{srv.base}/v1/rooms/{room}", headers=bearer())
        return int(reply.json()["subscribers"])

    assert await subscribers() == FAST + 1

    async def caught_up(n: int) -> None:
        """Until every fast subscriber has the first ``n`` messages."""
        async def wait() -> None:
            while any(len(r) < n for r in received):
                for task in readers:
                    if task.done():
                        task.result()  # a reader failed: show why
                await asyncio.sleep(0.01)
        await asyncio.wait_for(wait(), 60)

    pub = await open_client(srv.ws_url, user="backend", role=Role.SERVICE)
    published = 0
    try:
        # Publish, a batch at a time as fast as the fast subscribers take it,
        # until the server gives up on the slow one (its subscription goes).
        while await subscribers() == FAST + 1:
            assert published < CAP, "the slow client was never dropped"
            acks = await pub.publish_many(
                room, [{"n": published + i + 1, "pad": PAYLOAD} for i in range(BATCH)])
            published += BATCH
            assert acks[-1]["seq"] == published
            await caught_up(published)
        assert await subscribers() == FAST
        # ... and publishing goes on without it.
        await pub.publish_many(room, [{"n": published + i + 1, "pad": ""} for i in range(BATCH)])
        published += BATCH
        await caught_up(published)

        # Every fast subscriber got every message, in order, exactly once.
        for got in received:
            assert [m["seq"] for m in got] == list(range(1, published + 1))
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    # The slow client reads again: what was already in flight, then the end: a
    # close 4008 if the server could still queue it, else just the end of the stream.
    frames, code = await slow.until_closed(within=30)
    slow.close()
    assert code in (4008, None)
    assert slow.eof or code == 4008
    assert [f for f in frames if f["type"] != "message"] == []
    had = [f["seq"] for f in frames]
    assert had == list(range(1, len(had) + 1))  # a prefix, contiguous
    assert len(had) < published

    # It resumes from the last seq it has and gets exactly the rest.
    back = await open_client(srv.ws_url, user="slow")
    subscribed = await back.subscribe(room, since={"epoch": epoch, "seq": len(had)})
    assert (subscribed["head"], subscribed["replayed"]) == (published, published - len(had))
    rest = await back.messages(room, published - len(had), within=60)
    assert [m["seq"] for m in rest] == list(range(len(had) + 1, published + 1))
    await back.ping()
    assert not [f for f in back.frames if f["type"] == "message"]
    for client in (*fast, back, pub):
        await client.close()
