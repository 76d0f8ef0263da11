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
from roomlog.api import Api
from roomlog.auth import load_tokens, read_secret
from roomlog.backends import read_backends
from roomlog.bans import BanStore
from roomlog.bus import Bus
from roomlog.bus.memory import MemoryBus
from roomlog.cluster import Cluster
from roomlog.commands import CommandRunner
from roomlog.drain import drain, end_banned, on_control
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.hooks.caller import Hooks
from roomlog.hooks.gate import Gate
from roomlog.hub import Hub
from roomlog.identity import Principal
from roomlog.log import Log
from roomlog.log.bans import SqlBans
from roomlog.log.sql import SqlLog
from roomlog.media import MediaStore
from roomlog.outbound.httpx_adapter import HttpxOutbound
from roomlog.periodic import every
from roomlog.presence import Presence
from roomlog.publisher import Publisher
from roomlog.revocation import Revocation
from roomlog.rooms import ACROSS_ROOMS, DOMAINS, queue, repair
from roomlog.services import Services
from roomlog.settings import Settings
from roomlog.stats import Stats
from roomlog.transports.context import RequestContext
from roomlog.transports.http import error_response
from roomlog.transports.longpoll import long_poll
from roomlog.transports.sse import server_sent_events
from roomlog.transports.websocket import WebSocketEndpoint
from roomlog.webapp import web_mounts

__all__ = ["app_from_env", "build_services", "create_app"]

logger = logging.getLogger(__name__)


def build_services(settings: Settings, *, log: Log | None = None, bus: Bus | None = None,
                   bans: BanStore | None = None) -> Services:
    """Wire the collaborators; ``log``, ``bus`` and ``bans`` may be given (tests)."""
    log = log or SqlLog(settings.database_url,
                        retention_max_messages=settings.retention_max_messages,
                        migrate=settings.migrates_on_start,
                        close_timeout=settings.drain_timeout,
                        room_cache_size=settings.room_cache_size)
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

    hub = Hub(log, page_size=settings.page_size, live_buffer=settings.live_buffer,
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
                          max_batch=settings.commit_batch, runners=runners)
    backends = read_backends(settings.backends_file)
    secret = read_secret(settings.secret, settings.secret_file)
    secret.warn()
    tokens = load_tokens(settings.secret, settings.secret_file, settings.secret_roles,
                         backends.keys, max_ttl=settings.token_max_ttl, found=secret)
    # Hook URLs come from the operator's file, never from an API: private addresses
    # are allowed (backends usually live on the operator's network).
    hooks = Hooks(backends.hooks, timeout=settings.hook_timeout,
                  max_body=settings.max_data_bytes,
                  outbound=lambda spec: HttpxOutbound(
                      allow_private=True, max_connections=settings.hook_max_connections))
    gate = Gate(log, publisher, hooks, clock_ms=lambda: int(time.time() * 1000),
                max_per_user=settings.hook_max_per_user)
    media = MediaStore(settings.media_dir, settings.max_upload_bytes)
    revocation = Revocation(bans, bus, reload_interval=settings.ban_reload_interval)
    services = Services(settings, log, bus, hub, publisher, cluster, presence, tokens, stats,
                        media, revocation, time.monotonic, gate)
    revocation.enforce = lambda: end_banned(services)
    cluster.on_control = lambda payload: on_control(services, payload)
    return services


def _sql(log: Log) -> SqlLog:
    """``log`` as the SQL log whose database the ban list shares."""
    if not isinstance(log, SqlLog):
        raise TypeError("give build_services a `bans` store with a log that is not SqlLog")
    return log


def _bus(settings: Settings) -> Bus:
    """The in-process bus, or Redis when ``redis_url`` is set (imported only then)."""
    if not settings.redis_url:
        return MemoryBus()
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
    routes: list[BaseRoute] = [
        WebSocketRoute("/ws", WebSocketEndpoint(s)),
        Route("/v1/rooms/{room}/messages", long_poll(s), methods=["GET"]),  # type: ignore[arg-type]
        Route("/v1/rooms/{room}/messages", api.publish, methods=["POST"]),
        Route("/v1/rooms/{room}/events", server_sent_events(s), methods=["GET"]),  # type: ignore[arg-type]
        Route("/v1/rooms/{room}/commands", api.command, methods=["POST"]),
        Route("/v1/rooms/{room}/state", api.state, methods=["GET"]),
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
        Route("/v1/admin/bans/{ban_id:int}", bans.details, methods=["GET"]),
        Route("/v1/admin/bans/{ban_id:int}", bans.lift, methods=["DELETE"]),
        Route("/health/live", api.live, methods=["GET"]),
        Route("/health/ready", api.ready, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await s.log.open()
        await s.revocation.start()
        await s.cluster.start()
        sweeper = asyncio.create_task(_retention(s))
        logger.info("roomlog ready: log %s, bus %s (instance %s)",
                    logs.redact(str(getattr(s.log, "url", s.log))),  # without its password
                    type(s.bus).__name__, s.bus.instance)
        try:
            yield
        finally:
            sweeper.cancel()
            await drain(s, 0.0)  # after SIGTERM the server's drain has done this already
            await s.publisher.close()
            await s.gate.close()
            await s.cluster.close()
            await s.revocation.close()
            await s.log.close()

    routes += [*extra_routes, *web_mounts(settings.web_dir, settings.web_token_url)]
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(RequestContext, stats=s.stats)],
                    exception_handlers={HTTPException: _http_error})
    app.state.stats = s.stats  # for what every endpoint counts (handles_errors)
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
