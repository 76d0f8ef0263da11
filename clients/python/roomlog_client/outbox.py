"""The outbox: publishes and commands not yet answered, kept with their ids.

An entry stays until the server answers it: an ``ack`` resolves it, an error with
a retryable code (UNAVAILABLE, a short RATE_LIMITED, INTERNAL a few times; see
``errors.retry_delay``) schedules it again, any other error rejects it. A lost link
puts every entry that was in flight back in line; it is sent again with the same id,
so the server applies it once (see docs/protocol.md, "Idempotency"). No I/O here:
the client sends what :meth:`Outbox.due` returns and reports the answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from roomlog_client.errors import CommandError
from roomlog_client.events import Ack, Pending

__all__ = ["Outbox", "Settled"]

logger = logging.getLogger(__name__)

Settled = Callable[[Pending, "Ack | CommandError"], None]


class Outbox:
    """Entries in the order they were issued.

    ``on_change(urgent)`` runs after every change of the set of entries (to persist
    it; ``urgent`` for a new entry, which must be saved before it is sent);
    ``on_settled`` gets the outcome of entries nobody awaits (restored from a state
    file, or whose caller stopped waiting).
    """

    def __init__(self, *, on_change: Callable[[bool], None] | None = None,
                 on_settled: Settled | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.entries: dict[str, Pending] = {}
        self._waiters: dict[str, asyncio.Future[Ack]] = {}
        self._on_change = on_change
        self._on_settled = on_settled
        self._clock = clock
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, ident: object) -> bool:
        return ident in self.entries

    # -- adding ----------------------------------------------------------------

    def add(self, entry: Pending) -> asyncio.Future[Ack]:
        """Queue ``entry``; the future gets its Ack or its CommandError."""
        existing = self._waiters.get(entry.id)
        if entry.id in self.entries and existing is not None and not existing.done():
            return existing  # the same id issued again: one entry, one answer
        waiter: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._waiters[entry.id] = waiter
        if entry.id not in self.entries:
            self.entries[entry.id] = entry
            self._touched(urgent=True)
        return waiter

    def restore(self, entries: list[Pending]) -> None:
        """Entries saved by an earlier client: sent again, outcomes to ``on_settled``."""
        for entry in entries:
            self.entries.setdefault(entry.id, entry)
        self._changed.set()

    # -- sending ---------------------------------------------------------------

    def due(self, window: int) -> list[Pending]:
        """Entries to send now, in the order they were issued, keeping at most
        ``window`` in flight. An entry told to wait (``retry_after``) holds back the
        ones issued after it, so they are not stored out of order."""
        now = self._clock()
        room = window - sum(1 for e in self.entries.values() if e.inflight)
        out: list[Pending] = []
        for entry in self.entries.values():
            if room <= 0:
                break
            if entry.inflight:
                continue
            if entry.not_before > now:
                break
            out.append(entry)
            room -= 1
        return out

    def next_due_in(self, window: int) -> float | None:
        """Seconds until :meth:`due` may return something new (0: now); None when
        nothing waits or the window is full (an answer will wake :meth:`wait`)."""
        waiting = [e for e in self.entries.values() if not e.inflight]
        if not waiting or len(self.entries) - len(waiting) >= window:
            return None
        return max(0.0, waiting[0].not_before - self._clock())

    async def wait(self, seconds: float | None) -> None:
        """Until something changed (a new entry, an answer) or ``seconds`` passed."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._changed.wait()

    def sent(self, entry: Pending) -> None:
        entry.inflight = True
        entry.attempts += 1

    def requeue(self) -> None:
        """The link is gone: what was in flight is sent again on the next one."""
        for entry in self.entries.values():
            entry.inflight = False
        self._changed.set()

    # -- answers -----------------------------------------------------------------

    def resolve(self, ident: str, ack: Ack) -> bool:
        entry = self.entries.pop(ident, None)
        if entry is None:
            return False
        self._settle(entry, ack)
        return True

    def reject(self, ident: str, error: CommandError) -> bool:
        entry = self.entries.pop(ident, None)
        if entry is None:
            return False
        self._settle(entry, error)
        return True

    def retry_later(self, ident: str, delay: float) -> None:
        entry = self.entries.get(ident)
        if entry is not None:
            entry.inflight = False
            entry.not_before = self._clock() + max(0.0, delay)
            self._changed.set()

    def fail_waiters(self, error: BaseException) -> None:
        """The client stops: callers stop waiting (entries stay, for a state file)."""
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # retrieved: no "never retrieved" warning if unawaited
        self._waiters.clear()

    def _settle(self, entry: Pending, outcome: Ack | CommandError) -> None:
        waiter = self._waiters.pop(entry.id, None)
        if waiter is not None and not waiter.done():
            if isinstance(outcome, Ack):
                waiter.set_result(outcome)
            else:
                waiter.set_exception(outcome)
        elif self._on_settled is not None:
            try:
                self._on_settled(entry, outcome)
            except Exception:
                logger.exception("on_settled callback failed")
        self._touched(urgent=False)

    def _touched(self, *, urgent: bool) -> None:
        self._changed.set()
        if self._on_change is not None:
            self._on_change(urgent)
