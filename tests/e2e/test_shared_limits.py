"""Write tokens shared through the bus: with several instances or workers, a user's
write bucket lives in the bus (a row in PostgreSQL, a key in Redis), so taking a token
is a round trip. A connection's pipelined publishes must not wait for those round
trips one after another: before this, a session read its next frame only once the last
frame's token had come back, each commit carried one or two publishes, and two workers
on the PostgreSQL bus delivered 128,000 messages/s where one worker on the in-process
bus delivered 2.7 million (``loadtest/workers.py``, 2026-12-06).

The bucket row is held locked from the test, so the hub's token statement waits on it:
no clock is involved.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import asyncpg

from tests.e2e.support import TIMEOUT, Server, open_client, unique_room

PIPELINED = 12


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _waiting_takes(admin: asyncpg.Connection, database: str) -> None:
    """Until a statement on the bucket table waits for its row lock."""
    for _ in range(int(TIMEOUT / 0.02)):
        if await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                "AND wait_event_type = 'Lock' AND query LIKE '%rt_bus_buckets%'", database):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no token statement waited for the bucket row")


async def test_pipelined_publishes_take_their_tokens_together_and_keep_their_order(
        tmp_path: Path, pg_migrated: str) -> None:
    # A token statement gives up after bus_ping_timeout and the instance's own bucket
    # answers: long enough that the rounds meet the locked row, not the fallback.
    srv = await Server(tmp_path / "hub", pg_migrated, bus="postgres",
                      bus_ping_timeout=10).astart()
    room, user = unique_room(), f"p-{uuid.uuid4().hex[:8]}"
    database = pg_migrated.rsplit("/", 1)[1]
    client = await open_client(srv.ws_url, user=user)
    holder = await asyncpg.connect(_dsn(pg_migrated))
    admin = await asyncpg.connect(_dsn(pg_migrated))
    try:
        await client.publish(room, {"n": -1})  # the user's bucket row exists now
        held = holder.transaction()
        await held.start()
        rows = await holder.fetch("SELECT key FROM rt_bus_buckets WHERE key LIKE $1 FOR UPDATE",
                                  f"%:{user}")
        assert len(rows) == 1, rows
        ids = [client.next_id() for _ in range(PIPELINED)]
        frames = [{"type": "publish", "room": room, "data": {"n": n}, "id": ident}
                  for n, ident in enumerate(ids)]
        await client.send(frames[0])
        await _waiting_takes(admin, database)  # the first publish's token
        for frame in frames[1:]:
            await client.send(frame)
        # The connection reads on while its first write waits for a token: a ping sent
        # after the publishes is answered now. One after another, it waited too.
        await client.ping()
        await held.rollback()
        acks = [await client.expect("ack", id=ident) for ident in ids]
        seqs = [ack["seq"] for ack in acks]
        assert seqs == sorted(seqs) and len(set(seqs)) == PIPELINED, seqs  # the order sent
        # The tokens of the publishes read while the first one waited were taken in one
        # statement (the row keeps how many its last statement granted).
        granted = await admin.fetchval("SELECT granted FROM rt_bus_buckets WHERE key LIKE $1",
                                       f"%:{user}")
        assert granted == PIPELINED - 1
    finally:
        await holder.close()
        await admin.close()
        await client.close()
        assert await srv.astop() in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM
    srv.assert_clean_log()
