"""Keepalive pings for every native WebSocket of a process, from one timer.

uvicorn's WebSocket protocol keeps two timers per connection (the next ping, the
pong deadline): with 20,000 idle connections that is 40,000 timer handles and
their libuv handles. Here connections are spread over ``SLOTS`` groups by the
time they opened; one timer visits a group every ``interval / SLOTS`` seconds
and pings its members that owe no pong, with one frame shared by all of them;
``timeout`` seconds later the same group is checked, and a member whose ping is
still unanswered is told (:meth:`Beating.keepalive_timeout`). So a connection is
pinged about every ``interval`` seconds (give or take one slot) and a silent one
is found ``timeout`` after its ping, as before.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Protocol

from roomlog.wsframes import PING, frame

__all__ = ["SLOTS", "Beating", "Heartbeats"]

SLOTS = 16


class Beating(Protocol):
    """A connection the heartbeats visit (``ping_at``: 0.0 while it owes no pong)."""

    ping_at: float
    beat_slot: int

    def send_ping(self, wire: bytes, at: float) -> None: ...

    def keepalive_timeout(self) -> None: ...


def ping_payload(at: float) -> bytes:
    """The payload of the ping sent at ``at``: a pong must echo it."""
    return struct.pack("!d", at)


class Heartbeats:
    def __init__(self, interval: float, timeout: float) -> None:
        self._interval = interval
        self._timeout = timeout
        self._slots: list[dict[Beating, None]] = [{} for _ in range(SLOTS)]
        self._turn = 0  # the slot the timer visits next
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return self._count

    def add(self, conn: Beating) -> None:
        """Ping ``conn`` from now on, first about ``interval`` seconds from now."""
        if self._interval <= 0:
            conn.beat_slot = -1
            return
        slot = (self._turn - 1) % SLOTS  # visited last: its next visit is the furthest
        conn.beat_slot = slot
        self._slots[slot][conn] = None
        self._count += 1
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._interval / SLOTS, self._visit)

    def discard(self, conn: Beating) -> None:
        slot = conn.beat_slot
        if slot >= 0 and self._slots[slot].pop(conn, 0) is None:
            self._count -= 1
        conn.beat_slot = -1

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _visit(self) -> None:
        loop = asyncio.get_running_loop()
        slot = self._slots[self._turn]
        self._turn = (self._turn + 1) % SLOTS
        if slot:
            now = loop.time()
            wire = frame(PING, ping_payload(now))
            for conn in list(slot):
                if not conn.ping_at:
                    conn.send_ping(wire, now)
            if self._timeout > 0:
                loop.call_later(self._timeout, self._check, slot)
        self._timer = (loop.call_later(self._interval / SLOTS, self._visit)
                       if self._count else None)

    def _check(self, slot: dict[Beating, None]) -> None:
        due = asyncio.get_running_loop().time() - self._timeout + 0.001
        for conn in list(slot):
            if conn.ping_at and conn.ping_at <= due:
                conn.keepalive_timeout()
