"""Targets of the connection tools (connect.py, idle.py, workers.py): the hub on
SQLite or PostgreSQL (``--workers`` processes), or the plain ``websockets``
baseline, started, measured and stopped the same way; and a subscriber that
connects and subscribes to one room."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import RawClient
from servers import (
    HOST,
    PgDatabase,
    Server,
    baseline_argv,
    free_port,
    hub_argv,
    hub_env,
    migrate,
)

__all__ = ["Refusals", "Target", "open_all", "raise_fd_limit", "start", "subscriber"]

SUBPROTOCOL = "roomlog.v1.json"


@dataclass
class Target:
    name: str  # "baseline", "hub-sqlite", "hub-postgres"
    server: Server
    port: int
    pg: PgDatabase | None = None

    async def stop(self) -> None:
        await self.server.stop()
        if self.pg is not None:
            await self.pg.drop()


async def start(name: str, workdir: Path, *, pg_dsn: str, core: str | None,
                workers: int = 1, env: dict[str, str] | None = None) -> Target:
    """Start ``name`` (baseline, hub-sqlite or hub-postgres) and wait until it is ready."""
    port = free_port()
    pg = None
    if name == "baseline":
        server = Server(name, baseline_argv(port), port, workdir, core=core)
    else:
        if name == "hub-postgres":
            pg = PgDatabase(pg_dsn)
            await pg.create()
            settings = hub_env(pg.url)
            try:
                await migrate(settings)
            except BaseException:
                await pg.drop()  # nothing else holds it yet
                raise
        else:
            settings = hub_env(f"sqlite+aiosqlite:///{workdir}/{name}.db")
        settings |= {"ROOMLOG_WORKERS": str(workers)} | (env or {})
        server = Server(name, hub_argv(port), port, workdir, env=settings, core=core)
    target = Target(name, server, port, pg)
    try:
        await server.ready()
    except BaseException:
        await target.stop()
        raise
    return target


class Refusals:
    """Handshakes a saturated hub refused with 503 (each retried after ``BUSY_WAIT``)."""

    count = 0


BUSY_WAIT = 1.0  # seconds before a handshake refused with 503 is tried again


async def subscriber(port: int, token: str, room: str) -> RawClient:
    """A client past ``connect`` and ``subscribe`` (its ``subscribed`` frame read); a
    handshake refused with 503 (admission) is counted and tried again."""
    while True:
        try:
            return await _subscriber(port, token, room)
        except ConnectionError as exc:
            if "HTTP/1.1 503" not in str(exc):
                raise
            Refusals.count += 1
            await asyncio.sleep(BUSY_WAIT)


async def _subscriber(port: int, token: str, room: str) -> RawClient:
    client = await RawClient.open(HOST, port, subprotocol=SUBPROTOCOL)
    try:
        client.send_json({"type": "connect", "token": token})
        client.send_json({"type": "subscribe", "room": room, "id": "s"})
        await client.expect("subscribed")
    except BaseException:
        await client.close()
        raise
    return client


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's file-descriptor limit (children inherit it) to ``wanted``
    if allowed; the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in ((max(wanted, hard), max(wanted, hard)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
            return limit[0]
        except (ValueError, OSError):
            continue
    return soft


async def open_all(port: int, count: int, concurrency: int, token: Callable[[int], str],
                   room: str, first: int = 0) -> list[RawClient]:
    """``count`` subscribers, ``concurrency`` at a time; ``token(i)`` for the i-th (users
    of their own: per-user connection limits never refuse them)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> RawClient:
        async with gate:
            return await subscriber(port, token(i), room)

    return list(await asyncio.gather(*(one(first + i) for i in range(count))))
