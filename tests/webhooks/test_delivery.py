"""One endpoint's deliverer against a real log (SQLite) and a real receiver (an HTTP
server in a thread, verifying signatures with ``standardwebhooks``): what it costs
the database per delivery."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import sqlalchemy as sa

from roomlog.log import Append
from roomlog.log.sql import SqlLog
from roomlog.log.webhook_schema import webhook_attempts
from roomlog.log.webhooks import SqlWebhooks
from roomlog.outbound.http11 import Http11Outbound
from roomlog.webhooks.delivery import EndpointStats, EndpointWorker, Tuning
from roomlog.webhooks.endpoint import Endpoint, Secret
from tests.backend_server import Backend

WAIT = 20.0  # upper bound for what a working deliverer does at once


async def attempt_rows_written(log: SqlLog) -> int:
    """Rows ever inserted into the attempts table (ids are never reused: pruning
    deletes the oldest)."""
    async def work(conn: sa.ext.asyncio.AsyncConnection) -> int:
        return int(await conn.scalar(sa.select(sa.func.coalesce(
            sa.func.max(webhook_attempts.c.id), 0))) or 0)

    return await log.run(work, write=False)


async def test_a_healthy_endpoint_does_not_write_a_row_per_delivery(
        tmp_path: Path, receiver: Backend) -> None:
    log = SqlLog(f"sqlite+aiosqlite:///{tmp_path}/hub.db", migrate=True)
    await log.open()
    store = SqlWebhooks(log)
    room = "chat:d-" + secrets.token_hex(4)
    endpoint = Endpoint(id="wh_" + secrets.token_hex(8), url=receiver.url,
                        description="", rooms=(room,), events=(),
                        secrets=(Secret(receiver.secret, 1),), enabled=True, batch_max=1,
                        created_ms=1, updated_ms=1)
    await store.create(endpoint)
    saves = 0
    saved = asyncio.Event()
    save = store.save

    async def counted(*args: object, **kwargs: object) -> bool:
        nonlocal saves
        try:
            return await save(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            saves += 1
            saved.set()

    store.save = counted  # type: ignore[method-assign]
    outbound = Http11Outbound(allow_private=True)
    worker = EndpointWorker(endpoint, store, log, outbound,
                            Tuning(flush_interval=0.01, poll_interval=60.0, keep_attempts=5),
                            holder=None, stats=EndpointStats(), on_expired=_never)
    await worker.start()
    try:
        for n in range(1, 21):  # one delivery per cursor flush, as at a steady rate
            _, stored = await log.append(room, [Append("u", b'{"n":1}')], now_ms=1)
            worker.offer(room, stored)
            flushed = saves
            async with asyncio.timeout(WAIT):  # delivered, and its cursor saved
                while worker.stats.delivered < n or saves <= flushed:
                    saved.clear()
                    await saved.wait()
    finally:
        await worker.stop()
        await outbound.close()
    assert receiver.count() == 20
    assert [c.body["messages"][0]["seq"] for c in receiver.calls] == list(range(1, 21))
    # 20 deliveries, 20 cursor flushes: the newest 5 attempts are what operators read,
    # written once a second (and at the stop), not a row per delivery and flush
    assert len(await store.attempts(endpoint.id, 100)) == 5
    assert await attempt_rows_written(log) < 20
    await log.close()


async def _never(*args: object) -> None:
    raise AssertionError("no room may pass the horizon here")
