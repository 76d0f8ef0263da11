"""``create_app(settings)``: explicit wiring, lifespan and the list of routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from roomlog import readers
from roomlog.api import Api
from roomlog.auth import Tokens, load_secret
from roomlog.bus import Bus
from roomlog.bus.memory import MemoryBus
from roomlog.cluster import Cluster
from roomlog.commands import CommandRunner
from roomlog.drain import disconnect_here, drain
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.hub import Hub
from roomlog.identity import Principal
from roomlog.log import Log
from roomlog.log.sql import SqlLog
from roomlog.media import MediaStore
from roomlog.presence import Presence
from roomlog.publisher import Publisher
from roomlog.rooms import DOMAINS
from roomlog.services import Services
from roomlog.settings import Settings
from roomlog.stats import Stats
from roomlog.transports.http import error_response
from roomlog.transports.longpoll import long_poll
from roomlog.transports.sse import server_sent_events
from roomlog.transports.websocket import WebSocketEndpoint

__all__ = ["build_services", "create_app"]

logger = logging.getLogger(__name__)


def build_services(settings: Settings, *, log: Log | None = None,
                   bus: Bus | None = None) -> Services:
    """Wire the collaborators; ``log`` and ``bus`` may be given (tests)."""
    log = log or SqlLog(settings.database_url,
                        retention_max_messages=settings.retention_max_messages,
                        migrate=settings.migrates_on_start)
    bus = bus or _bus(settings)
    stats = Stats()
    runners = {kind: CommandRunner(domain, snapshot_every=settings.snapshot_every)
               for kind, domain in DOMAINS.items()}

    async def view(room: str, viewer: Principal | None) -> tuple[int, str, dict[str, Any]] | None:
        runner = runners.get(room.split(":", 1)[0])
        if runner is None or viewer is None:
            return None
        return await runner.view(log, room, viewer)

    hub = Hub(log, page_size=settings.page_size, live_buffer=settings.live_buffer,
              on_first_interest=lambda room: cluster.watch(room),
              on_last_interest=lambda room: cluster.unwatch(room),
              on_live=lambda room: cluster.live(room), view=view, lenses=readers.lens,
              gates=readers.gate)
    cluster = Cluster(log, hub, bus, stats, reorder_wait=settings.reorder_wait,
                      check_interval=settings.bus_check_interval,
                      poll_interval=settings.bus_poll_interval, page_size=settings.page_size,
                      held_max=settings.live_buffer)
    presence = Presence(bus, hub, cluster.carried)
    cluster.on_signal = presence.on_signal
    cluster.on_subscribed = presence.on_subscribed
    publisher = Publisher(log, cluster, stats, clock_ms=lambda: int(time.time() * 1000),
                          max_batch=settings.commit_batch, runners=runners)
    tokens = Tokens(load_secret(settings.secret, settings.secret_file))
    media = MediaStore(settings.media_dir, settings.max_upload_bytes)
    services = Services(settings, log, bus, hub, publisher, cluster, presence, tokens, stats,
                        media, time.monotonic)
    cluster.on_control = lambda payload: disconnect_here(services, payload)
    return services


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


def create_app(settings: Settings, services: Services | None = None) -> Starlette:
    s = services or build_services(settings)
    api = Api(s)
    routes = [
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
        Route("/health/live", api.live, methods=["GET"]),
        Route("/health/ready", api.ready, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await s.log.open()
        await s.cluster.start()
        sweeper = asyncio.create_task(_retention(s))
        logger.info("roomlog ready: log %s, bus %s (instance %s)",
                    getattr(s.log, "url", s.log), type(s.bus).__name__, s.bus.instance)
        try:
            yield
        finally:
            sweeper.cancel()
            await drain(s, 0.0)  # after SIGTERM the server's drain has done this already
            await s.publisher.close()
            await s.cluster.close()
            await s.log.close()

    routes += _web(settings)
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: _http_error})


def _web(settings: Settings) -> list[BaseRoute]:
    """The web app at ``/`` (with its settings at ``/config.json``) and the browser client
    at ``/client/``, when there."""
    root = Path(settings.web_dir) if settings.web_dir else Path(__file__).parents[1] / "clients"
    config = {"token_url": settings.web_token_url or None}

    async def web_config(request: Request) -> Response:
        return JSONResponse(config, headers={"cache-control": "no-store"})

    mounts: list[BaseRoute] = [Route("/config.json", web_config, methods=["GET"])]
    if (root / "js").is_dir():
        mounts.append(Mount("/client", StaticFiles(directory=root / "js")))
    if (root / "web").is_dir():
        mounts.append(Mount("/", StaticFiles(directory=root / "web", html=True)))
    return mounts


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods get the same JSON error body as everything else."""
    assert isinstance(exc, HTTPException)
    code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.BAD_FRAME}.get(exc.status_code,
                                                                   ErrorCode.BAD_FRAME)
    response = error_response(RoomlogError(code, str(exc.detail)))
    response.status_code = exc.status_code
    return response


async def _retention(s: Services) -> None:
    """Age-based trimming and idempotency expiry, every retention_interval.

    A sweep that finds the database down logs one warning for the outage (not one
    per sweep, and no traceback: the adapter's error says what failed) and one
    line when sweeps work again."""
    settings = s.settings
    failing = False
    while True:
        await asyncio.sleep(settings.retention_interval)
        now_ms = int(time.time() * 1000)
        try:
            if settings.retention_max_age > 0:
                dropped = await s.log.trim_before(now_ms - int(settings.retention_max_age * 1000))
                if dropped:
                    logger.info("retention dropped %d messages", dropped)
            await s.log.expire_ids(now_ms - int(settings.idempotency_ttl * 1000))
        except asyncio.CancelledError:
            raise
        except RoomlogError as err:
            if not failing:
                logger.warning("retention sweep skipped, the database is unavailable (%s); "
                               "retrying every %ss", err.message, settings.retention_interval)
            failing = True
            continue
        except Exception:
            logger.exception("retention sweep failed; next try in %ss",
                             settings.retention_interval)
            continue
        if failing:
            logger.warning("retention sweeps work again")
            failing = False
