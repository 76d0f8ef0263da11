"""Prometheus metrics, rendered at scrape time. The one module that imports
``prometheus_client``.

Hot paths only bump plain counters (``roomlog.stats.Stats``, ``Hub.delivered``,
the bus adapter's counters); this collector reads them when ``/metrics`` is
scraped, so measuring costs the fan-out nothing. Each app has its own registry
(no process-global state), which also holds the process (CPU, memory, file
descriptors) and Python (version, garbage collector) collectors.

Each scrape first asks the database whether it answers (:meth:`Exporter.probe`,
what readiness asks), so ``roomlog_database_up`` is as fresh as the scrape.
``deploy/`` holds a Grafana dashboard and Prometheus rules over these names.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from roomlog import __version__
from roomlog.errors import RoomlogError
from roomlog.services import Services
from roomlog.stats import Histogram, Stats

__all__ = ["Exporter"]

_PROBE_TIMEOUT = 2.0  # seconds the database has to answer a scrape's probe


class _Collector(Collector):
    def __init__(self, services: Services) -> None:
        self._s = services
        self.database_up = True

    def collect(self) -> Iterator[Metric]:
        s, stats = self._s, self._s.stats
        info = GaugeMetricFamily("roomlog_build_info", "The running version (always 1)",
                                 labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily("roomlog_database_up",
                                "1 if the database answered this scrape's probe, else 0",
                                value=1 if self.database_up else 0)
        yield GaugeMetricFamily("roomlog_gc_frozen_objects", "Objects made while starting "
                                "that full collections skip (ROOMLOG_GC_FREEZE)",
                                value=gc.get_freeze_count())
        yield GaugeMetricFamily("roomlog_draining", "1 while this instance drains (SIGTERM)",
                                value=1 if s.draining else 0)
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
        yield CounterMetricFamily("roomlog_catch_up_reads",
                                  "Log reads of subscribers catching up (resume, replay)",
                                  value=stats.catch_up_reads)
        yield CounterMetricFamily("roomlog_catch_up_shared",
                                  "Catch-up reads answered by an identical read another "
                                  "subscriber asked for (coalesced)",
                                  value=stats.catch_up_shared)
        alive = GaugeMetricFamily("roomlog_live_objects", "WebSocket connection objects "
                                  "(native transport) and sessions not yet freed",
                                  labels=["kind"])
        alive.add_metric(["websocket"], stats.websocket_objects)
        alive.add_metric(["session"], stats.session_objects)
        yield alive
        yield GaugeMetricFamily("roomlog_event_loop_lag_seconds",
                                "How late the event loop last ran a timer (admission refuses "
                                "handshakes above ROOMLOG_ADMISSION_MAX_LAG)",
                                value=stats.loop_lag)
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
        hook_calls = CounterMetricFamily(
            "roomlog_hook_calls", "Command hook calls by backend and outcome (allow, deny, "
            "failed: the client got UNAVAILABLE, failed_open)", labels=["backend", "outcome"])
        for (backend, outcome), count in sorted(s.gate.hooks.calls.items()):
            hook_calls.add_metric([backend, outcome], count)
        yield hook_calls
        yield _histogram("roomlog_hook_seconds", "One command hook call, to its verdict or "
                         "failure", s.gate.hooks.latency)
        yield CounterMetricFamily("roomlog_banned_disconnects",
                                  "Connections, streams and long-polls ended by a ban",
                                  value=stats.banned)
        yield GaugeMetricFamily("roomlog_bans_in_force", "Bans in force on this instance",
                                value=len(s.revocation.bans))
        yield CounterMetricFamily("roomlog_http_aborted",
                                  "HTTP requests whose client left before its body was "
                                  "complete", value=stats.http_aborted)
        yield CounterMetricFamily("roomlog_resets",
                                  "Subscribers sent back to the log by an epoch change",
                                  value=stats.resets)
        yield from _labelled(stats)
        yield from _webhooks(s)
        yield CounterMetricFamily("roomlog_ban_hits", "Connects, requests and open streams "
                                  "refused or ended by a ban", value=s.revocation.hits)
        yield CounterMetricFamily("roomlog_commit_splits",
                                  "Write batches split to isolate an item that fails alone",
                                  value=stats.commit_splits)
        yield _histogram("roomlog_deliver_latency_seconds",
                         "Commit to hand-off to local subscribers", stats.deliver_latency)
        yield _histogram("roomlog_log_append_seconds", "One commit's transaction",
                         stats.append_latency)
        yield _histogram("roomlog_bus_lag_seconds", "Commit to arrival from another instance",
                         stats.bus_lag)


def _labelled(stats: Stats) -> Iterator[Metric]:
    commands = CounterMetricFamily(
        "roomlog_commands", "Commands of domain rooms answered, by outcome ('ok' or the "
        "error code)", labels=["kind", "command", "code"])
    for (kind, name, code), count in sorted(stats.commands.items()):
        commands.add_metric([kind, name, code], count)
    yield commands
    http = CounterMetricFamily("roomlog_http_requests", "HTTP responses by route and status",
                               labels=["method", "route", "status"])
    for (method, route, status), count in sorted(stats.http_requests.items()):
        http.add_metric([method, route, str(status)], count)
    yield http
    refused = CounterMetricFamily("roomlog_connections_refused",
                                  "Connections refused before being served, by reason",
                                  labels=["reason"])
    for reason, count in sorted(stats.connections_refused.items()):
        refused.add_metric([reason], count)
    yield refused
    limited = CounterMetricFamily("roomlog_rate_limited",
                                  "Requests refused with RATE_LIMITED, by transport and "
                                  "kind (write, subscribe, presence, read)",
                                  labels=["transport", "kind"])
    for (transport, kind), count in sorted(stats.rate_limited.items()):
        limited.add_metric([transport, kind], count)
    yield limited


def _webhooks(s: Services) -> Iterator[Metric]:
    """Per endpoint, on the instance that delivers it (the others report nothing)."""
    hooks = s.webhooks
    families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
        "delivered": CounterMetricFamily("roomlog_webhook_delivered", "Messages a webhook "
                                         "receiver acknowledged (2xx)", labels=["endpoint"]),
        "failed": CounterMetricFamily("roomlog_webhook_failed", "Webhook attempts without a "
                                      "2xx in time (each is retried)", labels=["endpoint"]),
        "retrying": GaugeMetricFamily("roomlog_webhook_retrying", "Rooms of a webhook waiting "
                                      "to retry a failed delivery", labels=["endpoint"]),
        "lag": GaugeMetricFamily("roomlog_webhook_lag_messages", "Messages committed and not "
                                 "yet delivered (known to the deliverer)", labels=["endpoint"]),
        "lag_seconds": GaugeMetricFamily("roomlog_webhook_lag_seconds", "Age (since its "
                                         "commit) of the message a webhook delivered last; "
                                         "0 when caught up", labels=["endpoint"]),
    }
    latency = HistogramMetricFamily("roomlog_webhook_seconds", "One webhook attempt, send to "
                                    "answer", labels=["endpoint"])
    for endpoint_id, stats in sorted(hooks.stats.items()):
        worker = hooks.workers.get(endpoint_id)
        families["delivered"].add_metric([endpoint_id], stats.delivered)
        families["failed"].add_metric([endpoint_id], stats.failed)
        families["retrying"].add_metric([endpoint_id], worker.retrying if worker else 0)
        families["lag"].add_metric([endpoint_id], worker.lag_messages if worker else 0)
        families["lag_seconds"].add_metric([endpoint_id], stats.lag_seconds if worker else 0)
        latency.add_metric([endpoint_id], stats.latency.cumulative(), stats.latency.sum)
    yield from families.values()
    yield latency
    disabled = GaugeMetricFamily("roomlog_webhook_endpoint_disabled", "1 while a webhook "
                                 "endpoint is disabled after failing past the horizon (every "
                                 "instance reports every endpoint)", labels=["endpoint"])
    for endpoint_id, off in sorted(hooks.disabled.items()):
        disabled.add_metric([endpoint_id], 1 if off else 0)
    yield disabled
    yield GaugeMetricFamily("roomlog_webhooks_delivering", "Webhook endpoints this instance "
                            "holds the lease of", value=len(hooks.workers))
    yield CounterMetricFamily("roomlog_webhooks_disabled", "Webhook endpoints this instance "
                              "disabled after failing past the horizon",
                              value=hooks.disabled_total)


def _histogram(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
    buckets = h.cumulative()
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=h.sum)


class Exporter:
    """One app's metrics: its own registry holding one collector."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._registry = CollectorRegistry(auto_describe=False)
        self._collector = _Collector(services)
        self._registry.register(self._collector)
        ProcessCollector(registry=self._registry)
        PlatformCollector(registry=self._registry)
        GCCollector(registry=self._registry)

    async def probe(self) -> None:
        """Ask the database whether it answers (``roomlog_database_up``); call it
        before :meth:`render`."""
        try:
            await asyncio.wait_for(self._services.log.check(), _PROBE_TIMEOUT)
        except (RoomlogError, TimeoutError):
            self._collector.database_up = False
        else:
            self._collector.database_up = True

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self._registry), CONTENT_TYPE_LATEST
