"""The cluster (ordered delivery, gap fills, degraded polling) against a real
SQLite log, a real hub and memory buses sharing one broker.

An instance under test is a full stack (hub, cluster, publisher). Other
instances are either another stack on the same log, or a bare ``MemoryBus``
in the broker (a *peer*) that publishes what a test appended to the log
itself: that is how a test makes the bus reorder, lose or duplicate runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from roomlog.bus.memory import MemoryBroker, MemoryBus
from roomlog.cluster import Cluster
from roomlog.hub import Hub
from roomlog.log import Append, Page
from roomlog.log.sql import SqlLog
from roomlog.protocol import Message
from roomlog.publisher import Publisher
from roomlog.stats import Stats
from tests.test_hub import Wire, live

WAIT = 10.0  # upper bound of every wait: only reached when something is broken
NEVER = 600.0  # an interval no test waits for: whatever happens, something else did it


class CountingLog:
    """The real log, with its reads counted (gap fills and replays read it)."""

    def __init__(self, log: SqlLog) -> None:
        self._log = log
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)

    async def read(self, room: str, after: int, limit: int) -> Page:
        self.reads += 1
        return await self._log.read(room, after, limit)


class Stack:
    """One instance: hub, cluster and publisher wired as ``build_services`` does."""

    def __init__(self, log: CountingLog, broker: MemoryBroker, **cluster_options: Any) -> None:
        self.log = log
        self.stats = Stats()
        self.hub = Hub(log,
                       on_first_interest=lambda room: self.cluster.watch(room),
                       on_last_interest=lambda room: self.cluster.unwatch(room),
                       on_live=lambda room: self.cluster.live(room))
        self.bus = MemoryBus(broker)
        self.cluster = Cluster(log, self.hub, self.bus, self.stats,
                               **cluster_options)
        self.publisher = Publisher(log, self.cluster, self.stats,
                                   clock_ms=lambda: int(time.time() * 1000), max_batch=5)

    async def subscriber(self, room: str) -> Wire:
        """A live subscription from now on (the log's head), once the checks it
        started (the bus confirming the room, its first live subscriber) are over:
        what a test commits next is then the cluster's to find."""
        wire = Wire()
        await live(self.hub.subscribe(room, wire.outbox, None))
        await _until(lambda: self.cluster.carried(room) and self.cluster._checker is None,
                     "the bus carrying the room and the first checks over")
        return wire

    async def close(self) -> None:
        await self.publisher.close()
        await self.cluster.close()


@pytest.fixture
async def log(sqlite_url: str) -> AsyncIterator[CountingLog]:
    real = SqlLog(sqlite_url, migrate=True)
    await real.open()
    yield CountingLog(real)
    await real.close()


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker()


@pytest.fixture
async def stacks(log: CountingLog, broker: MemoryBroker) -> AsyncIterator[Any]:
    """Makes instances sharing the log and the broker; closes them afterwards."""
    made: list[Stack] = []

    async def make(**cluster_options: Any) -> Stack:
        stack = Stack(log, broker, **cluster_options)
        await stack.cluster.start()
        made.append(stack)
        return stack

    yield make
    for stack in made:
        await stack.close()


@pytest.fixture
def peer(broker: MemoryBroker) -> MemoryBus:
    """Another instance's bus, as the instance under test sees it."""
    return MemoryBus(broker)


async def commit(log: CountingLog, room: str, n: int) -> list[Message]:
    """Append ``n`` messages in one transaction, as another instance would."""
    _, stored = await log.append(room, [Append("u", b'{"i":%d}' % i) for i in range(n)],
                                 now_ms=int(time.time() * 1000))
    return stored


async def test_another_instances_commits_reach_live_subscribers_in_order(
        stacks: Any, room: str) -> None:
    a, b = await stacks(check_interval=NEVER), await stacks(check_interval=NEVER)
    wire = await a.subscriber(room)
    await asyncio.gather(*(b.publisher.publish(room, Append("u", b"%d" % i, f"id{i}"))
                           for i in range(30)))
    await wire.until(30)
    assert wire.seqs() == list(range(1, 31))
    assert a.stats.bus_in == 30 and a.stats.messages_in == 0
    assert b.stats.messages_in == 30 and b.stats.bus_in == 0  # b has no subscriber
    assert a.stats.gap_fills == 0


async def test_out_of_order_arrivals_are_delivered_in_order_without_a_log_read(
        stacks: Any, log: CountingLog, peer: MemoryBus, room: str) -> None:
    a = await stacks(reorder_wait=0.05, check_interval=NEVER)
    wires = [await a.subscriber(room) for _ in range(3)]
    stored = await commit(log, room, 9)
    reads = log.reads
    # All in one event-loop turn: no timer can fire in between.
    for run in (stored[6:9], stored[3:6], stored[3:5], stored[0:4], stored[7:9]):
        peer.publish(room, run)
    for wire in wires:
        await wire.until(9)
        assert wire.seqs() == list(range(1, 10))
    assert a.stats.gap_fills == 0 and log.reads == reads  # nothing was read from the log
    assert a.stats.bus_in == 3 + 3 + 2 + 4 + 2
    assert [f["data"] for f in wires[0].of("message")] == [{"i": i} for i in range(9)]


async def test_a_message_the_bus_never_brings_is_filled_from_the_log(
        stacks: Any, log: CountingLog, peer: MemoryBus, room: str) -> None:
    a = await stacks(reorder_wait=0.05, check_interval=NEVER)
    wires = [await a.subscriber(room) for _ in range(3)]
    stored = await commit(log, room, 6)
    reads = log.reads
    peer.publish(room, stored[0:2])
    peer.publish(room, stored[4:6])  # 3 and 4 are lost: 5 and 6 wait for them
    for wire in wires:
        await wire.until(6)
        assert wire.seqs() == list(range(1, 7))
    # One read for the room, not one per subscriber.
    assert (a.stats.gap_fills, a.stats.gap_fill_messages, log.reads - reads) == (1, 4, 1)
    peer.publish(room, stored[2:4])  # arriving late now, they are dropped
    peer.publish(room, stored[5:6])
    (extra,) = await commit(log, room, 1)
    peer.publish(room, [extra])
    for wire in wires:
        await wire.until(7)
        assert wire.seqs() == list(range(1, 8))
    assert a.stats.gap_fills == 1


async def test_a_lost_last_message_is_found_by_the_periodic_check(
        stacks: Any, log: CountingLog, peer: MemoryBus, room: str) -> None:
    a = await stacks(reorder_wait=0.05, check_interval=0.1)
    wire = await a.subscriber(room)
    stored = await commit(log, room, 3)
    peer.publish(room, stored[0:2])  # nothing after 3 tells that it is missing
    await wire.until(3)
    assert wire.seqs() == [1, 2, 3]
    assert a.stats.gap_fills == 1 and a.stats.gap_fill_messages == 1


async def test_while_the_bus_is_down_the_log_is_polled(
        stacks: Any, log: CountingLog, room: str) -> None:
    a = await stacks(reorder_wait=0.05, check_interval=NEVER, poll_interval=0.05)
    wire = await a.subscriber(room)
    a.cluster.bus_state(False)  # what the bus reports when Redis fails
    assert not a.cluster.connected
    await commit(log, room, 2)  # committed elsewhere; the bus carries nothing
    await wire.until(2)
    await commit(log, room, 1)
    await wire.until(3)
    assert wire.seqs() == [1, 2, 3]
    assert a.stats.gap_fills >= 2
    a.cluster.bus_state(True)
    assert a.cluster.connected


async def test_a_reconnect_checks_every_room_at_once(
        stacks: Any, log: CountingLog, room: str) -> None:
    a = await stacks(reorder_wait=0.05, check_interval=NEVER, poll_interval=NEVER)
    rooms = [room, room + "-2"]
    wires = [await a.subscriber(name) for name in rooms]
    a.cluster.bus_state(False)
    for name in rooms:
        await commit(log, name, 2)  # lost while the bus was down
    a.cluster.bus_state(True)
    for wire in wires:
        await wire.until(2)
        assert wire.seqs() == [1, 2]
    # A confirmed subscription resyncs that room alone, the same way.
    await commit(log, room, 1)
    a.cluster.resync([room])
    await wires[0].until(3)
    assert wires[0].seqs() == [1, 2, 3]


async def test_a_reset_signal_resets_live_subscribers(stacks: Any, room: str) -> None:
    a, b = await stacks(check_interval=NEVER), await stacks(check_interval=NEVER)
    wires = [await a.subscriber(room) for _ in range(2)]
    await asyncio.gather(*(b.publisher.publish(room, Append("u", b"%d" % i)) for i in range(3)))
    for wire in wires:
        await wire.until(3)
    info = await b.publisher.reset(room)  # signals {"reset": epoch} to the others
    for wire in wires:
        # Continuing from the head, which is 0 until the next commit.
        await _until(lambda w=wire: w.of("reset"), "the reset frame")
    await asyncio.gather(*(b.publisher.publish(room, Append("u", b"%d" % i)) for i in range(2)))
    for wire in wires:
        await wire.until(5)
        assert wire.seqs() == [1, 2, 3, 1, 2]
        (reset,) = wire.of("reset")
        assert (reset["epoch"], reset["seq"], reset["reason"]) == (info.epoch, 0, "epoch")
        assert wire.frames.index(reset) == len(wire.frames) - 3  # before the new messages
        assert {m["epoch"] for m in wire.of("message")[3:]} == {info.epoch}
    assert a.stats.resets == 1


async def test_a_fill_that_finds_a_new_epoch_resets_subscribers(
        stacks: Any, log: CountingLog, peer: MemoryBus, room: str) -> None:
    a = await stacks(reorder_wait=0.05, check_interval=NEVER)
    wire = await a.subscriber(room)
    stored = await commit(log, room, 3)
    info = await log.reset(room)  # and its signal is lost
    peer.publish(room, stored[0:1])
    peer.publish(room, stored[2:3])  # a gap: the fill finds the log in a new epoch
    await wire.until(1)
    await _until(lambda: wire.of("reset"), "the reset frame")
    (reset,) = wire.of("reset")
    assert (reset["epoch"], reset["seq"]) == (info.epoch, 0)
    assert wire.seqs() == [1]
    new = await commit(log, room, 1)
    peer.publish(room, new)
    await wire.until(2)
    assert wire.seqs() == [1, 1] and wire.of("message")[-1]["epoch"] == info.epoch


async def test_other_signals_and_broadcasts_go_to_their_handlers(
        stacks: Any, peer: MemoryBus, room: str) -> None:
    a = await stacks(check_interval=NEVER)
    signals: list[tuple[str, dict[str, Any]]] = []
    controls: list[dict[str, Any]] = []
    a.cluster.on_signal = lambda name, payload: signals.append((name, payload))
    a.cluster.on_control = controls.append
    await a.subscriber(room)
    peer.signal(room, {"presence": "join", "conn": "x.1"})
    peer.broadcast({"disconnect": {"user": "u1"}})
    assert signals == [(room, {"presence": "join", "conn": "x.1"})]
    assert controls == [{"disconnect": {"user": "u1"}}]
    assert a.stats.resets == 0


async def test_a_room_without_subscribers_is_no_longer_received(
        stacks: Any, log: CountingLog, peer: MemoryBus, room: str) -> None:
    a = await stacks(check_interval=NEVER)
    wire = Wire()
    sub = a.hub.subscribe(room, wire.outbox, None)
    await live(sub)
    stored = await commit(log, room, 2)
    peer.publish(room, stored[:1])
    await wire.until(1)
    a.hub.unsubscribe(sub)  # the last one: the cluster unwatches, the bus unsubscribes
    peer.publish(room, stored[1:])
    assert a.stats.bus_in == 1
    assert wire.seqs() == [1]


async def _until(check: Callable[[], Any], what: str) -> None:
    """Poll a condition nothing signals, up to WAIT (a failure detector)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {WAIT}s: {what}")
        await asyncio.sleep(0.005)


async def test_close_ends_even_right_after_a_bus_state_change(stacks: Any, room: str) -> None:
    # bus_state() wakes the poller; close() may come any number of loop turns
    # later (a shutdown while Redis flaps). It must end whatever the turn.
    for turns in range(6):
        a = await stacks(check_interval=NEVER, poll_interval=NEVER)
        await a.subscriber(room)
        a.cluster.bus_state(False)
        for _ in range(turns):
            await asyncio.sleep(0)
        try:
            async with asyncio.timeout(WAIT):
                await a.cluster.close()
        except TimeoutError:
            raise AssertionError(f"close() hung, {turns} loop turns after bus_state") from None
