"""Fixtures of the Log tests: logs opened on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from roomlog.log.sql import SqlLog

LogFactory = Callable[..., Awaitable[SqlLog]]


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
