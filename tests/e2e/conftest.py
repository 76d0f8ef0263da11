"""Fixtures of the end-to-end suite (helpers live in ``tests/e2e/support.py``).

* ``server``: a SQLite-backed server with default settings, shared by the session
  (tests isolate themselves by room name).
* ``pg_server``: the same on PostgreSQL (``pg_database`` from tests/conftest.py,
  migrated first with ``python -m roomlog migrate``: ``pg_migrated``).
* ``pg_pair``: two servers (two processes, two ports) on that one PostgreSQL
  database, shared by a test module: what two instances behind a load balancer see.
* ``make_server``: ``await make_server(outbox_max_messages=50, ...)`` starts a
  private server with per-test ``ROOMLOG_*`` settings (SQLite in tmp_path unless
  ``database_url`` is given); killed at the end of the test.
* ``http``: an ``httpx.AsyncClient``.

Each server's output is checked at teardown: an exception logged by the server
fails the test that used it (the shared ones fail at the end of the session).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.support import TIMEOUT, Server, migrate
from tests.redis_server import RedisServer

MakeServer = Callable[..., Awaitable[Server]]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("server-sqlite"))
    srv.start()
    yield srv
    srv.stop()
    srv.assert_clean_log()


@pytest.fixture(scope="session")
def pg_migrated(pg_database: str) -> str:
    """The session's PostgreSQL URL, migrated with ``python -m roomlog migrate``."""
    migrate(pg_database)
    return pg_database


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory, pg_migrated: str) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("server-pg"), pg_migrated)
    srv.start()
    yield srv
    srv.stop()
    srv.assert_clean_log()


@pytest.fixture(scope="module")
def pg_pair(tmp_path_factory: pytest.TempPathFactory,
            pg_migrated: str) -> Iterator[tuple[Server, Server]]:
    pair = [Server(tmp_path_factory.mktemp(f"server-pg-pair{i}"), pg_migrated) for i in (1, 2)]
    try:
        for srv in pair:  # both start at once, then wait for both
            srv.launch()
        for srv in pair:
            srv.wait_ready()
        yield pair[0], pair[1]
    finally:
        for srv in pair:
            srv.stop()
    for srv in pair:
        srv.assert_clean_log()


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[MakeServer]:
    made: list[Server] = []

    async def make(database_url: str | None = None, **settings: object) -> Server:
        srv = Server(tmp_path / f"server-{len(made)}", database_url, **settings)
        made.append(srv)
        return await srv.astart()

    yield make
    for srv in made:
        await asyncio.to_thread(srv.kill)
    for srv in made:
        srv.assert_clean_log()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        yield client


# ---------------------------------------------------------------------------
# Several instances on one Redis (tests/e2e/test_cluster.py)
#
# ``cluster``: three servers on the session's PostgreSQL database and a private
# Redis (``redis_server``, which a test may stop, restart or pause), started at
# once. Short bus intervals keep failure detection and presence expiry quick.
# Stopped with SIGTERM at the end (three at once), then their logs are checked.

CLUSTER_SIZE = 3
CLUSTER_SETTINGS: dict[str, object] = {
    "bus_ping_interval": 0.2,
    "bus_ping_timeout": 0.5,
    "bus_poll_interval": 0.2,
    "bus_reconnect_max": 0.5,
    "presence_ttl": 2,
}


def _stop_all(servers: list[Server]) -> None:
    for srv in servers:  # SIGTERM to every one, then wait for each
        if srv.proc is not None and srv.proc.poll() is None:
            srv.proc.send_signal(signal.SIGTERM)
    for srv in servers:
        srv.stop()


@pytest.fixture
def cluster(tmp_path: Path, pg_migrated: str, redis_server: RedisServer) -> Iterator[list[Server]]:
    servers = [Server(tmp_path / f"instance-{i}", pg_migrated, redis_url=redis_server.url,
                      **CLUSTER_SETTINGS) for i in range(CLUSTER_SIZE)]
    try:
        for srv in servers:
            srv.launch()
        for srv in servers:
            srv.wait_ready()
        yield servers
    finally:
        redis_server.resume()  # a test that failed while Redis was paused
        _stop_all(servers)
    for srv in servers:
        srv.assert_clean_log()
