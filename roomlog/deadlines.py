"""Deadlines of many objects on few timers: connect timeouts and token expiries.

A timer per WebSocket session (``loop.call_later``) is a handle, a libuv timer,
a copied context and a bound method: about 600 bytes each for 20,000 idle
connections whose tokens expire in an hour (issue #13). Here deadlines fall in
buckets of ``resolution`` seconds, rounded up; each bucket has one timer, and
tokens issued together share one. A deadline runs at most ``resolution`` late,
never early. Cancelling removes the object from its bucket, so a closed session
is not held until its old deadline.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

__all__ = ["Deadlines", "Due"]


class Due(Protocol):
    """An object with one deadline at a time; ``due_at`` is the Deadlines' key."""

    due_at: int

    def deadline_passed(self) -> None: ...


class Deadlines:
    def __init__(self, resolution: float = 0.1) -> None:
        self._resolution = resolution
        self._buckets: dict[int, dict[Due, None]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return sum(map(len, self._buckets.values()))

    def set(self, owner: Due, delay: float) -> None:
        """Call ``owner.deadline_passed()`` ``delay`` seconds from now, instead of any
        deadline it had."""
        self.cancel(owner)
        loop = asyncio.get_running_loop()
        key = math.ceil((loop.time() + max(0.0, delay)) / self._resolution)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = {}
            self._timers[key] = loop.call_at(key * self._resolution, self._fire, key)
        bucket[owner] = None
        owner.due_at = key

    def cancel(self, owner: Due) -> None:
        key = owner.due_at
        if key < 0:
            return
        owner.due_at = -1
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.pop(owner, None)
            if not bucket:
                del self._buckets[key]
                self._timers.pop(key).cancel()

    def _fire(self, key: int) -> None:
        self._timers.pop(key, None)
        for owner in self._buckets.pop(key, {}):
            if owner.due_at == key:
                owner.due_at = -1
                owner.deadline_passed()
