"""Resume: a client that was away continues from its last seq, losing nothing.

A subscriber killed mid-stream reconnects with ``since={epoch, seq}`` and gets
exactly the messages after it (no loss, no duplicate), also when it missed
more than a page of the log, and also across a SIGKILL of the server.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from roomlog.identity import Role
from tests.e2e.conftest import MakeServer
from tests.e2e.support import Server, WsClient, open_client, unique_room


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames]


async def publisher(srv: Server) -> WsClient:
    return await open_client(srv.ws_url, user="backend", role=Role.SERVICE)


async def test_killed_subscriber_resumes_without_loss_or_duplicate(server: Server) -> None:
    room = unique_room()
    pub = await publisher(server)
    sub = await open_client(server.ws_url, user="reader")
    try:
        first = await sub.subscribe(room)
        epoch = first["epoch"]
        # Phase 1: 40 messages; the subscriber takes 30 of them and then dies
        # without a closing handshake, whatever else was already on its way.
        acks = await pub.publish_many(room, [{"n": n} for n in range(1, 41)])
        assert seqs(acks) == list(range(1, 41))
        seen = await sub.messages(room, 30)
        assert seqs(seen) == list(range(1, 31))
        sub.abort()

        # Phase 2: publishing goes on while it is away.
        await pub.publish_many(room, [{"n": n} for n in range(41, 71)])

        # Phase 3: it comes back while 30 more are being published.
        async def come_back() -> tuple[WsClient, dict[str, Any]]:
            again = await open_client(server.ws_url, user="reader")
            return again, await again.subscribe(room, since={"epoch": epoch, "seq": 30})

        (again, subscribed), _ = await asyncio.gather(
            come_back(), pub.publish_many(room, [{"n": n} for n in range(71, 101)]))
        try:
            assert subscribed["epoch"] == epoch
            assert 70 <= subscribed["head"] <= 100
            assert subscribed["replayed"] == subscribed["head"] - 30
            rest = await again.messages(room, 70)
            assert seqs(rest) == list(range(31, 101))
            assert [m["data"]["n"] for m in rest] == list(range(31, 101))
            await again.ping()  # anything still queued would now be in frames
            assert not [f for f in again.frames if f["type"] in ("message", "reset")]
        finally:
            await again.close()
    finally:
        await pub.close()
        sub.abort()


async def test_long_absence_pages_through_the_log(make_server: MakeServer) -> None:
    srv = await make_server(page_size=7)
    room = unique_room()
    pub = await publisher(srv)
    try:
        sub = await open_client(srv.ws_url, user="reader")
        epoch = (await sub.subscribe(room))["epoch"]
        await pub.publish_many(room, [{"n": n} for n in range(1, 4)])
        assert seqs(await sub.messages(room, 3)) == [1, 2, 3]
        await sub.close()

        # Away for 60 messages: more than eight pages of seven.
        await pub.publish_many(room, [{"n": n} for n in range(4, 64)])

        back = await open_client(srv.ws_url, user="reader")
        # Resubscribe while 20 more are published: pages, then the live tail.
        subscribed, _ = await asyncio.gather(
            back.subscribe(room, since={"epoch": epoch, "seq": 3}),
            pub.publish_many(room, [{"n": n} for n in range(64, 84)]))
        assert subscribed["epoch"] == epoch
        assert subscribed["replayed"] == subscribed["head"] - 3 >= 60
        got = await back.messages(room, 80)
        assert seqs(got) == list(range(4, 84))
        assert [m["data"]["n"] for m in got] == list(range(4, 84))
        # Then live.
        await pub.publish(room, {"n": 84})
        assert seqs(await back.messages(room, 1)) == [84]
        await back.ping()
        assert not [f for f in back.frames if f["type"] in ("message", "reset")]
        await back.close()
    finally:
        await pub.close()


async def test_acked_messages_survive_sigkill_and_resume_continues(
    make_server: MakeServer,
) -> None:
    srv = await make_server()
    room = unique_room()
    pub = await publisher(srv)
    sub = await open_client(srv.ws_url, user="reader")
    epoch = (await sub.subscribe(room))["epoch"]
    acks = await pub.publish_many(room, [{"n": n} for n in range(1, 21)])
    assert seqs(acks) == list(range(1, 21))
    assert seqs(await sub.messages(room, 10)) == list(range(1, 11))

    await srv.arestart(hard=True)  # SIGKILL: no shutdown, nothing flushed on the way out
    assert sub.close_code is None
    assert await sub.closed() == 1006  # the link died with the process
    pub.abort()

    back = await open_client(srv.ws_url, user="reader")
    subscribed = await back.subscribe(room, since={"epoch": epoch, "seq": 10})
    assert subscribed == {"type": "subscribed", "room": room, "epoch": epoch, "head": 20,
                          "replayed": 10}
    assert seqs(await back.messages(room, 10)) == list(range(11, 21))
    pub = await publisher(srv)
    ack = await pub.publish(room, {"n": 21})
    assert (ack["seq"], ack["epoch"]) == (21, epoch)
    assert seqs(await back.messages(room, 1)) == [21]
    await back.close()
    await pub.close()


async def test_sigterm_closes_clients_and_restart_keeps_the_log(make_server: MakeServer) -> None:
    srv = await make_server()
    room = unique_room()
    pub = await publisher(srv)
    sub = await open_client(srv.ws_url, user="reader")
    epoch = (await sub.subscribe(room))["epoch"]
    await pub.publish_many(room, [{"n": n} for n in range(1, 6)])
    assert seqs(await sub.messages(room, 5)) == [1, 2, 3, 4, 5]

    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
    assert await srv.astop() in (0, -signal.SIGTERM)
    assert "Traceback" not in srv.output()
    # A graceful stop closes WebSockets with a code that says "come back".
    assert await sub.closed() in (1001, 1012)
    assert await pub.closed() in (1001, 1012)

    await srv.astart()
    back = await open_client(srv.ws_url, user="reader")
    subscribed = await back.subscribe(room, since={"epoch": epoch, "seq": 5})
    assert (subscribed["epoch"], subscribed["head"], subscribed["replayed"]) == (epoch, 5, 0)
    pub = await publisher(srv)
    assert (await pub.publish(room, {"n": 6}))["seq"] == 6
    assert seqs(await back.messages(room, 1)) == [6]
    await back.close()
    await pub.close()


async def test_a_replay_larger_than_the_outbox_is_paced_not_dropped(
    make_server: MakeServer,
) -> None:
    # The outbox holds 20 frames / 20 kB; the replay is 300 messages of ~0.5 kB
    # read in pages of 500: the server must hand them over an outbox-full at a time.
    srv = await make_server(outbox_max_messages=20, outbox_max_bytes=20_000)
    room = unique_room()
    pub = await publisher(srv)
    for start in range(0, 300, 10):
        acks = await pub.publish_many(room, [{"n": n, "pad": "p" * 500}
                                             for n in range(start + 1, start + 11)])
    epoch = acks[0]["epoch"]
    sub = await open_client(srv.ws_url, user="reader")

    async def more() -> None:  # live messages arrive while it replays
        for start in range(300, 360, 10):
            await pub.publish_many(room, [{"n": n} for n in range(start + 1, start + 11)])

    subscribed, _ = await asyncio.gather(sub.subscribe(room, since={"epoch": epoch, "seq": 0}),
                                         more())
    assert subscribed["replayed"] == subscribed["head"] >= 300
    got = await sub.messages(room, 360)
    assert seqs(got) == list(range(1, 361))
    await sub.ping()
    assert sub.close_code is None
    await sub.close()
    await pub.close()
