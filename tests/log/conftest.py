"""Fixtures of the Log tests: logs opened on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from roomlog.log.sql import SqlLog

LogFactory = Callable[..., Awaitable[SqlLog]]


async def stored_rooms(log: SqlLog, prefix: str) -> list[str]:
    """Names of the rooms with a row in the log's database, among those starting
    with ``prefix`` (read with an engine of its own, as an operator would)."""
    engine = create_async_engine(log.url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.text(
                "SELECT name FROM rt_rooms WHERE name LIKE :prefix ORDER BY name"),
                {"prefix": prefix + "%"})
            return [name for (name,) in rows]
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def make_log(request: pytest.FixtureRequest) -> AsyncIterator[LogFactory]:
    """Opens logs on one database; several logs stand for several processes."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    opened: list[SqlLog] = []

    async def make(**options: int) -> SqlLog:
        log = SqlLog(url, migrate=True, **options)
        await log.open()
        opened.append(log)
        return log

    yield make
    for log in opened:
        await log.close()
