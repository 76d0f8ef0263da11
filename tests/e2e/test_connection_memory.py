"""A closed WebSocket leaves nothing behind in the server (issue #13): its protocol
object and its session are freed, whichever way it ended, and the registries that
hold open connections (sessions, subscriptions, heartbeats, deadlines) let go.

Counted by the server itself (``roomlog_live_objects``: objects alive, incremented
when made and decremented when freed), so a reference cycle or a forgotten entry
shows as a count that never comes back down.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from roomlog.identity import Role
from tests.e2e.conftest import MakeServer
from tests.e2e.support import TIMEOUT, RawWs, issue_token, open_client, unique_room
from tests.e2e.test_metrics import sample, samples

ALIVE = "roomlog_live_objects"


async def counts(http: httpx.AsyncClient, base: str) -> tuple[float, float, float, float]:
    got = samples((await http.get(f"{base}/metrics")).text)
    return (got[sample(ALIVE, kind="websocket")], got[sample(ALIVE, kind="session")],
            got[sample("roomlog_connections", transport="websocket")],
            got[sample("roomlog_subscriptions")])


async def test_closed_connections_free_their_objects(make_server: MakeServer) -> None:
    srv = await make_server(max_frame_bytes=10_000, ws_close_timeout=1, ws_engine="native")
    room = unique_room()
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        before = await counts(http, srv.base)
        assert before == (0, 0, 0, 0)
        polite = [await open_client(srv.ws_url, user=f"p{i}") for i in range(10)]
        rude = [await RawWs.open(srv.port) for _ in range(5)]
        for i, raw in enumerate(rude):
            await raw.send_text({"type": "connect", "token": issue_token(f"r{i}")})
            await raw.expect("connected")
            await raw.send_text({"type": "subscribe", "room": room, "presence": True})
            await raw.expect("subscribed")
        oversize = [await open_client(srv.ws_url, user=f"o{i}") for i in range(5)]
        for client in polite + oversize:
            await client.subscribe(room)
        publisher = await open_client(srv.ws_url, user="pub", role=Role.SERVICE)
        await publisher.publish(room, {"n": 1})
        for client in polite:
            await client.messages(room, 1)
        opened = await counts(http, srv.base)
        assert opened[0] == opened[1] == opened[2] == 21 and opened[3] == 20
        for client in [*polite, publisher]:
            await client.close()  # a close handshake
        for raw in rude:
            raw.close()  # the TCP connection just goes
        for client in oversize:
            await client.send_raw("x" * 20_000)  # refused: 1009
            assert await client.closed() == 1009
        deadline = time.monotonic() + 20  # an upper bound for a broken server only
        while (now := await counts(http, srv.base)) != before:
            assert time.monotonic() < deadline, f"still held after close: {now}"
            await asyncio.sleep(0.2)
