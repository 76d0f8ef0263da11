"""Fan-out order: many subscribers, concurrent publishers, one total order.

Promises 1 and 3 of DESIGN.md: every subscriber gets every message exactly
once, seqs 1..N without a gap, in the same order as every other subscriber,
on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from roomlog.identity import Role
from tests.e2e.support import Server, WsClient, open_client, unique_room

SUBSCRIBERS = 50
PUBLISHERS = 4
PER_PUBLISHER = 50


@pytest.mark.parametrize("backend", ["server", "pg_server"])
async def test_every_subscriber_gets_every_message_once_in_one_order(
    backend: str, request: pytest.FixtureRequest
) -> None:
    srv: Server = request.getfixturevalue(backend)
    room = unique_room()
    total = PUBLISHERS * PER_PUBLISHER
    async with contextlib.AsyncExitStack() as stack:
        async def opened(user: str) -> WsClient:
            client = await open_client(srv.ws_url, user=user)
            stack.push_async_callback(client.close)
            return client

        subscribers = await asyncio.gather(*(opened(f"sub{i}") for i in range(SUBSCRIBERS)))
        confirmations = await asyncio.gather(*(s.subscribe(room) for s in subscribers))
        for frame in confirmations:
            assert frame["head"] == 0 and frame["replayed"] == 0
        epoch = confirmations[0]["epoch"]
        assert all(f["epoch"] == epoch for f in confirmations)

        publishers = await asyncio.gather(
            *(open_client(srv.ws_url, user=f"pub{p}", role=Role.SERVICE)
              for p in range(PUBLISHERS)))
        for pub in publishers:
            stack.push_async_callback(pub.close)

        async def publish(p: int, pub: WsClient) -> list[dict[str, object]]:
            return await pub.publish_many(
                room, [{"p": p, "i": i} for i in range(PER_PUBLISHER)])

        acks_per_publisher, streams = await asyncio.gather(
            asyncio.gather(*(publish(p, pub) for p, pub in enumerate(publishers))),
            asyncio.gather(*(s.messages(room, total, within=60) for s in subscribers)),
        )

        # Acks: distinct seqs 1..N in the room's epoch, none a duplicate.
        acked = {}
        for p, acks in enumerate(acks_per_publisher):
            for i, ack in enumerate(acks):
                assert ack["epoch"] == epoch and ack["duplicate"] is False
                acked[ack["seq"]] = {"p": p, "i": i}
        assert sorted(acked) == list(range(1, total + 1))

        # Every subscriber: seqs 1..N, contiguous, each message once, same order.
        reference = [(m["seq"], m["data"]) for m in streams[0]]
        assert [seq for seq, _ in reference] == list(range(1, total + 1))
        for stream in streams:
            assert [(m["seq"], m["data"]) for m in stream] == reference
            assert {m["epoch"] for m in stream} == {epoch}
        # What was acked as seq N is what every subscriber saw as seq N.
        assert dict(reference) == acked
        # Each publisher's messages keep the order it sent them in.
        for p in range(PUBLISHERS):
            mine = [data["i"] for _, data in reference if data["p"] == p]
            assert mine == list(range(PER_PUBLISHER))
        # `by` names the publishing user.
        assert {m["by"] for m in streams[0]} == {f"pub{p}" for p in range(PUBLISHERS)}

        # Nothing else arrived: no duplicates or stray frames left in the queues.
        for sub in subscribers:
            await sub.ping()
            assert [f for f in sub.frames if f["type"] == "message"] == []
