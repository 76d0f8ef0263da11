"""``create_app(settings)``: explicit wiring, lifespan and the list of routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from roomlog import logs, readers
from roomlog.admin_api import BanApi
from roomlog.admission import Admission, LagMonitor
from roomlog.api import Api
from roomlog.auth import load_tokens, read_secret
from roomlog.backends import read_backends
from roomlog.bans import BanStore
from roomlog.bus import Bus
from roomlog.bus.memory import MemoryBus
from roomlog.cluster import Cluster
from roomlog.commands import CommandRunner
from roomlog.console.api import ConsoleApi
from roomlog.console.instances import Reporter
from roomlog.console.reports import Instances
from roomlog.cors import cors_middleware
from roomlog.drain import drain, end_banned, on_control
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.hooks.caller import Hooks
from roomlog.hooks.gate import Gate
from roomlog.hub import Hub
from roomlog.identity import Principal
from roomlog.limits import Limits
from roomlog.log import Append, Log
from roomlog.log.bans import SqlBans
from roomlog.log.catalog import SqlCatalog
from roomlog.log.claims import SqlPaymentIndex
from roomlog.log.shared import SharedReads
from roomlog.log.sql import SqlLog
from roomlog.log.webhooks import SqlLeases, SqlWebhooks
from roomlog.media import MediaStore
from roomlog.openapi.generate import undocumented
from roomlog.openapi.served import docs_routes
from roomlog.outbound.http11 import Http11Outbound
from roomlog.payments import Reconciler
from roomlog.payments_api import PaymentApi
from roomlog.periodic import every
from roomlog.presence import Presence
from roomlog.publisher import Publisher
from roomlog.revocation import Revocation
from roomlog.rooms import ACROSS_ROOMS, DOMAINS, queue, repair
from roomlog.services import Services
from roomlog.settings import Settings
from roomlog.stats import Stats
from roomlog.transports.addresses import AddressLimit
from roomlog.transports.context import RequestContext
from roomlog.transports.http import error_response
from roomlog.transports.longpoll import long_poll
from roomlog.transports.sse import server_sent_events
from roomlog.transports.websocket import WebSocketEndpoint
from roomlog.webapp import web_mounts
from roomlog.webhooks.core import Retry
from roomlog.webhooks.delivery import Tuning
from roomlog.webhooks.manager import HINT_KEY, Webhooks
from roomlog.webhooks.store import Leases, LocalLeases
from roomlog.webhooks_api import WebhookApi

__all__ = ["app_from_env", "build_services", "create_app"]

logger = logging.getLogger(__name__)


def build_services(settings: Settings, *, log: Log | None = None, bus: Bus | None = None,
                   bans: BanStore | None = None) -> Services:
    """Wire the collaborators; ``log``, ``bus`` and ``bans`` may be given (tests)."""
    log = log or SqlLog(settings.database_url,
                        retention_max_messages=settings.retention_max_messages,
                        migrate=settings.migrates_on_start,
                        close_timeout=settings.drain_timeout,
                        room_cache_size=settings.room_cache_size,
                        pool_size=settings.db_pool_size,
                        pool_overflow=settings.db_pool_overflow,
                        pool_timeout=settings.db_pool_timeout)
    bans = bans or SqlBans(_sql(log))  # the ban list lives in the log's database
    bus = bus or _bus(settings)
    stats = Stats(command_names={"queue": frozenset(queue.COMMANDS),
                                 "repair": frozenset(repair.COMMANDS)})
    runners = {kind: CommandRunner(domain, snapshot_every=settings.snapshot_every,
                                   cache_size=settings.state_cache_size,
                                   across_rooms=kind in ACROSS_ROOMS)
               for kind, domain in DOMAINS.items()}

    async def view(room: str, viewer: Principal | None) -> tuple[int, str, dict[str, Any]] | None:
        runner = runners.get(room.split(":", 1)[0])
        if runner is None or viewer is None:
            return None
        return await runner.view(log, room, viewer)

    async def admits(room: str, viewer: Principal | None) -> bool:
        """Whether ``viewer`` reads a private domain room now (its state decides)."""
        runner = runners.get(room.split(":", 1)[0])
        if runner is None or not runner.domain.private or viewer is None:
            return True
        return await runner.can_read(log, room, viewer)

    # Subscribers catching up read through SharedReads: a reconnect storm reads each
    # room's page once, and never takes every pooled connection from the writers.
    reads = SharedReads(log, concurrency=settings.read_concurrency, stats=stats)
    hub = Hub(reads, page_size=settings.page_size, live_buffer=settings.live_buffer,
              on_first_interest=lambda room: cluster.watch(room),
              on_last_interest=lambda room: cluster.unwatch(room),
              on_live=lambda room: cluster.live(room), view=view, lenses=readers.lens,
              gates=readers.gate, admits=admits,
              # alone, fan out at once; with other instances, let the bus's writer tell
              # them first (it is woken before the fan-out: their p50 fell by 5 ms)
              write_at_once=isinstance(bus, MemoryBus))
    cluster = Cluster(log, hub, bus, stats, reorder_wait=settings.reorder_wait,
                      check_interval=settings.bus_check_interval,
                      poll_interval=settings.bus_poll_interval, page_size=settings.page_size,
                      held_max=settings.live_buffer)
    presence = Presence(bus, hub, cluster.carried)
    cluster.on_signal = presence.on_signal
    cluster.on_subscribed = presence.on_subscribed
    publisher = Publisher(log, cluster, stats, clock_ms=lambda: int(time.time() * 1000),
                          max_batch=settings.commit_batch, runners=runners,
                          lanes=settings.lanes)
    backends = read_backends(settings.backends_file)
    secret = read_secret(settings.secret, settings.secret_file)
    secret.warn()
    tokens = load_tokens(settings.secret, settings.secret_file, settings.secret_roles,
                         backends.keys, max_ttl=settings.token_max_ttl, found=secret)
    # Hook URLs come from the operator's file, never from an API: private addresses
    # are allowed (backends usually live on the operator's network). The lean HTTP/1.1
    # adapter, as for webhooks: httpx's pool scans all its connections at each request
    # (measured: two thirds of the hub's CPU in a burst of paid submits, loadtest/paid.py).
    hooks = Hooks(backends.hooks, timeout=settings.hook_timeout,
                  max_body=settings.max_data_bytes,
                  outbound=lambda spec: Http11Outbound(
                      allow_private=True, max_connections=settings.hook_max_connections,
                      user_agent="roomlog-hooks"))
    gate = Gate(log, publisher, hooks, clock_ms=lambda: int(time.time() * 1000),
                max_per_user=settings.hook_max_per_user)
    media = MediaStore(settings.media_dir, settings.max_upload_bytes)
    revocation = Revocation(bans, bus, reload_interval=settings.ban_reload_interval)
    webhooks = _webhooks(settings, log, bus, publisher)
    cluster.on_commit = webhooks.committed
    services = Services(settings, log, bus, hub, publisher, cluster, presence, tokens, stats,
                        media, revocation, time.monotonic, gate,
                        Limits(settings, bus, stats, time.monotonic), webhooks)
    services.instances = Instances(settings.console_report_interval)
    revocation.enforce = lambda: end_banned(services)
    cluster.on_control = lambda payload: (webhooks.hinted(payload) if HINT_KEY in payload
                                          else on_control(services, payload))
    return services


def _webhooks(settings: Settings, log: Log, bus: Bus, publisher: Publisher) -> Webhooks:
    """Webhook endpoints in the log's database; leases there too, except on SQLite (one
    process: it delivers every endpoint)."""
    sql = _sql(log)
    leases: Leases = LocalLeases() if settings.is_sqlite else SqlLeases(sql)
    tuning = Tuning(timeout=settings.webhook_timeout,
                    retry=Retry(settings.webhook_retry_base, settings.webhook_retry_max,
                                settings.webhook_horizon),
                    page_size=settings.page_size, max_in_flight=settings.webhook_max_in_flight,
                    flush_interval=settings.webhook_cursor_flush,
                    poll_interval=settings.webhook_poll_interval,
                    keep_attempts=settings.webhook_attempts_kept)

    async def notify(room: str, raw: bytes) -> object:
        return await publisher.publish(room, Append("roomlog", raw))

    return Webhooks(SqlWebhooks(sql), leases, log,
                    outbound=lambda: Http11Outbound(
                        allow_private=settings.webhook_allow_private,
                        max_connections=settings.webhook_max_in_flight,
                        user_agent="roomlog-webhooks"),
                    tuning=tuning, instance=bus.instance, lease_ttl=settings.webhook_lease_ttl,
                    fenced=not settings.is_sqlite, notify=notify, broadcast=bus.broadcast)


def _sql(log: Log) -> SqlLog:
    """``log`` as the SQL log whose database the ban list shares."""
    if not isinstance(log, SqlLog):
        raise TypeError("give build_services a `bans` store with a log that is not SqlLog")
    return log


def bus_kind(settings: Settings) -> str:
    """Which bus ``settings`` choose: memory, redis or postgres ('auto' decides by what is
    configured). SystemExit with advice when the choice cannot work."""
    kind = settings.bus.lower()
    if kind == "auto":
        kind = ("redis" if settings.redis_url else
                "postgres" if settings.workers > 1 and not settings.is_sqlite else "memory")
    if kind not in ("memory", "redis", "postgres"):
        raise SystemExit(f"ROOMLOG_BUS={settings.bus!r}: choose memory, redis, postgres or auto")
    if kind == "redis" and not settings.redis_url:
        raise SystemExit("ROOMLOG_BUS=redis needs ROOMLOG_REDIS_URL (redis://host:6379/0)")
    if kind == "postgres" and settings.is_sqlite:
        raise SystemExit("ROOMLOG_BUS=postgres needs a PostgreSQL ROOMLOG_DATABASE_URL: the "
                         "bus uses LISTEN/NOTIFY on the log's database")
    if kind == "memory" and settings.workers > 1:
        raise SystemExit(f"{settings.workers} workers need a bus between them: ROOMLOG_BUS="
                         "postgres (or auto) or redis; the memory bus serves one process")
    return kind


def _bus(settings: Settings) -> Bus:
    """The bus of ``bus_kind``; Redis and PostgreSQL are imported only when chosen."""
    kind = bus_kind(settings)
    if kind == "memory":
        return MemoryBus()
    if kind == "postgres":
        from roomlog.bus.postgres import PostgresBus

        return PostgresBus(settings.database_url, ping_interval=settings.bus_ping_interval,
                           ping_timeout=settings.bus_ping_timeout,
                           reconnect_max=settings.bus_reconnect_max,
                           presence_ttl=settings.presence_ttl, outbox_max=settings.bus_outbox)
    from roomlog.bus.redis import RedisBus

    return RedisBus(settings.redis_url, prefix=settings.redis_prefix,
                    ping_interval=settings.bus_ping_interval,
                    ping_timeout=settings.bus_ping_timeout,
                    reconnect_max=settings.bus_reconnect_max,
                    presence_ttl=settings.presence_ttl, outbox_max=settings.bus_outbox)


def create_app(settings: Settings, services: Services | None = None, *,
               extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The app; ``extra_routes`` come before the web app's catch-all mount (the demo's
    token endpoint)."""
    s = services or build_services(settings)
    api = Api(s)
    bans = BanApi(s)
    hooks = WebhookApi(s)
    reconciler = _reconciler(s)
    payments = PaymentApi(s, reconciler.index, reconciler)
    monitor = LagMonitor(stats=s.stats)
    admission = Admission(WebSocketEndpoint(s), monitor, stats=s.stats,
                          max_lag=settings.admission_max_lag,
                          retry_after=settings.admission_retry_after)
    console = ConsoleApi(s, SqlCatalog(_sql(s.log)))
    routes: list[BaseRoute] = [
        WebSocketRoute("/ws", admission),
        Route("/v1/rooms/{room}/messages", long_poll(s), methods=["GET"]),  # type: ignore[arg-type]
        Route("/v1/rooms/{room}/messages", api.publish, methods=["POST"]),
        Route("/v1/rooms/{room}/events", server_sent_events(s), methods=["GET"]),  # type: ignore[arg-type]
        Route("/v1/rooms/{room}/commands", api.command, methods=["POST"]),
        Route("/v1/rooms/{room}/state", console.state(api.state), methods=["GET"]),
        Route("/v1/rooms/{room}/analytics", api.analytics, methods=["GET"]),
        Route("/v1/rooms/{room}", api.room_info, methods=["GET"]),
        Route("/v1/rooms/{room}", api.reset_room, methods=["DELETE"]),
        Route("/v1/rooms/{room}/presence", api.presence, methods=["GET"]),
        Route("/v1/rooms/{room}/photos", api.upload_photo, methods=["POST"]),
        Route("/v1/rooms/{room}/photos/{upload_id}", api.open_photo, methods=["GET"]),
        Route("/v1/repairs/stats", api.repair_stats, methods=["GET"]),
        Route("/v1/admin/disconnect", api.disconnect, methods=["POST"]),
        Route("/v1/admin/bans", bans.create, methods=["POST"]),
        Route("/v1/admin/bans", bans.listing, methods=["GET"]),
        Route("/v1/admin/bans/{ban_id}", bans.details, methods=["GET"]),
        Route("/v1/admin/bans/{ban_id}", bans.lift, methods=["DELETE"]),
        Route("/v1/admin/webhooks", hooks.create, methods=["POST"]),
        Route("/v1/admin/webhooks", hooks.listing, methods=["GET"]),
        Route("/v1/admin/webhooks/{webhook_id}", hooks.details, methods=["GET"]),
        Route("/v1/admin/webhooks/{webhook_id}", hooks.update, methods=["PATCH"]),
        Route("/v1/admin/webhooks/{webhook_id}", hooks.delete, methods=["DELETE"]),
        Route("/v1/admin/webhooks/{webhook_id}/rotate", hooks.rotate, methods=["POST"]),
        Route("/v1/admin/webhooks/{webhook_id}/redeliver", hooks.redeliver, methods=["POST"]),
        Route("/v1/admin/webhooks/{webhook_id}/attempts", hooks.attempts, methods=["GET"]),
        Route("/v1/admin/payments", payments.listing, methods=["GET"]),
        Route("/v1/admin/payments/references/{reference}", payments.reference,
              methods=["GET"]),
        Route("/v1/admin/payments/analytics", payments.analytics, methods=["GET"]),
        Route("/v1/admin/payments/reconcile", payments.reconcile, methods=["POST"]),
        Route("/v1/admin/instances", console.instances, methods=["GET"]),
        Route("/v1/admin/rooms", console.search, methods=["GET"]),
        Route("/v1/admin/rooms/{room}", console.room, methods=["GET"]),
        Route("/v1/admin/rooms/{room}/log", console.log, methods=["GET"]),
        Route("/v1/admin/rooms/{room}/reset", console.reset, methods=["POST"]),
        Route("/v1/admin/rooms/{room}/close", console.close, methods=["POST"]),
        Route("/health/live", api.live, methods=["GET"]),
        Route("/health/ready", api.ready, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await s.log.open()
        await s.revocation.start()
        await s.cluster.start()
        await s.webhooks.start()
        sweeper = asyncio.create_task(_retention(s))
        reconciling = asyncio.create_task(_reconcile(s, reconciler))
        monitor.start()
        reporter = asyncio.create_task(Reporter(s, s.instances, s.webhooks).run())
        logger.info("roomlog ready: log %s, bus %s (instance %s)",
                    logs.redact(str(getattr(s.log, "url", s.log))),  # without its password
                    type(s.bus).__name__, s.bus.instance)
        try:
            yield
        finally:
            sweeper.cancel()
            reconciling.cancel()
            await monitor.close()
            reporter.cancel()
            await drain(s, 0.0)  # after SIGTERM the server's drain has done this already
            await s.publisher.close()
            await s.webhooks.close()  # after the last commits: their deliveries are saved
            await s.gate.close()
            await s.cluster.close()
            await s.revocation.close()
            await s.log.close()

    routes += [*docs_routes(), *extra_routes,
               *web_mounts(settings.web_dir, settings.web_token_url)]
    missing = undocumented(routes)
    if missing:  # tests/openapi/test_coverage.py fails on this; a deployment only warns
        logger.warning("routes missing from /openapi.json (no roomlog.openapi Operation): %s",
                       ", ".join(missing))
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(RequestContext, stats=s.stats),
                                cors_middleware(settings.cors_origins, settings.cors_max_age),
                                Middleware(AddressLimit, limits=s.limits)],
                    exception_handlers={HTTPException: _http_error})
    app.state.stats = s.stats  # for what every endpoint counts (handles_errors)
    app.state.admission = admission  # `roomlog serve`'s native /ws asks it too
    return app


def app_from_env() -> Starlette:
    """The app of ``Settings.from_env()``: the factory ``roomlog serve --reload`` imports
    in its worker process."""
    return create_app(Settings.from_env())


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods get the same JSON error body as everything else."""
    assert isinstance(exc, HTTPException)
    code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.BAD_FRAME}.get(exc.status_code,
                                                                   ErrorCode.BAD_FRAME)
    response = error_response(RoomlogError(code, str(exc.detail)))
    response.status_code = exc.status_code
    return response


async def _retention(s: Services) -> None:
    """Age-based trimming and idempotency expiry, every retention_interval."""
    settings = s.settings

    async def sweep() -> None:
        now_ms = int(time.time() * 1000)
        if settings.retention_max_age > 0:
            dropped = await s.log.trim_before(now_ms - int(settings.retention_max_age * 1000))
            if dropped:
                logger.info("retention dropped %d messages", dropped)
        await s.log.expire_ids(now_ms - int(settings.idempotency_ttl * 1000))

    await every(settings.retention_interval, sweep, what="retention sweep", log=logger)


def _reconciler(s: Services) -> Reconciler:
    """Payments across rooms; the index reads the claims in the log's database."""
    settings = s.settings
    return Reconciler(SqlPaymentIndex(_sql(s.log)), s.log, s.publisher.runners["queue"],
                      s.gate.command,
                      deadline_ms=int(settings.payment_refund_deadline * 1000),
                      horizon_ms=int(settings.payment_reconcile_horizon * 1000))


async def _reconcile(s: Services, reconciler: Reconciler) -> None:
    """Stuck refunds asked again, every payment_reconcile_interval (0: never)."""
    interval = s.settings.payment_reconcile_interval
    if interval <= 0:
        return

    async def run() -> None:
        await reconciler.reconcile(int(time.time() * 1000))

    await every(interval, run, what="payment reconciliation", log=logger)
