"""The one-statement append on PostgreSQL (``roomlog.log.pg_append``) when its
connection is lost while the statement waits: the outcome is unknown to the hub
(PostgreSQL may run and commit the statement after its client is gone), so a batch
whose every item has an id is retried through the general transaction, which finds
what did commit and answers ``duplicate``; another batch fails UNAVAILABLE, as a
lost COMMIT does. Either way every seq is stored once, gapless.

The log reaches PostgreSQL through a TCP relay of this test, cut while the
statement waits for the room's lock, which another connection holds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
import sqlalchemy as sa

from roomlog.errors import Unavailable
from roomlog.log import Append
from roomlog.log.sql import SqlLog

WAIT = 20.0  # seconds: upper bound of every wait of these tests


class Relay:
    """Forwards loopback TCP connections to ``port``; ``cut`` closes every one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Relay:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        self.cut()

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        return "127.0.0.1", self.server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def relayed(own_pg_url: str) -> AsyncIterator[tuple[SqlLog, Relay, str]]:
    url = sa.make_url(own_pg_url)
    async with Relay(url.port or 5432) as relay:
        host, port = relay.address
        log = SqlLog(url.set(host=host, port=port).render_as_string(hide_password=False),
                     migrate=True)
        await log.open()
        try:
            yield log, relay, own_pg_url
        finally:
            await log.close()


async def _hold_lock(url: str, room: str) -> asyncpg.Connection:
    """Another connection holding the room's row lock (released by closing it)."""
    u = sa.make_url(url)
    conn = await asyncpg.connect(host=u.host, port=u.port, user=u.username,
                                 password=u.password, database=u.database)
    await conn.execute("BEGIN")
    await conn.execute("SELECT 1 FROM rt_rooms WHERE name = $1 FOR UPDATE", room)
    return conn


async def _until_waiting(holder: asyncpg.Connection) -> None:
    """Until some other backend waits for a lock."""
    async with asyncio.timeout(WAIT):
        while not await holder.fetchval(  # noqa: ASYNC110 (polling the database)
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND pid <> pg_backend_pid()"):
            await asyncio.sleep(0.02)


async def _cut_while_waiting(log: SqlLog, relay: Relay, url: str, room: str,
                             items: list[Append]) -> asyncio.Task[object]:
    holder = await _hold_lock(url, room)
    task = asyncio.create_task(log.append(room, items, now_ms=2))
    await _until_waiting(holder)
    relay.cut()
    await asyncio.sleep(0.2)  # the log's side learns the connection is gone
    await holder.execute("COMMIT")  # the orphaned statement may now run and commit
    await holder.close()
    return task  # type: ignore[return-value]


async def test_a_batch_with_ids_is_stored_once_when_the_connection_is_lost(
        relayed: tuple[SqlLog, Relay, str], room: str) -> None:
    log, relay, url = relayed
    await log.append(room, [Append("u1", b"{}", "first")], now_ms=1)  # the row, cached
    task = await _cut_while_waiting(log, relay, url, room,
                                    [Append("u1", b'"a"', "a"), Append("u1", b'"b"', "b")])
    async with asyncio.timeout(WAIT):
        results, _ = await task  # type: ignore[misc]
    assert [r.seq for r in results] == [2, 3]
    page = await log.read(room, 0, 100)
    assert [(m.seq, m.raw) for m in page.messages] == [(1, b"{}"), (2, b'"a"'), (3, b'"b"')]


async def test_a_batch_without_ids_is_unavailable_when_the_connection_is_lost(
        relayed: tuple[SqlLog, Relay, str], room: str) -> None:
    log, relay, url = relayed
    await log.append(room, [Append("u1", b"{}", "first")], now_ms=1)
    task = await _cut_while_waiting(log, relay, url, room, [Append("u1", b'"x"')])
    with pytest.raises(Unavailable):
        async with asyncio.timeout(WAIT):
            await task
    await log.append(room, [Append("u1", b'"after"')], now_ms=3)
    page = await log.read(room, 0, 100)
    seqs = [m.seq for m in page.messages]
    assert seqs == list(range(1, len(seqs) + 1))  # gapless, whatever the lost one did
    assert page.messages[-1].raw == b'"after"'
    assert [m.raw for m in page.messages].count(b'"x"') <= 1
