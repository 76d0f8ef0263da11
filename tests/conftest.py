"""Fixtures shared by the whole suite: a throwaway PostgreSQL database per test
session, SQLite files in tmp dirs, a secret for tokens.

PostgreSQL is required (CI starts it): tests that need it fail, never skip,
when it is not reachable. Point ``ROOMLOG_TEST_PG`` elsewhere than the local
default (``postgresql://postgres@127.0.0.1:5432/postgres``) if needed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import asyncpg
import pytest

from tests.redis_server import RedisServer

if TYPE_CHECKING:
    from tests.backend_server import Backend

ADMIN_DSN = os.environ.get("ROOMLOG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "test-secret-" + "x" * 32


def _admin(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    # In a thread of its own: the fixture may be set up under a running event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


def _sa_url(dsn: str, database: str) -> str:
    base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards.

    Yields its SQLAlchemy URL (postgresql+asyncpg://...).
    """
    name = f"rt_test_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield _sa_url(ADMIN_DSN, name)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session's PostgreSQL URL; tests isolate themselves by room name."""
    return pg_database


@contextlib.contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new PostgreSQL database (its SQLAlchemy URL), dropped when the block ends."""
    name = f"rt_own_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield _sa_url(ADMIN_DSN, name)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def own_pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test alone, dropped afterwards: for a test that
    breaks its database (terminates its backends, drops it), which must not take
    the session's shared servers down with it, and for one whose webhook endpoints
    must not be picked up by the session's shared servers (a webhook lease goes to
    any instance on the database)."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/roomlog.db"


@pytest.fixture
def room() -> str:
    """A room name no other test uses."""
    return f"chat:t-{secrets.token_hex(6)}"


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server on a free port for one test, stopped afterwards
    (restart it, pause it: the machine's Redis is never touched)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def receiver() -> Iterator[Backend]:
    """A webhook receiver (a real HTTP server) answering 200 to every delivery; the
    test fails if any delivery's signature did not verify."""
    from tests.backend_server import Backend, Reply  # it imports this module

    backend = Backend().start()
    backend.answer = lambda call: Reply(body={})
    yield backend
    backend.stop()
    assert backend.bad_signatures == 0
