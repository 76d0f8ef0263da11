"""Counters and histograms the hot paths update; ``roomlog.metrics`` exports them.

Plain attributes and lists, no locks and no library: an increment on the
fan-out path must cost what an integer add costs. Prometheus reads them only
when it scrapes.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = ["Histogram", "Stats"]

# Seconds: from well under a millisecond (a local fan-out) to a polling fallback.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """``(upper bound, count of observations <= it)`` pairs, +Inf last."""
        out, total = [], 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


@dataclass
class Stats:
    messages_in: int = 0  # messages this instance committed
    messages_out: int = 0  # message copies handed to subscribers' outboxes
    bus_in: int = 0  # messages received from other instances
    gap_fills: int = 0  # log reads that filled a gap the bus left
    gap_fill_messages: int = 0
    resets: int = 0  # subscribers sent back to the log by an epoch change
    slow_disconnects: int = 0  # connections closed with 4008
    disconnects: int = 0  # connections closed by an admin
    commit_splits: int = 0  # batches split to isolate an item that fails alone
    deliver_latency: Histogram = field(default_factory=Histogram)  # commit -> outboxes
    append_latency: Histogram = field(default_factory=Histogram)  # one commit's transaction
    bus_lag: Histogram = field(default_factory=Histogram)  # commit -> arrival from the bus
