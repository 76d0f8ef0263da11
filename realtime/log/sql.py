"""The SQL adapter of the Log port: SQLAlchemy Core on asyncpg or aiosqlite.

The room row is the lock. On PostgreSQL an append takes ``SELECT ... FOR
UPDATE`` on it, so appenders in any number of processes queue per room; on
SQLite every write transaction is ``BEGIN IMMEDIATE`` (one writer per file, so
SQLite serves one server process). Reads run in a REPEATABLE READ snapshot so
a page and the head it reports belong together.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from realtime.errors import Unavailable
from realtime.log import Append, Appended, Page, RoomInfo
from realtime.log import migrate as migrations
from realtime.log.schema import dedup, messages, rooms
from realtime.protocol import Message

__all__ = ["SqlLog", "new_epoch"]

logger = logging.getLogger(__name__)


def new_epoch() -> str:
    """A fresh random epoch: a recreated database never reuses an old one."""
    return secrets.token_hex(6)


class SqlLog:
    def __init__(
        self,
        url: str,
        *,
        retention_max_messages: int = 0,
        migrate: bool = False,
        pool_size: int = 10,
    ) -> None:
        self.url = url
        self._max_messages = retention_max_messages
        self._migrate = migrate
        self._pool_size = pool_size
        self._sqlite = url.startswith("sqlite")
        self._room_ids: dict[str, int] = {}
        # SQLite has one writer per file; queue writers here rather than in busy_timeout.
        self._write_lock = asyncio.Lock() if self._sqlite else None
        self._reader: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        if self._sqlite:
            self._writer = self._sqlite_engine("BEGIN IMMEDIATE", pool_size=1)
            self._reader = self._sqlite_engine("BEGIN", pool_size=self._pool_size)
        else:
            engine = create_async_engine(
                self.url, pool_size=self._pool_size, max_overflow=self._pool_size
            )
            self._writer = self._reader = engine
        try:
            if self._migrate:
                await migrations.upgrade(self._writer)
            current, head = await migrations.pending(self._writer)
        except (SQLAlchemyError, OSError) as exc:
            await self.close()
            raise SystemExit(f"cannot reach the database {self._safe_url}: {exc}") from None
        if current != head:
            await self.close()
            raise SystemExit(
                f"the database {self._safe_url} is at schema revision {current or 'none'}, "
                f"this server needs {head}: run `realtime migrate` first"
            )

    async def close(self) -> None:
        for engine in {self._reader, self._writer} - {None}:
            assert engine is not None
            await engine.dispose()
        self._reader = self._writer = None

    @property
    def _safe_url(self) -> str:
        return sa.make_url(self.url).render_as_string(hide_password=True)

    def _sqlite_engine(self, begin: str, *, pool_size: int) -> AsyncEngine:
        engine = create_async_engine(self.url, pool_size=pool_size, max_overflow=0)

        @event.listens_for(engine.sync_engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we say BEGIN ourselves, below
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        return engine

    # -- transactions ----------------------------------------------------------

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        assert self._writer is not None, "open() the log first"
        try:
            if self._write_lock is None:
                async with self._writer.begin() as conn:
                    yield conn
            else:
                async with self._write_lock, self._writer.begin() as conn:
                    yield conn
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("log write failed: %s", exc)
            raise Unavailable("the database is unavailable; retry with the same id") from exc

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        assert self._reader is not None, "open() the log first"
        try:
            async with self._reader.connect() as conn:
                if not self._sqlite:
                    await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    yield conn
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("log read failed: %s", exc)
            raise Unavailable("the database is unavailable") from exc

    async def _room_id(self, name: str) -> int:
        """The room's row id, creating the row on first use (rows are never deleted)."""
        room_id = self._room_ids.get(name)
        if room_id is not None:
            return room_id
        async with self._read() as conn:
            room_id = await conn.scalar(sa.select(rooms.c.id).where(rooms.c.name == name))
        if room_id is None:
            values = dict(name=name, epoch=new_epoch(), head_seq=0, trimmed_seq=0,
                          created_at=int(time.time() * 1000))
            insert = (sqlite.insert(rooms) if self._sqlite else postgresql.insert(rooms))
            async with self._write() as conn:
                await conn.execute(insert.values(values).on_conflict_do_nothing())
                room_id = await conn.scalar(sa.select(rooms.c.id).where(rooms.c.name == name))
        assert room_id is not None
        self._room_ids[name] = room_id
        return int(room_id)

    async def _lock(self, conn: AsyncConnection, room_id: int) -> tuple[str, int, int]:
        """Lock the room's row for this transaction: (epoch, head, trimmed)."""
        stmt = sa.select(rooms.c.epoch, rooms.c.head_seq, rooms.c.trimmed_seq).where(
            rooms.c.id == room_id
        )
        epoch, head, trimmed = (await conn.execute(stmt.with_for_update())).one()
        return str(epoch), int(head), int(trimmed)

    # -- the port ------------------------------------------------------------

    async def append(
        self, room: str, items: Sequence[Append], *, now_ms: int
    ) -> tuple[list[Appended], list[Message]]:
        room_id = await self._room_id(room)
        results: list[Appended] = []
        stored: list[Message] = []
        async with self._write() as conn:
            epoch, head, trimmed = await self._lock(conn, room_id)
            known = await self._known_ids(conn, room_id, items)
            rows: list[dict[str, Any]] = []
            ids: list[dict[str, Any]] = []
            for item in items:
                key = (item.actor, item.id)
                if item.id is not None and key in known:
                    seq, ts = known[key]
                    results.append(Appended(seq, epoch, ts, duplicate=True))
                    continue
                head += 1
                rows.append(dict(room_id=room_id, seq=head, ts=now_ms, author=item.actor,
                                 data=item.raw))
                stored.append(Message(room, head, epoch, now_ms, item.actor, item.raw))
                results.append(Appended(head, epoch, now_ms))
                if item.id is not None:
                    known[key] = (head, now_ms)
                    ids.append(dict(room_id=room_id, actor=item.actor, client_id=item.id,
                                    seq=head, ts=now_ms))
            if rows:
                await conn.execute(messages.insert(), rows)
                if ids:
                    await conn.execute(dedup.insert(), ids)
                if self._max_messages and head - self._max_messages > trimmed:
                    trimmed = head - self._max_messages
                    await conn.execute(messages.delete().where(
                        messages.c.room_id == room_id, messages.c.seq <= trimmed))
                await conn.execute(rooms.update().where(rooms.c.id == room_id).values(
                    head_seq=head, trimmed_seq=trimmed))
        return results, stored

    async def _known_ids(
        self, conn: AsyncConnection, room_id: int, items: Sequence[Append]
    ) -> dict[tuple[str, str | None], tuple[int, int]]:
        wanted = {item.id for item in items if item.id is not None}
        if not wanted:
            return {}
        stmt = sa.select(dedup.c.actor, dedup.c.client_id, dedup.c.seq, dedup.c.ts).where(
            dedup.c.room_id == room_id, dedup.c.client_id.in_(wanted))
        rows = await conn.execute(stmt)
        return {(actor, cid): (seq, ts) for actor, cid, seq, ts in rows}

    async def read(self, room: str, after: int, limit: int) -> Page:
        room_id = await self._room_id(room)
        async with self._read() as conn:
            info = await self._info(conn, room, room_id)
            stmt = (
                sa.select(messages.c.seq, messages.c.ts, messages.c.author, messages.c.data)
                .where(messages.c.room_id == room_id, messages.c.seq > after)
                .order_by(messages.c.seq)
                .limit(limit)
            )
            rows = await conn.execute(stmt)
            found = [Message(room, seq, info.epoch, ts, author, bytes(data))
                     for seq, ts, author, data in rows]
        return Page(info, after, found)

    async def info(self, room: str) -> RoomInfo:
        room_id = await self._room_id(room)
        async with self._read() as conn:
            return await self._info(conn, room, room_id)

    async def _info(self, conn: AsyncConnection, room: str, room_id: int) -> RoomInfo:
        stmt = sa.select(rooms.c.epoch, rooms.c.head_seq, rooms.c.trimmed_seq).where(
            rooms.c.id == room_id)
        epoch, head, trimmed = (await conn.execute(stmt)).one()
        return RoomInfo(room, epoch, head, trimmed)

    async def reset(self, room: str) -> RoomInfo:
        room_id = await self._room_id(room)
        epoch = new_epoch()
        async with self._write() as conn:
            await self._lock(conn, room_id)
            await conn.execute(messages.delete().where(messages.c.room_id == room_id))
            await conn.execute(dedup.delete().where(dedup.c.room_id == room_id))
            await conn.execute(rooms.update().where(rooms.c.id == room_id).values(
                epoch=epoch, head_seq=0, trimmed_seq=0))
        return RoomInfo(room, epoch, 0, 0)

    async def trim_before(self, cutoff_ms: int) -> int:
        """Age-based retention, one short transaction per room with old messages."""
        stmt = (sa.select(messages.c.room_id, sa.func.max(messages.c.seq))
                .where(messages.c.ts < cutoff_ms).group_by(messages.c.room_id))
        async with self._read() as conn:
            old = list(await conn.execute(stmt))
        dropped = 0
        for room_id, upto in old:
            async with self._write() as conn:
                _, _, trimmed = await self._lock(conn, room_id)
                result = await conn.execute(messages.delete().where(
                    messages.c.room_id == room_id, messages.c.seq <= upto))
                dropped += result.rowcount
                await conn.execute(rooms.update().where(rooms.c.id == room_id).values(
                    trimmed_seq=max(trimmed, upto)))
        return dropped

    async def expire_ids(self, cutoff_ms: int) -> int:
        async with self._write() as conn:
            result = await conn.execute(dedup.delete().where(dedup.c.ts < cutoff_ms))
        return result.rowcount

    async def check(self) -> None:
        async with self._read() as conn:
            await conn.execute(sa.text("SELECT 1"))
