"""The Bus port's contract (``roomlog.bus``), run against every adapter.

Several buses of one adapter stand for several instances: MemoryBus instances
sharing a MemoryBroker, RedisBus instances on a private redis-server, each test
under a prefix of its own, PostgresBus instances on the session's PostgreSQL
database (migrated), each test under a channel prefix of its own and rooms of
its own. Each bus reports to a :class:`Recorder`, an
``Inbound`` that keeps every call and lets a test wait for what it expects
(with a generous upper bound: a failure detector, never a timing assertion).

Delivery is asynchronous for Redis, so "nothing arrived" is checked with a
marker sent after the thing that must not arrive, by the same sender, on the
same connection: once the marker is there, anything sent before it would be
there too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from roomlog.bus import Bus
from roomlog.bus.memory import MemoryBroker, MemoryBus
from roomlog.bus.postgres import PostgresBus
from roomlog.bus.redis import RedisBus
from roomlog.log.sql import SqlLog
from roomlog.protocol import Message
from tests.redis_server import RedisServer

WAIT = 10.0  # upper bound of every wait: only reached when something is broken

# Small intervals keep the Redis tests fast: a blocked Redis is noticed after
# ping_interval + ping_timeout, a dead instance after presence_ttl.
REDIS_OPTIONS: dict[str, Any] = {"ping_interval": 0.2, "ping_timeout": 0.5,
                                 "reconnect_max": 0.5, "presence_ttl": 1.0}

Row = tuple[str, int, str, int, str, bytes]


def row(m: Message) -> Row:
    return (m.room, m.seq, m.epoch, m.ts, m.by, m.raw)


def batch(room: str, first: int, last: int, epoch: str = "ep1") -> list[Message]:
    """One commit's messages, with every field distinct per message."""
    return [Message(room, seq, epoch, 1_700_000_000_000 + seq, f"user-{seq % 3}",
                    b'{"n":%d,"text":"caf\xc3\xa9 \\"q\\""}' % seq)
            for seq in range(first, last + 1)]


class Recorder:
    """An ``Inbound`` that records every call; ``until`` waits for a condition."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[Message]]] = []
        self.signals: list[tuple[str, dict[str, Any]]] = []
        self.controls: list[dict[str, Any]] = []
        self.resyncs: list[list[str]] = []
        self.states: list[bool] = []
        self.log: list[tuple[str, Any]] = []  # every call, in order: (method, argument)
        self._changed = asyncio.Event()

    # -- roomlog.bus.Inbound --------------------------------------------------------

    def messages(self, room: str, messages: list[Message]) -> None:
        self.received.append((room, list(messages)))
        self._record("messages", (room, [row(m) for m in messages]))

    def signal(self, room: str, payload: dict[str, Any]) -> None:
        self.signals.append((room, payload))
        self._record("signal", (room, payload))

    def control(self, payload: dict[str, Any]) -> None:
        self.controls.append(payload)
        self._record("control", payload)

    def resync(self, rooms: Sequence[str]) -> None:
        self.resyncs.append(list(rooms))
        self._record("resync", list(rooms))

    def bus_state(self, connected: bool) -> None:
        self.states.append(connected)
        self._record("bus_state", connected)

    def _record(self, method: str, argument: Any) -> None:
        self.log.append((method, argument))
        self._changed.set()

    # -- for tests -------------------------------------------------------------------

    def rows(self, room: str | None = None) -> list[Row]:
        return [row(m) for r, ms in self.received if room in (None, r) for m in ms]

    def signalled(self, room: str | None = None) -> list[dict[str, Any]]:
        return [p for r, p in self.signals if room in (None, r)]

    def resynced(self, room: str) -> int:
        return sum(rooms.count(room) for rooms in self.resyncs)

    async def until(self, check: Callable[[], object], what: str, bound: float = WAIT) -> None:
        async def wait() -> None:
            while not check():
                self._changed.clear()
                await self._changed.wait()
        try:
            await asyncio.wait_for(wait(), bound)
        except TimeoutError:
            raise AssertionError(f"not within {bound}s: {what}") from None


async def eventually(check: Callable[[], Awaitable[object]], what: str,
                     bound: float = WAIT) -> None:
    """Poll an async condition (presence is read, not pushed) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {bound}s: {what}")
        await asyncio.sleep(0.02)


class Node:
    """One instance: its bus and the inbound that bus reports to."""

    def __init__(self, bus: Bus, inbound: Recorder) -> None:
        self.bus = bus
        self.inbound = inbound


class Net:
    """Makes nodes of one adapter that see each other (the factory of the suite)."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def new_bus(self) -> Bus:
        raise NotImplementedError

    async def node(self) -> Node:
        node = Node(self.new_bus(), Recorder())
        await node.bus.start(node.inbound)
        self.nodes.append(node)
        return node

    async def subscribe(self, node: Node, *rooms: str) -> None:
        """Subscribe and wait until the subscriptions are active: the adapter
        confirms each with ``Inbound.resync([room])``."""
        before = {room: node.inbound.resynced(room) for room in rooms}
        for room in rooms:
            node.bus.subscribe(room)
        await node.inbound.until(
            lambda: all(node.inbound.resynced(r) > before[r] for r in rooms),
            f"resync of {rooms} after subscribe")

    async def close(self) -> None:
        for node in self.nodes:
            await node.bus.close()


class MemoryNet(Net):
    def __init__(self) -> None:
        super().__init__()
        self.broker = MemoryBroker()

    def new_bus(self) -> Bus:
        return MemoryBus(self.broker)


class RedisNet(Net):
    def __init__(self, server: RedisServer, **options: Any) -> None:
        super().__init__()
        self.server = server
        self.prefix = f"t{secrets.token_hex(4)}:"
        self.options = REDIS_OPTIONS | options

    def new_bus(self) -> RedisBus:
        return RedisBus(self.server.url, prefix=self.prefix, **self.options)


class PostgresNet(Net):
    def __init__(self, url: str, **options: Any) -> None:
        super().__init__()
        self.url = url
        self.prefix = f"t{secrets.token_hex(4)}_"
        self.options = REDIS_OPTIONS | options

    def new_bus(self) -> PostgresBus:
        return PostgresBus(self.url, prefix=self.prefix, **self.options)


@pytest.fixture(scope="session")
def pg_bus_url(pg_database: str) -> str:
    """The session's PostgreSQL database, migrated (the bus's tables are in 0007)."""
    async def migrate() -> None:
        log = SqlLog(pg_database, migrate=True)
        await log.open()
        await log.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # set up under a running loop
        pool.submit(asyncio.run, migrate()).result()
    return pg_database


@pytest.fixture(params=["memory", "redis", "postgres"])
async def net(request: pytest.FixtureRequest) -> AsyncIterator[Net]:
    made: Net
    if request.param == "memory":
        made = MemoryNet()
    elif request.param == "postgres":
        made = PostgresNet(request.getfixturevalue("pg_bus_url"))
    else:
        made = RedisNet(request.getfixturevalue("redis_server"))
    yield made
    await made.close()


async def test_instances_start_connected_with_unique_ids(net: Net) -> None:
    nodes = [await net.node() for _ in range(3)]
    assert len({node.bus.instance for node in nodes}) == 3
    for node in nodes:
        assert node.bus.connected
        assert (node.bus.reconnects, node.bus.dropped) == (0, 0)
        assert False not in node.inbound.states


async def test_publish_reaches_every_subscriber_in_order_with_equal_fields(
        net: Net, room: str) -> None:
    a, b, c = [await net.node() for _ in range(3)]
    for node in (a, b, c):
        await net.subscribe(node, room)
    sent: list[Message] = []
    for first in range(1, 120, 4):  # 30 commits of 4 messages, each published at once
        messages = batch(room, first, first + 3)
        sent += messages
        a.bus.publish(room, messages)
    expected = [row(m) for m in sent]
    for node in (b, c):
        await node.inbound.until(lambda n=node: len(n.inbound.rows()) >= len(expected),
                                 "every publication at the subscribers")
        assert node.inbound.rows() == expected
        # Each publish arrives as one call, with the room it was published to.
        assert [len(ms) for r, ms in node.inbound.received] == [4] * 30
        assert {r for r, _ in node.inbound.received} == {room}
        assert all(isinstance(m, Message) for _, ms in node.inbound.received for m in ms)


async def test_an_instance_never_receives_its_own_publications_or_signals(
        net: Net, room: str) -> None:
    a, b = await net.node(), await net.node()
    await net.subscribe(a, room)
    await net.subscribe(b, room)
    a.bus.publish(room, batch(room, 1, 2))
    a.bus.signal(room, {"presence": "join", "conn": "a.1"})
    a.bus.broadcast({"disconnect": "u1"})
    await b.inbound.until(lambda: b.inbound.controls, "a's broadcast at b")
    assert b.inbound.rows() == [row(m) for m in batch(room, 1, 2)]
    assert b.inbound.signalled() == [{"presence": "join", "conn": "a.1"}]
    # A marker from b: a's own traffic, sent before it, would have reached a by now.
    b.bus.signal(room, {"marker": 1})
    await a.inbound.until(lambda: a.inbound.signals, "b's marker at a")
    assert a.inbound.signalled() == [{"marker": 1}]
    assert a.inbound.received == [] and a.inbound.controls == []


async def test_rooms_not_subscribed_are_not_received(net: Net, room: str) -> None:
    a, b = await net.node(), await net.node()
    other = room + "-other"
    await net.subscribe(b, room)
    a.bus.publish(other, batch(other, 1, 3))
    a.bus.signal(other, {"reset": "e2"})
    a.bus.publish(room, batch(room, 1, 1))  # the marker
    await b.inbound.until(lambda: b.inbound.received, "the marker at b")
    assert b.inbound.rows() == [row(m) for m in batch(room, 1, 1)]
    assert b.inbound.signals == []


async def test_nothing_arrives_after_unsubscribe(net: Net, room: str) -> None:
    a, b = await net.node(), await net.node()
    gone, kept = room + "-gone", room
    await net.subscribe(b, gone, kept)
    b.bus.subscribe(gone)  # idempotent: still one subscription, one delivery
    a.bus.publish(gone, batch(gone, 1, 1))
    await b.inbound.until(lambda: b.inbound.rows(gone), "a publication before unsubscribe")
    b.bus.unsubscribe(gone)
    b.bus.unsubscribe(gone)  # idempotent
    # Unsubscribing is done in the background: wait for a round in which the
    # marker (on the kept room) arrives with nothing of the gone room before it.
    seq = 1
    while True:
        seen = len(b.inbound.rows(gone))
        seq += 1
        a.bus.publish(gone, batch(gone, seq, seq))
        a.bus.publish(kept, batch(kept, seq, seq))
        await b.inbound.until(lambda s=seq: (kept, s) in [r[:2] for r in b.inbound.rows()],
                              "the marker on the kept room")
        if len(b.inbound.rows(gone)) == seen:
            break
        assert seq < 200, "unsubscribe never took effect"
    after = len(b.inbound.rows(gone))
    for n in range(seq + 1, seq + 21):
        a.bus.publish(gone, batch(gone, n, n))
        a.bus.signal(gone, {"n": n})
    a.bus.publish(kept, batch(kept, seq + 21, seq + 21))
    await b.inbound.until(lambda: (kept, seq + 21) in [r[:2] for r in b.inbound.rows()],
                          "the last marker")
    assert len(b.inbound.rows(gone)) == after
    assert b.inbound.signalled(gone) == []
    assert b.inbound.rows(gone)[0][1] == 1  # the first one did arrive, once
    assert [r[1] for r in b.inbound.rows(gone)].count(1) == 1


async def test_a_signal_reaches_the_subscribers_of_the_room_only(net: Net, room: str) -> None:
    a, b, c = [await net.node() for _ in range(3)]
    await net.subscribe(a, room)
    await net.subscribe(b, room)
    leave = {"presence": "leave", "conn": "x.1", "user": "u1", "role": "member"}
    a.bus.signal(room, leave)
    a.bus.signal(room, {"reset": "ep2"})
    a.bus.broadcast({"marker": True})
    await b.inbound.until(lambda: len(b.inbound.signals) == 2, "both signals at b")
    assert b.inbound.signals == [(room, leave), (room, {"reset": "ep2"})]
    await c.inbound.until(lambda: c.inbound.controls, "the marker at c")
    assert c.inbound.signals == []  # c does not subscribe the room


async def test_a_broadcast_reaches_every_other_instance(net: Net) -> None:
    a, b, c = [await net.node() for _ in range(3)]  # none subscribes any room
    a.bus.broadcast({"disconnect": {"user": "u1"}, "n": 1})
    a.bus.broadcast({"n": 2})
    for node in (b, c):
        await node.inbound.until(lambda n=node: len(n.inbound.controls) == 2,
                                 "both broadcasts")
        assert node.inbound.controls == [{"disconnect": {"user": "u1"}, "n": 1}, {"n": 2}]
    b.bus.broadcast({"marker": True})
    await a.inbound.until(lambda: a.inbound.controls, "b's broadcast at a")
    assert a.inbound.controls == [{"marker": True}]


async def test_an_active_subscription_asks_for_a_resync(net: Net, room: str) -> None:
    a, b = await net.node(), await net.node()
    other = room + "-2"
    b.bus.subscribe(room)
    b.bus.subscribe(other)
    await b.inbound.until(lambda: b.inbound.resynced(room) and b.inbound.resynced(other),
                          "resync of both rooms")
    assert b.inbound.resynced(room) == b.inbound.resynced(other) == 1
    # Active when resynced: a publication made now reaches b, with no retry.
    a.bus.publish(room, batch(room, 1, 1))
    await b.inbound.until(lambda: b.inbound.received, "a publication after the resync")
    assert b.inbound.rows() == [row(m) for m in batch(room, 1, 1)]
    b.bus.subscribe(room)  # already active: no new subscription, no new resync
    b.bus.unsubscribe(other)
    a.bus.publish(room, batch(room, 2, 2))
    await b.inbound.until(lambda: len(b.inbound.received) == 2, "a second publication")
    assert b.inbound.resynced(room) == 1


async def test_presence_is_listed_across_instances(net: Net, room: str) -> None:
    a, b, c = [await net.node() for _ in range(3)]
    a.bus.presence_join(room, "a.1", {"user": "u1", "role": "member"})
    a.bus.presence_join(room, "a.2", {"user": "u1", "role": "member"})
    b.bus.presence_join(room, "b.1", {"user": "u2", "role": "admin"})
    b.bus.presence_join(room + "-x", "b.2", {"user": "u2", "role": "admin"})
    want = {"a.1": {"user": "u1", "role": "member", "instance": a.bus.instance},
            "a.2": {"user": "u1", "role": "member", "instance": a.bus.instance},
            "b.1": {"user": "u2", "role": "admin", "instance": b.bus.instance}}

    async def listed(node: Node, expected: dict[str, Any], name: str = room) -> bool:
        return await node.bus.presence(name) == expected

    for node in (a, b, c):  # every instance lists every instance's entries
        await eventually(lambda n=node: listed(n, want), "the joins in every listing")
    await eventually(lambda: listed(c, {"b.2": want["b.1"]}, room + "-x"), "the other room")
    assert await c.bus.presence(room + "-none") == {}

    a.bus.presence_leave(room, "a.1")
    a.bus.presence_leave(room, "a.1")  # twice: no error
    a.bus.presence_leave(room, "never-joined")
    b.bus.presence_join(room, "b.1", {"user": "u2", "role": "member"})  # joined again
    want.pop("a.1")
    want["b.1"] = {"user": "u2", "role": "member", "instance": b.bus.instance}
    for node in (a, b, c):
        await eventually(lambda n=node: listed(n, want), "the leave and the new entry")


async def test_close_removes_the_instances_presence_entries(net: Net, room: str) -> None:
    a, b = await net.node(), await net.node()
    other = room + "-2"
    a.bus.presence_join(room, "a.1", {"user": "u1", "role": "member"})
    a.bus.presence_join(other, "a.2", {"user": "u1", "role": "member"})
    b.bus.presence_join(room, "b.1", {"user": "u2", "role": "member"})
    await eventually(lambda: _conns(b, room, {"a.1", "b.1"}), "the joins")
    await eventually(lambda: _conns(b, other, {"a.2"}), "the join in the other room")
    await a.bus.close()
    net.nodes.remove(a)
    # Removed by close itself, not left to expire: listed at once.
    assert set(await b.bus.presence(room)) == {"b.1"}
    assert await b.bus.presence(other) == {}


async def _conns(node: Node, room: str, expected: set[str]) -> bool:
    return set(await node.bus.presence(room)) == expected


async def test_a_rate_bucket_is_shared_by_every_instance(net: Net) -> None:
    """``take`` spends one bucket whichever instance asks: the burst once, then the
    wait until the next token; another key has a bucket of its own."""
    a, b = await net.node(), await net.node()
    key = f"w:{secrets.token_hex(4)}"
    waits = [await node.bus.take(key, 0.5, 4) for node in (a, b, a, b, a, b)]
    assert waits[:4] == [0.0] * 4
    assert all(0 < wait <= 2.0 for wait in waits[4:])
    assert await b.bus.take(key + "-other", 0.5, 4) == 0.0


async def test_takes_at_once_spend_the_bucket_exactly(net: Net) -> None:
    """Takes of one bucket asked at once, from two instances (a connection's pipelined
    writes; PostgreSQL answers them in rounds of one statement): the burst granted
    exactly once, every other take told to wait; the bucket then holds nothing more."""
    a, b = await net.node(), await net.node()
    key = f"w:{secrets.token_hex(4)}"
    asks = [node.bus.take(key, 0.5, 5) for node in (a, b) for _ in range(8)]
    waits = await asyncio.gather(*asks)
    assert sum(1 for wait in waits if wait == 0.0) == 5, waits
    assert all(0 < wait <= 2.0 for wait in waits if wait), waits
    assert await a.bus.take(key, 0.5, 5) > 0


async def test_a_rate_bucket_without_redis_falls_back_to_the_instance(
    redis_server: RedisServer,
) -> None:
    """Redis down: ``take`` answers from a bucket of this instance, never raises."""
    net = RedisNet(redis_server)
    node = await net.node()
    try:
        redis_server.stop()
        await Recorder.until(node.inbound, lambda: not node.bus.connected, "bus down")
        waits = [await node.bus.take("w:fallback", 0.5, 2) for _ in range(3)]
        assert waits[:2] == [0.0, 0.0] and waits[2] > 0
    finally:
        redis_server.start()
        await net.close()
