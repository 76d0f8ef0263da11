"""RedisBus under failure, against a private redis-server: restart, eviction,
a blocked Redis, an instance that dies without closing.

The contract under test is the Bus port's (``roomlog.bus``): every change of
``connected`` is reported through ``Inbound.bus_state``, every subscribed room
is resynced after a reconnect, presence is written again after a reconnect,
and the entries of a dead instance vanish within ``presence_ttl`` with one
``leave`` each.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from roomlog.bus.redis import RedisBus
from tests.bus.test_contract import (
    REDIS_OPTIONS,
    WAIT,
    Node,
    Recorder,
    RedisNet,
    batch,
    eventually,
    row,
)
from tests.redis_server import RedisServer

TTL = REDIS_OPTIONS["presence_ttl"]
ENTRY = {"user": "u1", "role": "member"}


@pytest.fixture
async def net(redis_server: RedisServer) -> AsyncIterator[RedisNet]:
    made = RedisNet(redis_server)
    yield made
    redis_server.resume()  # a failed test may leave it paused: let the buses close
    await made.close()


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client of our own, to act on the server the way an operator would."""
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def changes_only(states: list[bool]) -> bool:
    """Every report is a change (no two equal reports in a row)."""
    return all(a != b for a, b in itertools.pairwise(states))


def down_then_up(inbound: Recorder) -> bool:
    return False in inbound.states and inbound.states[-1] is True


def resynced_after_down(inbound: Recorder, room: str) -> bool:
    """A resync of ``room`` came after the bus was reported down."""
    downs = [i for i, (method, arg) in enumerate(inbound.log)
             if method == "bus_state" and arg is False]
    return bool(downs) and any(method == "resync" and room in arg
                               for method, arg in inbound.log[downs[0]:])


async def listed(node: Node, room: str) -> set[str]:
    return set(await node.bus.presence(room))


async def recovers(net: RedisNet, a: Node, b: Node, rooms: list[str]) -> None:
    """After a failure both report down then up, b resyncs its rooms, and a
    publication and a signal reach b again."""
    for node in (a, b):
        await node.inbound.until(lambda n=node: down_then_up(n.inbound),
                                 "bus_state(False) then bus_state(True)")
        assert node.inbound.states[0] is True  # the first connection
        assert changes_only(node.inbound.states), node.inbound.states
        assert node.bus.connected
        assert node.bus.reconnects >= 1
    for room in rooms:
        await b.inbound.until(lambda r=room: resynced_after_down(b.inbound, r),
                              f"resync of {room} after the reconnect")
    room = rooms[0]
    messages = batch(room, 100, 101)
    b.inbound.received.clear()
    a.bus.publish(room, messages)
    a.bus.signal(room, {"after": "reconnect"})
    await b.inbound.until(lambda: (room, {"after": "reconnect"}) in b.inbound.signals,
                          "a signal after the reconnect")
    assert b.inbound.rows(room) == [row(m) for m in messages]


async def test_a_restart_is_reported_resynced_and_presence_written_again(
        net: RedisNet, redis_server: RedisServer, room: str) -> None:
    # A heartbeat far away: what is written again is written at the reconnect.
    net.options["presence_ttl"] = 60.0
    a, b = await net.node(), await net.node()
    rooms = [room, room + "-2"]
    await net.subscribe(b, *rooms)
    a.bus.presence_join(room, "a.1", ENTRY)
    b.bus.presence_join(room, "b.1", ENTRY)
    await eventually(lambda: _is(listed(b, room), {"a.1", "b.1"}), "the joins")

    await asyncio.to_thread(redis_server.restart)  # same port, empty data
    await recovers(net, a, b, rooms)
    # The restarted Redis lost every key: each instance writes its entries again.
    await eventually(lambda: _is(listed(b, room), {"a.1", "b.1"}),
                     "presence written again after the restart")
    await eventually(lambda: _is(listed(a, room), {"a.1", "b.1"}), "the same from a")


async def test_entries_lost_by_redis_are_written_again(
        net: RedisNet, admin: aioredis.Redis, room: str) -> None:
    # No connection drops: Redis lost the keys (FLUSHALL, a failover to an empty
    # replica) or another instance swept this one for dead. The heartbeat finds
    # the instance unlisted and writes its entries again.
    a, b = await net.node(), await net.node()
    a.bus.presence_join(room, "a.1", ENTRY)
    b.bus.presence_join(room, "b.1", ENTRY)
    await eventually(lambda: _is(listed(b, room), {"a.1", "b.1"}), "the joins")
    await admin.flushall()
    await eventually(lambda: _is(listed(b, room), {"a.1", "b.1"}),
                     "presence written again after the keys were lost", bound=TTL + 5)
    assert a.inbound.states == b.inbound.states == [True]  # the bus never went down


async def test_an_evicted_subscriber_reconnects_and_resyncs(
        net: RedisNet, admin: aioredis.Redis, room: str) -> None:
    a, b = await net.node(), await net.node()
    rooms = [room, room + "-2"]
    await net.subscribe(b, *rooms)
    await net.subscribe(a, room)
    # What Redis does to a pub/sub client past its output-buffer limit.
    killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    assert killed == 2  # a's and b's pub/sub connections
    await recovers(net, a, b, rooms)
    assert b.bus.reconnects == 1
    # Only the pub/sub connections were evicted: presence works as before.
    a.bus.presence_join(room, "a.1", ENTRY)
    await eventually(lambda: _is(listed(b, room), {"a.1"}), "a join after the eviction")


async def test_a_blocked_redis_is_reported_down_then_up(
        net: RedisNet, redis_server: RedisServer, room: str) -> None:
    a, b = await net.node(), await net.node()
    await net.subscribe(b, room)
    a.bus.presence_join(room, "a.1", ENTRY)
    b.bus.presence_join(room, "b.1", ENTRY)
    await eventually(lambda: _is(listed(b, room), {"a.1", "b.1"}), "the joins")
    loop = asyncio.get_running_loop()
    paused_at = loop.time()
    redis_server.pause()  # connections stay open, nothing answers
    try:
        for node in (a, b):
            await node.inbound.until(lambda n=node: n.inbound.states[-1] is False,
                                     "bus_state(False) while Redis is blocked")
            assert not node.bus.connected
        a.bus.publish(room, batch(room, 1, 1))  # best effort: may be dropped meanwhile
        await asyncio.sleep(max(0.0, paused_at + 3.0 - loop.time()))  # blocked ~3 s
        assert not a.bus.connected and not b.bus.connected
    finally:
        redis_server.resume()
    await recovers(net, a, b, [room])
    # Both instances lived through the block: none of them lost its entries, and
    # no leave was signalled for them.
    await eventually(lambda: _is(listed(b, room), {"a.1", "b.1"}),
                     "live instances' entries after the block")
    assert [p for p in b.inbound.signalled(room) if p.get("presence") == "leave"] == []


async def test_a_dead_instances_entries_vanish_with_one_leave_each(
        net: RedisNet, admin: aioredis.Redis, room: str) -> None:
    a, b, dead = [await net.node() for _ in range(3)]
    other = room + "-2"  # no live instance subscribes it
    for node in (a, b):
        await net.subscribe(node, room)
    a.bus.presence_join(room, "a.1", ENTRY)
    b.bus.presence_join(room, "b.1", ENTRY)
    for conn in ("d.1", "d.2"):
        dead.bus.presence_join(room, conn, {"user": f"user-{conn}", "role": "member"})
    dead.bus.presence_join(other, "d.3", ENTRY)
    await eventually(lambda: _is(listed(a, room), {"a.1", "b.1", "d.1", "d.2"}), "the joins")
    await eventually(lambda: _is(listed(a, other), {"d.3"}), "the join in the other room")

    # A SIGKILL, as far as Redis can tell: no more heartbeats, no close().
    bus = dead.bus
    assert isinstance(bus, RedisBus)
    net.nodes.remove(dead)
    for task in bus._tasks:
        task.cancel()
    await asyncio.gather(*bus._tasks, return_exceptions=True)
    assert bus._client is not None
    await bus._client.aclose()

    bound = TTL + 2.0  # presence_ttl, and a margin for a loaded machine
    await eventually(lambda: _is(listed(b, room), {"a.1", "b.1"}),
                     "the dead instance's entries gone from the listing", bound=bound)
    await eventually(lambda: _is(listed(b, other), set()), "and from the other room",
                     bound=bound)

    def leaves(node: Node) -> list[dict[str, Any]]:
        return [p for p in node.inbound.signalled(room) if p.get("presence") == "leave"]

    for node in (a, b):
        await node.inbound.until(lambda n=node: len(leaves(n)) >= 2,
                                 "a leave per dead connection", bound=bound + 2)
    # Swept for good: no sweeper can find the dead instance again.
    instances, rooms_key = f"{net.prefix}instances", f"{net.prefix}instance-rooms:{bus.instance}"
    await eventually(lambda: _absent(admin, instances, bus.instance, rooms_key),
                     "the dead instance removed from Redis")
    await asyncio.sleep(TTL)  # three more sweeps by each live instance
    for node in (a, b):
        assert sorted(leaves(node), key=lambda p: p["conn"]) == [
            {"presence": "leave", "conn": "d.1", "user": "user-d.1", "role": "member"},
            {"presence": "leave", "conn": "d.2", "user": "user-d.2", "role": "member"}]
    assert await listed(a, room) == {"a.1", "b.1"}  # the live ones were not swept


async def _is(listing: Any, expected: set[str]) -> bool:
    return bool(await listing == expected)


async def _absent(client: aioredis.Redis, instances: str, instance: str, rooms_key: str
                  ) -> bool:
    return await client.zscore(instances, instance) is None and not await client.exists(
        rooms_key)


async def test_close_ends_wherever_the_bus_is(redis_server: RedisServer, room: str) -> None:
    # Closing lands anywhere: mid-ping, mid-heartbeat, mid-pipeline. Tight
    # intervals make every task send all the time; a cancel swallowed by the
    # send (Python 3.11's wait_for) must not leave close() waiting forever.
    rng = random.Random(7)
    net = RedisNet(redis_server, ping_interval=0.005, presence_ttl=0.015)
    for attempt in range(40):
        node = await net.node()
        for n in range(10):
            node.bus.publish(room, batch(room, n + 1, n + 1))
            node.bus.presence_join(room, f"c{n}", ENTRY)
        await asyncio.sleep(rng.uniform(0, 0.03))
        try:
            async with asyncio.timeout(WAIT):
                await node.bus.close()
        except TimeoutError:
            raise AssertionError(f"close() hung (attempt {attempt})") from None
        net.nodes.remove(node)


async def test_a_write_timeout_is_logged_saying_what_failed(
        net: RedisNet, redis_server: RedisServer, room: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """A blocked Redis makes a pipelined write time out; the warning says that,
    not ``Redis publish failed ()`` (a TimeoutError has no message of its own)."""
    a = await net.node()
    caplog.set_level(logging.WARNING, logger="roomlog.bus.redis")
    redis_server.pause()
    try:
        a.bus.publish(room, batch(room, 1, 1))

        async def warned() -> bool:
            return any("Redis" in r.getMessage() and "no answer within" in r.getMessage()
                       for r in caplog.records)

        await eventually(warned, "a warning for the timed-out write")
    finally:
        redis_server.resume()
    [line] = [r.getMessage() for r in caplog.records if "writing" in r.getMessage()]
    assert "()" not in line and f"127.0.0.1:{redis_server.port}" in line, line
