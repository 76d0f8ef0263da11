"""The hub against a real SQLite log, in-process: replay/live merge, gaps, resets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from roomlog.app import build_services
from roomlog.bus.memory import MemoryBus
from roomlog.cluster import Cluster
from roomlog.commands import Call
from roomlog.hub import Hub, Subscription
from roomlog.identity import Principal, Role
from roomlog.log import Append
from roomlog.log.sql import SqlLog
from roomlog.outbox import Outbox
from roomlog.protocol import Format, Since
from roomlog.publisher import Publisher
from roomlog.rooms import parse_room
from roomlog.rooms.domain import Command
from roomlog.settings import Settings
from roomlog.stats import Stats


class Wire:
    """An outbox drained into a list of decoded frames, as a client sees them."""

    def __init__(self, max_frames: int = 100_000) -> None:
        self.frames: list[dict[str, Any]] = []
        self.overflowed = False
        self._arrived = asyncio.Event()
        self.outbox = Outbox(Format.JSON, max_frames=max_frames, max_bytes=10**9, coalesce=64,
                             on_overflow=self._overflow)
        self.task = asyncio.create_task(self.outbox.run(self._send))

    def _overflow(self) -> None:
        self.overflowed = True

    async def _send(self, payload: bytes) -> None:
        decoded = orjson.loads(payload)
        self.frames += decoded if isinstance(decoded, list) else [decoded]
        self._arrived.set()

    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames if f["type"] == "message"]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    def position(self) -> tuple[str, int] | None:
        """(epoch, seq) of the last message or reset: where the client stands."""
        for f in reversed(self.frames):
            if f["type"] in ("message", "reset"):
                return f["epoch"], f["seq"]
        return None

    async def until_at(self, epoch: str, seq: int) -> None:
        async def wait() -> None:
            while self.position() != (epoch, seq):
                self._arrived.clear()
                await self._arrived.wait()
        await asyncio.wait_for(wait(), 10)

    async def until(self, count: int) -> None:
        async def wait() -> None:
            while len(self.seqs()) < count:
                self._arrived.clear()
                await self._arrived.wait()
        await asyncio.wait_for(wait(), 10)


async def wired(log: SqlLog, **hub_options: Any) -> tuple[Hub, Cluster, Publisher]:
    """Hub, cluster (memory bus) and publisher wired as ``build_services`` does."""
    hub = Hub(log, on_first_interest=lambda room: cluster.watch(room),
              on_last_interest=lambda room: cluster.unwatch(room),
              on_live=lambda room: cluster.live(room), **hub_options)
    stats = Stats()
    cluster = Cluster(log, hub, MemoryBus(), stats)
    await cluster.start()
    return hub, cluster, Publisher(log, cluster, stats, clock_ms=lambda: 1, max_batch=5)


@pytest.fixture
async def parts(sqlite_url: str) -> AsyncIterator[tuple[SqlLog, Hub, Publisher]]:
    log = SqlLog(sqlite_url, migrate=True)
    await log.open()
    hub, cluster, publisher = await wired(log, page_size=7, live_buffer=25)
    yield log, hub, publisher
    await publisher.close()
    await cluster.close()
    await log.close()


async def live(sub: Subscription) -> None:
    """Until the subscription's replay is over and it receives live."""
    if sub.task is not None:
        await asyncio.wait_for(asyncio.shield(sub.task), 10)
    assert sub.live


async def publish(publisher: Publisher, room: str, n: int, start: int = 0) -> None:
    await asyncio.gather(*(publisher.publish(room, Append("u", b"%d" % i, f"id{i}"))
                           for i in range(start, start + n)))


async def test_replay_then_live_has_no_gap_and_no_duplicate(parts: Any, room: str) -> None:
    log, hub, publisher = parts
    await publish(publisher, room, 100)
    epoch = (await log.info(room)).epoch
    wire = Wire()
    # Subscribe from seq 10 while 200 more are published concurrently.
    sub = hub.subscribe(room, wire.outbox, Since(epoch, 10), "s1")
    await publish(publisher, room, 200, start=100)
    await wire.until(290)
    assert wire.seqs() == list(range(11, 301))
    subscribed = wire.of("subscribed")[0]
    assert subscribed["id"] == "s1" and subscribed["epoch"] == epoch
    assert subscribed["replayed"] == subscribed["head"] - 10
    await live(sub)  # the replay may have read the last pages itself: then it turns live
    assert sub.buffer == []
    hub.unsubscribe(sub)


async def test_fresh_subscription_starts_at_the_head(parts: Any, room: str) -> None:
    _, hub, publisher = parts
    await publish(publisher, room, 5)
    wire = Wire()
    await live(hub.subscribe(room, wire.outbox, None))
    await publish(publisher, room, 3, start=5)
    await wire.until(3)
    assert wire.seqs() == [6, 7, 8]
    assert wire.of("subscribed")[0]["replayed"] == 0


async def test_a_gap_in_live_delivery_is_repaired_from_the_log(parts: Any, room: str) -> None:
    log, hub, publisher = parts
    await publish(publisher, room, 3)
    wire = Wire()
    await live(hub.subscribe(room, wire.outbox, None))
    # Seqs 4..6 commit but only 6 reaches the hub (as a lossy bus might do).
    _, stored = await log.append(room, [Append("u", b"1"), Append("u", b"2"), Append("u", b"3")],
                                 now_ms=1)
    hub.deliver(room, stored[2:])
    await wire.until(3)
    assert wire.seqs() == [4, 5, 6]
    hub.deliver(room, stored)  # late duplicates are dropped
    await publish(publisher, room, 1, start=50)
    await wire.until(4)
    assert wire.seqs() == [4, 5, 6, 7]


async def test_wrong_epoch_or_trimmed_range_gives_reset(sqlite_url: str, room: str) -> None:
    log = SqlLog(sqlite_url, migrate=True, retention_max_messages=5)
    await log.open()
    hub, cluster, publisher = await wired(log, page_size=3)
    try:
        await publish(publisher, room, 20)
        info = await log.info(room)
        for since, reason in [(Since("old", 3), "epoch"), (Since(info.epoch, 2), "trimmed"),
                              (Since(info.epoch, 99), "epoch")]:
            wire = Wire()
            sub = hub.subscribe(room, wire.outbox, since)
            await live(sub)  # reset: a commit racing the resume would be inside its seq
            await publish(publisher, room, 1, start=100 + since.seq)
            await wire.until(1)
            (reset,) = wire.of("reset")
            assert (reset["reason"], reset["epoch"]) == (reason, info.epoch)
            assert reset["trimmed"] >= 15
            # After the reset it continues live from the head: nothing partial before it.
            assert wire.seqs() == [reset["seq"] + 1]
            assert wire.frames.index(reset) < len(wire.frames) - 1
            hub.unsubscribe(sub)
    finally:
        await publisher.close()
        await cluster.close()
        await log.close()


async def test_room_reset_tells_live_subscribers(parts: Any, room: str) -> None:
    """The hub learns of a reset from the cluster and, when a commit is quicker, from
    the new epoch's first messages: either way the subscriber gets one reset to the new
    epoch, then every message after the reset's seq, gapless (what came before it is in
    the log, docs/protocol.md "Reset"). Commits were slower than the cluster's notice
    until appends went at once; the test assumed that order."""
    _, hub, publisher = parts
    await publish(publisher, room, 2)
    wire = Wire()
    await live(hub.subscribe(room, wire.outbox, None))
    info = await publisher.reset(room)
    await publish(publisher, room, 2, start=10)
    await wire.until_at(info.epoch, 2)
    (reset,) = wire.of("reset")
    assert reset["epoch"] == info.epoch and reset["reason"] == "epoch"
    after = wire.frames[wire.frames.index(reset) + 1:]
    assert [f["seq"] for f in after if f["type"] == "message"] == list(range(reset["seq"] + 1, 3))
    assert {f["epoch"] for f in after if f["type"] == "message"} <= {info.epoch}
    assert wire.frames.index(reset) == 1  # right after `subscribed`: it began at the head


async def test_overflowing_outbox_reports_slow_client(parts: Any, room: str) -> None:
    _, hub, publisher = parts
    wire = Wire(max_frames=10)
    await live(hub.subscribe(room, wire.outbox, None))
    wire.task.cancel()  # the client stops reading
    fast = Wire()
    await live(hub.subscribe(room, fast.outbox, None))
    await publish(publisher, room, 30)
    await fast.until(30)
    assert wire.overflowed and wire.outbox.closed and len(wire.outbox) == 0
    assert fast.seqs() == list(range(1, 31))


async def test_a_client_that_stops_reading_during_replay_holds_bounded_memory(
        parts: Any, room: str) -> None:
    _, hub, publisher = parts
    wire = Wire()
    wire.task.cancel()  # never reads, not even `subscribed`
    sub = hub.subscribe(room, wire.outbox, None)
    await publish(publisher, room, 60)
    assert not sub.live and len(sub.buffer) <= 25 and len(wire.outbox) == 1


async def test_long_poll_watch_sees_commits_after_it_starts(parts: Any, room: str) -> None:
    _, hub, publisher = parts
    async with hub.watch(room) as changed:
        assert not changed.is_set()
        await publish(publisher, room, 1)
        assert changed.is_set()
    assert room not in hub.rooms


async def test_a_publish_right_after_subscribe_is_delivered(parts: Any, room: str) -> None:
    # A message committed just before the replay reads the head, but delivered
    # after the subscription began, belongs to the subscription ("from now on").
    log, hub, publisher = parts
    await publish(publisher, room, 2)
    _, stored = await log.append(room, [Append("u", b"3")], now_ms=1)
    wire = Wire()
    hub.subscribe(room, wire.outbox, None)
    hub.deliver(room, stored)  # the delivery arrives after subscribe, before its read
    await wire.until(1)
    assert wire.seqs() == [3]
    assert wire.of("subscribed")[0]["replayed"] == 1


async def test_a_subscription_placed_after_a_removal_ends_before_anything_private(
        tmp_path: Path) -> None:
    """Access is checked where the subscription is placed, not only before: a
    technician whose read check passed, but who was removed from the ticket before
    the hub placed the subscription, gets FORBIDDEN and none of what follows."""
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/hub.db",
                        secret="s" * 32, media_dir=str(tmp_path / "media"))
    s = build_services(settings)
    await s.log.open()
    await s.cluster.start()
    tech, admin = Principal("tech", Role.TECHNICIAN), Principal("boss", Role.ADMIN)
    room = "repair:T-race"

    async def run(who: Principal, name: str, **args: Any) -> None:
        outcome = await s.publisher.command(room, Call(who, Command(name, args), name))
        assert outcome.seqs, outcome

    try:
        await run(tech, "ticket.create", customer_id="c", device="d", problem="p",
                  technicians=["tech"])
        await s.check_read(parse_room(room), tech)  # the reader's check passes ...
        await run(admin, "ticket.assign", technicians=["other"])  # ... then the removal
        wire = Wire()
        sub = s.hub.subscribe(room, wire.outbox, None, "s1", viewer=tech)
        await run(admin, "note.add", text="the secret", visibility="internal",
                  priority="normal")
        if sub.task is not None:
            await asyncio.wait_for(asyncio.shield(sub.task), 10)
        await asyncio.wait_for(wire.outbox.drained(), 10)
        assert [(f["type"], f.get("code")) for f in wire.frames] == [("error", "FORBIDDEN")]
        assert s.hub.subscriber_count(room) == 0 and not sub.live
    finally:
        await s.publisher.close()
        await s.cluster.close()
        await s.log.close()


async def test_a_room_followed_live_places_new_subscribers_without_a_log_read(
    parts: Any, room: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connect storm into a busy room reads nothing: the hub knows the head. One
    committed but not yet delivered shows as a gap and is read, not lost."""
    log, hub, publisher = parts
    await publish(publisher, room, 5)
    first = Wire()
    await live(hub.subscribe(room, first.outbox, None))
    await publish(publisher, room, 2, start=5)
    await first.until(2)
    reads: list[str] = []
    info = log.info

    async def counted(name: str) -> Any:
        reads.append(name)
        return await info(name)

    monkeypatch.setattr(log, "info", counted)
    second = Wire()
    await live(hub.subscribe(room, second.outbox, None))
    assert reads == [] and second.of("subscribed")[0]["head"] == 7
    await log.append(room, [Append("u", b"8")], now_ms=1)  # not delivered yet
    third = Wire()
    sub = hub.subscribe(room, third.outbox, None)  # still places itself at 7
    await publish(publisher, room, 1, start=60)
    await third.until(2)
    assert third.seqs() == [8, 9] and reads == []
    await live(sub)
