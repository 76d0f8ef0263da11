"""Prometheus metrics, rendered at scrape time. The one module that imports
``prometheus_client``.

Hot paths only bump plain counters (``roomlog.stats.Stats``, ``Hub.delivered``,
the bus adapter's counters); this collector reads them when ``/metrics`` is
scraped, so measuring costs the fan-out nothing. Each app has its own registry:
no process-global state.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from roomlog.services import Services
from roomlog.stats import Histogram

__all__ = ["Exporter"]


class _Collector(Collector):
    def __init__(self, services: Services) -> None:
        self._s = services

    def collect(self) -> Iterator[Metric]:
        s, stats = self._s, self._s.stats
        connections = GaugeMetricFamily("roomlog_connections", "Open client connections",
                                        labels=["transport"])
        connections.add_metric(["websocket"], len(s.sessions))
        connections.add_metric(["sse"], len(s.streams))
        connections.add_metric(["longpoll"], s.hub.watchers)
        yield connections
        yield GaugeMetricFamily("roomlog_subscriptions", "Room subscriptions (WebSocket, SSE)",
                                value=s.hub.subscriptions)
        yield GaugeMetricFamily("roomlog_rooms", "Rooms with local interest",
                                value=len(s.hub.rooms))
        yield CounterMetricFamily("roomlog_messages_in", "Messages committed by this instance",
                                  value=stats.messages_in)
        yield CounterMetricFamily("roomlog_messages_out",
                                  "Message copies handed to subscribers", value=s.hub.delivered)
        yield CounterMetricFamily("roomlog_bus_messages_in",
                                  "Messages received from other instances", value=stats.bus_in)
        yield GaugeMetricFamily("roomlog_bus_connected",
                                "1 while the bus carries messages, 0 while degraded (polling)",
                                value=1 if s.cluster.connected else 0)
        yield CounterMetricFamily("roomlog_bus_reconnects", "Bus connections re-established",
                                  value=s.bus.reconnects)
        yield CounterMetricFamily("roomlog_bus_dropped",
                                  "Publishes dropped while the bus failed (repaired from the log)",
                                  value=s.bus.dropped)
        yield CounterMetricFamily("roomlog_gap_fills", "Log reads that filled a bus gap",
                                  value=stats.gap_fills)
        yield CounterMetricFamily("roomlog_gap_fill_messages", "Messages read by gap fills",
                                  value=stats.gap_fill_messages)
        yield CounterMetricFamily("roomlog_slow_disconnects",
                                  "Connections closed for a full outbox (4008)",
                                  value=stats.slow_disconnects)
        yield CounterMetricFamily("roomlog_admin_disconnects",
                                  "Connections closed by an admin", value=stats.disconnects)
        yield CounterMetricFamily("roomlog_commit_splits",
                                  "Write batches split to isolate an item that fails alone",
                                  value=stats.commit_splits)
        yield _histogram("roomlog_deliver_latency_seconds",
                         "Commit to hand-off to local subscribers", stats.deliver_latency)
        yield _histogram("roomlog_log_append_seconds", "One commit's transaction",
                         stats.append_latency)
        yield _histogram("roomlog_bus_lag_seconds", "Commit to arrival from another instance",
                         stats.bus_lag)


def _histogram(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
    buckets = h.cumulative()
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=h.sum)


class Exporter:
    """One app's metrics: its own registry holding one collector."""

    def __init__(self, services: Services) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(services))

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self._registry), CONTENT_TYPE_LATEST
