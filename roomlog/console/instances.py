"""Every instance's live figures, for the console's overview.

Each instance measures itself every ``console_report_interval`` seconds
(:class:`Reporter`): connections by transport, rooms with local interest,
messages in (committed here), out (copies handed to subscribers) and from the
bus per second over the interval, the bus's state and mean lag, and the time a
one-row read of the database took, and the webhook endpoints it delivers (those
it holds the lease of; given as ``webhooks``) with their figures. It keeps the
report and broadcasts it on the
bus (``{"instance_report": {...}}``), the way presence heartbeats reach every
instance, so the console may ask any instance for all of them
(:class:`~roomlog.console.reports.Instances`). With the in-process bus there is one instance.

An instance that stops reporting is shown as ``stale`` once its last report is
older than three intervals, and forgotten after ten (it died or left the bus;
its presence entries expire after ``presence_ttl`` on their own).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from roomlog import __version__
from roomlog.console.reports import Instances
from roomlog.errors import RoomlogError
from roomlog.periodic import every
from roomlog.services import Services

__all__ = ["Reporter", "WebhookSource", "webhook_rows"]

logger = logging.getLogger(__name__)

_PROBE_ROOM = "audit:moderation"  # any name: info() reads one row and creates nothing
_PROBE_TIMEOUT = 2.0


class WebhookSource(Protocol):
    """What the overview reads of the webhook deliverer (``roomlog.webhooks``): per
    endpoint its counters (``delivered``, ``failed``, ``lag_seconds``) and, for the
    endpoints this instance holds the lease of, its worker (``retrying``,
    ``lag_messages``)."""

    @property
    def stats(self) -> Mapping[str, Any]: ...

    @property
    def workers(self) -> Mapping[str, Any]: ...


def webhook_rows(source: WebhookSource) -> list[dict[str, Any]]:
    """The endpoints this instance delivers, with their figures (pure)."""
    out = []
    for endpoint, stats in sorted(source.stats.items()):
        worker = source.workers.get(endpoint)
        if worker is None:
            continue  # delivered elsewhere now: that instance reports it
        out.append({"endpoint": endpoint, "delivered": stats.delivered, "failed": stats.failed,
                    "retrying": worker.retrying, "lag_messages": worker.lag_messages,
                    "lag_seconds": round(stats.lag_seconds, 3)})
    return out


@dataclass
class _Mark:
    at: float
    messages_in: int
    messages_out: int
    bus_in: int
    lag_sum: float
    lag_count: int


class Reporter:
    """Measures this instance every interval; keeps and broadcasts the report."""

    def __init__(self, services: Services, instances: Instances,
                 webhooks: WebhookSource | None = None) -> None:
        self._s = services
        self._instances = instances
        self._webhooks = webhooks
        self._started_ms = int(time.time() * 1000)
        self._last = self._mark()

    def _mark(self) -> _Mark:
        s = self._s
        lag = s.stats.bus_lag
        return _Mark(s.clock(), s.stats.messages_in, s.hub.delivered, s.stats.bus_in,
                     lag.sum, sum(lag.counts))

    async def _database_ms(self) -> float | None:
        """Milliseconds a one-row read took; None when the database did not answer."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT):
                await self._s.log.info(_PROBE_ROOM)
        except (RoomlogError, TimeoutError):
            return None
        return round((time.perf_counter() - started) * 1000, 3)

    async def report(self) -> dict[str, Any]:
        """This instance now (rates since the previous report); kept and broadcast."""
        s = self._s
        database_ms = await self._database_ms()
        mark, last = self._mark(), self._last
        self._last = mark
        span = max(mark.at - last.at, 1e-6)
        lags = mark.lag_count - last.lag_count
        report = {
            "instance": s.bus.instance, "version": __version__, "started": self._started_ms,
            "at": int(time.time() * 1000), "draining": s.draining,
            "connections": {"websocket": len(s.sessions), "sse": len(s.streams),
                            "longpoll": s.hub.watchers},
            "subscriptions": s.hub.subscriptions, "rooms": len(s.hub.rooms),
            "messages_in_per_s": round((mark.messages_in - last.messages_in) / span, 2),
            "messages_out_per_s": round((mark.messages_out - last.messages_out) / span, 2),
            "bus_in_per_s": round((mark.bus_in - last.bus_in) / span, 2),
            "bus": {"kind": type(s.bus).__name__, "connected": s.cluster.connected,
                    "lag_ms": round((mark.lag_sum - last.lag_sum) / lags * 1000, 3)
                    if lags else None,
                    "reconnects": s.bus.reconnects, "dropped": s.bus.dropped},
            "database": {"ok": database_ms is not None, "latency_ms": database_ms},
            "bans_in_force": len(s.revocation.bans),
            "webhooks": [] if self._webhooks is None else webhook_rows(self._webhooks),
        }
        self._instances.receive(report, s.clock())
        s.bus.broadcast({"instance_report": report})
        return report

    async def run(self) -> None:
        """Report every interval until cancelled."""
        await self.report()

        async def once() -> None:
            await self.report()

        await every(self._instances.interval, once, what="instance report", log=logger)
