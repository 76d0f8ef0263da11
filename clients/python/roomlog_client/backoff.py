"""Capped exponential backoff with jitter: how long to wait before attempt N."""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["DEFAULT_SCHEDULE", "Backoff"]

#: Seconds before the 1st, 2nd, ... retry; the last one repeats (the cap).
DEFAULT_SCHEDULE: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)


class Backoff:
    """``delay(n)``: the wait before retry ``n`` (0-based): ``schedule[n]`` (the last
    entry once past the end, the cap), shortened at random by up to ``jitter`` (0.3:
    anywhere from 70 % to 100 % of it), so that clients cut off together do not
    come back together, and never wait longer than the cap.

    Tests pass a short schedule (``(0.05, 0.1)``) and ``jitter=0``; ``rng`` makes the
    spread reproducible.
    """

    def __init__(self, schedule: Sequence[float] = DEFAULT_SCHEDULE, *, jitter: float = 0.3,
                 rng: random.Random | None = None) -> None:
        if not schedule or any(s < 0 for s in schedule):
            raise ValueError("the schedule needs at least one delay, none negative")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")
        self.schedule = tuple(float(s) for s in schedule)
        self.jitter = jitter
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        base = self.schedule[min(max(attempt, 0), len(self.schedule) - 1)]
        return base * (1.0 - self.jitter * self._rng.random())

    def spread(self, seconds: float) -> float:
        """A random wait in ``[0, seconds)``: for "reconnect at once, with a little jitter"."""
        return seconds * self._rng.random()
