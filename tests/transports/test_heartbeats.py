"""One timer pings every native WebSocket (roomlog.transports.heartbeats), and the
shared deadlines of sessions (roomlog.deadlines)."""

from __future__ import annotations

import asyncio

from roomlog.deadlines import Deadlines
from roomlog.transports.heartbeats import SLOTS, Heartbeats, ping_payload
from roomlog.wsframes import PING, frame


class Conn:
    def __init__(self, answers: bool) -> None:
        self.answers = answers
        self.ping_at = 0.0
        self.beat_slot = -1
        self.pings: list[bytes] = []
        self.timed_out = asyncio.Event()

    def send_ping(self, wire: bytes, at: float) -> None:
        self.pings.append(wire)
        self.ping_at = at
        if self.answers:  # the pong arrives on the next loop turn
            asyncio.get_running_loop().call_soon(self.pong)

    def pong(self) -> None:
        self.ping_at = 0.0

    def keepalive_timeout(self) -> None:
        self.timed_out.set()


async def test_a_silent_connection_times_out_and_an_answering_one_never_does() -> None:
    beats = Heartbeats(interval=0.05, timeout=0.05)
    talker, silent, gone = Conn(answers=True), Conn(answers=False), Conn(answers=False)
    for conn in (talker, silent, gone):
        beats.add(conn)
    beats.discard(gone)
    assert len(beats) == 2 and gone.beat_slot == -1
    await asyncio.wait_for(silent.timed_out.wait(), 5)
    while len(talker.pings) < 3:  # noqa: ASYNC110 (pinged again and again, never timed out)
        await asyncio.sleep(0.02)
    assert not talker.timed_out.is_set() and gone.pings == []
    assert len(silent.pings) == 1  # a connection that owes a pong is not pinged again
    at = float.fromhex("0x1p0")
    assert frame(PING, ping_payload(at))[2:] == ping_payload(at)  # 8 bytes: the send time
    beats.discard(talker)
    beats.discard(silent)
    assert len(beats) == 0
    beats.close()


async def test_interval_zero_pings_nobody() -> None:
    beats = Heartbeats(interval=0, timeout=1)
    conn = Conn(answers=False)
    beats.add(conn)
    assert len(beats) == 0 and conn.beat_slot == -1
    assert SLOTS > 1


class Owner:
    def __init__(self) -> None:
        self.due_at = -1
        self.passed = asyncio.Event()

    def deadline_passed(self) -> None:
        self.passed.set()


async def test_deadlines_fire_once_and_a_cancelled_or_moved_one_lets_go() -> None:
    deadlines = Deadlines(resolution=0.01)
    soon, cancelled, moved = Owner(), Owner(), Owner()
    deadlines.set(soon, 0.02)
    deadlines.set(cancelled, 0.02)
    deadlines.set(moved, 0.02)
    deadlines.cancel(cancelled)
    deadlines.set(moved, 3600)  # a token refreshed: the old deadline is gone
    assert len(deadlines) == 2
    await asyncio.wait_for(soon.passed.wait(), 5)
    await asyncio.sleep(0.05)
    assert not cancelled.passed.is_set() and not moved.passed.is_set()
    assert soon.due_at == -1 and len(deadlines) == 1
    deadlines.cancel(moved)
    assert len(deadlines) == 0 and deadlines._timers == {}  # no timer left behind
