"""Fixtures of the end-to-end suite (helpers live in ``tests/e2e/support.py``).

* ``server``: a SQLite-backed server with default settings, shared by the session
  (tests isolate themselves by room name).
* ``pg_server``: the same on PostgreSQL (``pg_database`` from tests/conftest.py,
  migrated first with ``python -m realtime migrate``: ``pg_migrated``).
* ``pg_pair``: two servers (two processes, two ports) on that one PostgreSQL
  database, shared by a test module: what two instances behind a load balancer see.
* ``make_server``: ``await make_server(outbox_max_messages=50, ...)`` starts a
  private server with per-test ``REALTIME_*`` settings (SQLite in tmp_path unless
  ``database_url`` is given); killed at the end of the test.
* ``http``: an ``httpx.AsyncClient``.

Each server's output is checked at teardown: an exception logged by the server
fails the test that used it (the shared ones fail at the end of the session).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.support import TIMEOUT, Server, migrate

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
    """The session's PostgreSQL URL, migrated with ``python -m realtime migrate``."""
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
