"""The Python client's core without a server: the cursor's verdicts, gap repair
through a fake HTTP log, the outbox's order and window, backoff, the state file,
the positions a subscription saves, close-code classes and the wire codec."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from roomlog_client import Ack, CommandError, Message, Pending, Position, Reset, reconnects
from roomlog_client.backoff import Backoff
from roomlog_client.codec import Codec
from roomlog_client.cursor import RoomCursor, VerdictKind
from roomlog_client.http import Page
from roomlog_client.outbox import Outbox
from roomlog_client.rooms import Reader, Resync, Room
from roomlog_client.store import Saved, StateFile
from roomlog_client.subscription import Subscription

ROOM = "chat:core"
E = "e1"


def msg(seq: int, epoch: str = E, room: str = ROOM) -> dict[str, Any]:
    return {"type": "message", "room": room, "seq": seq, "epoch": epoch, "ts": 1, "by": "u",
            "data": {"n": seq}}


def reset(seq: int, trimmed: int = 0, epoch: str = E, reason: str = "trimmed",
          **extra: Any) -> dict[str, Any]:
    return {"type": "reset", "room": ROOM, "reason": reason, "epoch": epoch, "seq": seq,
            "trimmed": trimmed, **extra}


# -- cursor -----------------------------------------------------------------------------


def test_cursor_delivers_in_order_and_drops_duplicates() -> None:
    cursor = RoomCursor(ROOM, Position(E, 4))
    assert cursor.accept(msg(3)).kind is VerdictKind.DUPLICATE
    assert cursor.accept(msg(4)).kind is VerdictKind.DUPLICATE
    verdict = cursor.accept(msg(5))
    assert verdict.kind is VerdictKind.DELIVER and isinstance(verdict.event, Message)
    assert verdict.event.seq == 5 and cursor.position == Position(E, 5)
    skip = {"type": "skip", "room": ROOM, "seq": 6, "epoch": E}
    assert cursor.accept(skip).kind is VerdictKind.MOVED
    assert cursor.position == Position(E, 6)


def test_cursor_reports_gaps_and_other_epochs_without_moving() -> None:
    cursor = RoomCursor(ROOM, Position(E, 4))
    assert cursor.accept(msg(6)).kind is VerdictKind.GAP
    assert cursor.accept(msg(5, epoch="e2")).kind is VerdictKind.GAP
    assert cursor.position == Position(E, 4)


def test_cursor_resets() -> None:
    cursor = RoomCursor(ROOM, Position(E, 4), backfill=False)
    verdict = cursor.accept(reset(30, 20))
    assert verdict.kind is VerdictKind.RESET and not verdict.backfill
    assert cursor.position == Position(E, 30)
    assert cursor.accept(reset(30, 20)).kind is VerdictKind.IGNORED  # the same one again
    assert cursor.accept(reset(25, 20)).kind is VerdictKind.IGNORED  # a trim already past
    # A new epoch always wins; so does a log that never had the position.
    assert cursor.accept(reset(0, 0, epoch="e2", reason="epoch")).kind is VerdictKind.RESET
    assert cursor.position == Position("e2", 0)


def test_cursor_backfills_rooms_without_state_and_takes_a_domain_rooms_state() -> None:
    cursor = RoomCursor(ROOM, Position(E, 4))
    verdict = cursor.accept(reset(30, 20))
    assert verdict.backfill and cursor.position == Position(E, 20)  # 21..30 still kept
    cursor = RoomCursor(ROOM, Position(E, 4))
    verdict = cursor.accept(reset(30, 20, state={"queue": []}))
    assert not verdict.backfill and cursor.position == Position(E, 30)
    assert isinstance(verdict.event, Reset) and verdict.event.state == {"queue": []}


def test_cursor_is_placed_by_subscribed() -> None:
    cursor = RoomCursor("queue:q")
    verdict = cursor.subscribed({"type": "subscribed", "room": "queue:q", "epoch": E,
                                 "head": 7, "seq": 7, "state": {"open": True}})
    assert cursor.position == Position(E, 7)
    assert isinstance(verdict.event, Reset) and verdict.event.reason == "initial"
    # A resumed subscription keeps its position (the replay follows).
    assert cursor.subscribed({"type": "subscribed", "room": "queue:q", "epoch": E,
                              "head": 9}).kind is VerdictKind.IGNORED
    assert cursor.position == Position(E, 7)


# -- gap repair ----------------------------------------------------------------------------


class FakeLog:
    """The HTTP log of one room: pages of ``limit`` messages after ``after``."""

    def __init__(self, head: int, limit: int = 2) -> None:
        self.head = head
        self.limit = limit
        self.reads: list[int] = []

    async def read(self, room: str, after: int, epoch: str | None, *, wait: float = 0.0,
                   limit: int | None = None) -> Page:
        self.reads.append(after)
        frames = [msg(s) for s in range(after + 1, min(self.head, after + self.limit) + 1)]
        last = frames[-1]["seq"] if frames else after
        return Page(ROOM, E, self.head, 0, last, frames)


def reader_for(log: FakeLog) -> Reader:
    return Reader(log, lambda room: None)  # type: ignore[arg-type]


def sink(room: Room) -> Subscription:
    sub = Subscription(room, 100, lambda s: None, lambda: None)
    room.sinks.append(sub)
    return sub


def drained(sub: Subscription) -> list[Any]:
    """The events queued in ``sub`` (taken out without an event loop turn)."""
    events = []
    while sub.pending():
        item = sub._items.popleft()
        assert isinstance(item, tuple)
        if item[0] is not None:
            events.append(item[0])
    return events


async def test_a_gap_is_read_over_http_before_anything_after_it() -> None:
    log = FakeLog(head=6)
    room = Room(ROOM, Position(E, 0), backfill=True, presence=False)
    sub = sink(room)
    reader = reader_for(log)
    for frame in (msg(1), msg(2), msg(6), msg(4), msg(7)):
        await reader.apply(room, frame)
    assert [e.seq for e in drained(sub)] == [1, 2, 3, 4, 5, 6, 7]
    assert log.reads == [2, 4]  # pages from the position until the head


async def test_a_gap_the_log_cannot_fill_asks_for_a_resync() -> None:
    room = Room(ROOM, Position(E, 0), backfill=True, presence=False)
    with pytest.raises(Resync):
        await reader_for(FakeLog(head=2)).apply(room, msg(9))
    assert room.cursor.position == Position(E, 2)


async def test_a_trimmed_reset_is_followed_by_the_messages_still_kept() -> None:
    log = FakeLog(head=30, limit=4)
    room = Room(ROOM, Position(E, 3), backfill=True, presence=False)
    sub = sink(room)
    await reader_for(log).apply(room, reset(30, 25))
    events = drained(sub)
    assert isinstance(events[0], Reset)
    assert [e.seq for e in events[1:]] == [26, 27, 28, 29, 30]


# -- subscription positions ------------------------------------------------------------------


async def test_a_subscription_saves_what_the_application_finished() -> None:
    room = Room(ROOM, Position(E, 0), backfill=True, presence=False)
    sub = sink(room)
    reader = reader_for(FakeLog(head=0))
    for seq in (1, 2, 3):
        await reader.apply(room, msg(seq))
    assert room.saved_position(final=False) == Position(E, 0)
    first = await anext(sub)
    assert first.seq == 1
    assert sub.done == Position(E, 0) and sub.taken == Position(E, 1)  # being processed
    await anext(sub)
    assert room.saved_position(final=False) == Position(E, 1)
    assert room.saved_position(final=True) == Position(E, 2)


# -- outbox -----------------------------------------------------------------------------------


async def test_the_outbox_keeps_order_window_and_ids() -> None:
    now = [0.0]
    settled: list[tuple[str, object]] = []
    outbox = Outbox(clock=lambda: now[0], on_settled=lambda e, o: settled.append((e.id, o)))
    futures = [outbox.add(Pending(f"id{i}", "publish", ROOM, {"data": i})) for i in range(4)]
    due = outbox.due(window=2)
    assert [e.id for e in due] == ["id0", "id1"]
    for entry in due:
        outbox.sent(entry)
    assert outbox.due(window=2) == [] and outbox.next_due_in(2) is None  # window full
    outbox.retry_later("id0", 5.0)  # told to wait: holds back what came after it
    assert outbox.due(window=2) == []
    assert outbox.next_due_in(2) == 5.0
    now[0] = 5.0
    assert [e.id for e in outbox.due(window=2)] == ["id0"]
    outbox.requeue()  # the link is gone: everything goes again, same ids, same order
    assert [e.id for e in outbox.due(window=10)] == ["id0", "id1", "id2", "id3"]

    outbox.resolve("id0", Ack("id0", ROOM, E, 1))
    outbox.reject("id1", CommandError("FORBIDDEN", "no"))
    assert (await futures[0]).seq == 1
    with pytest.raises(CommandError):
        await futures[1]
    futures[2].cancel()  # the caller stopped waiting: the outcome goes to on_settled
    outbox.resolve("id2", Ack("id2", ROOM, E, 2))
    assert [i for i, _ in settled] == ["id2"] and list(outbox.entries) == ["id3"]


# -- backoff, close codes, codec, state file ---------------------------------------------------


def test_backoff_is_capped_with_jitter_below_the_schedule() -> None:
    plain = Backoff((1, 2, 4, 8, 16, 30), jitter=0)
    assert [plain.delay(n) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    spread = Backoff(jitter=0.3, rng=random.Random(7))
    delays = [spread.delay(5) for _ in range(200)]
    assert all(21.0 <= d <= 30.0 for d in delays) and len(set(delays)) > 1


def test_close_codes_stop_or_reconnect() -> None:
    assert not any(reconnects(code) for code in (4001, 4002, 4003, 1009))
    assert all(reconnects(code) for code in (1000, 1001, 1006, 1011, 1012, 4008))


def test_codec_takes_one_frame_or_an_array() -> None:
    codec = Codec()
    assert codec.decode('{"type":"pong"}') == [{"type": "pong"}]
    assert [f["seq"] for f in codec.decode(json.dumps([msg(1), msg(2)]))] == [1, 2]
    with pytest.raises(ValueError):
        codec.decode("[1, 2]")


def test_the_state_file_round_trips_and_is_replaced_whole(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "state.json")
    assert store.load() == Saved()
    entry = Pending("p1", "command", "queue:q", {"name": "queue.open", "args": {}})
    store.save(Saved({ROOM: Position(E, 41)}, [entry]))
    loaded = store.load()
    assert loaded.rooms == {ROOM: Position(E, 41)}
    assert [e.to_json() for e in loaded.outbox] == [entry.to_json()]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no temp file left
    (tmp_path / "state.json").write_text('{"version": 99}')
    with pytest.raises(ValueError):
        store.load()



def test_retry_policy_is_the_browser_client_s() -> None:
    from roomlog_client.errors import retry_delay

    assert retry_delay("UNAVAILABLE", 0.5, 0) == 0.5
    assert retry_delay("UNAVAILABLE", None, 3) == 8.0
    assert retry_delay("UNAVAILABLE", None, 20) is None
    assert retry_delay("RATE_LIMITED", 2.0, 0) == 2.0
    assert retry_delay("RATE_LIMITED", 30.0, 0) is None  # a room's rule: the user sees it
    assert [retry_delay("INTERNAL", None, n) for n in range(4)] == [1.0, 2.0, 4.0, None]
    assert retry_delay("DUPLICATE_REQUEST", None, 0) is None
