"""Counters and histograms the hot paths update; ``roomlog.metrics`` exports them.

Plain attributes and lists, no locks and no library: an increment on the
fan-out path must cost what an integer add costs. Prometheus reads them only
when it scrapes.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["HTTP_METHODS", "Histogram", "Stats"]

#: Methods counted by name in ``http_requests``; any other is counted as "other".
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

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
    banned: int = 0  # connections ended by a ban
    http_aborted: int = 0  # HTTP requests whose client left before its body was complete
    commit_splits: int = 0  # batches split to isolate an item that fails alone
    catch_up_reads: int = 0  # log reads of subscribers catching up (roomlog.log.shared)
    catch_up_shared: int = 0  # such reads answered by a read another subscriber asked for
    loop_lag: float = 0.0  # seconds the event loop last ran a timer late (roomlog.admission)
    #: WebSocket connection objects (native transport) and sessions alive, freed or not:
    #: what a leak of closed connections would show (tests/e2e/test_connection_memory.py)
    websocket_objects: int = 0
    session_objects: int = 0
    deliver_latency: Histogram = field(default_factory=Histogram)  # commit -> outboxes
    append_latency: Histogram = field(default_factory=Histogram)  # one commit's transaction
    bus_lag: Histogram = field(default_factory=Histogram)  # commit -> arrival from the bus

    # Labelled counts. Every label comes from a closed set (callers bound what a client
    # chooses, like a command's name), so neither memory nor the scrape grows with it.
    #: (room kind, command, "ok" or the error code) of every command the write path answered
    commands: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: (method, route template, status) of every HTTP response (roomlog.transports.context)
    http_requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    #: connections refused before they were served, by reason ("websockets_off",
    #: "subprotocol"; roomlog.limits: "user_connections", "address_connections";
    #: roomlog.admission: "saturated")
    connections_refused: Counter[str] = field(
        default_factory=lambda: Counter(dict.fromkeys(
            ("websockets_off", "subprotocol", "user_connections", "address_connections",
             "saturated"), 0)))
    #: requests refused with RATE_LIMITED, by (transport, kind): transport "websocket" or
    #: "http", kind "write", "subscribe", "presence" or "read" (roomlog.limits)
    rate_limited: Counter[tuple[str, str]] = field(
        default_factory=lambda: Counter(dict.fromkeys(
            ((t, "write") for t in ("websocket", "http")), 0)))
    #: connections or requests refused because their principal or address is banned
    #: the commands each domain room kind knows (others are counted as "other")
    command_names: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def count_command(self, kind: str, name: str, code: str) -> None:
        """One answered command; ``code`` is "ok" or the error code's value."""
        if name not in self.command_names.get(kind, ()):
            name = "other"
        self.commands[(kind, name, code)] += 1
