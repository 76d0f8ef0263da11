"""The SQL adapter of the Log port: SQLAlchemy Core on asyncpg or aiosqlite.

The room row is the lock. On PostgreSQL an append takes ``SELECT ... FOR
UPDATE`` on it, so appenders in any number of processes queue per room; on
SQLite every write transaction is ``BEGIN IMMEDIATE`` (one writer per file, so
SQLite serves one server process). Reads run in a REPEATABLE READ snapshot so
a page and the head it reports belong together.

Every operation runs in a task of its own (:mod:`roomlog.log.detached`): a
caller's cancellation (a client unsubscribing or going away) ends its wait,
never a transaction half way, so no connection is ever returned to the pool, or
left behind, inside a transaction.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from roomlog.errors import Refused, Unavailable, describe
from roomlog.log import (
    Append,
    Appended,
    Page,
    Placed,
    RoomInfo,
    RoomTxn,
    append_in,
    pg_append,
    sqlite_append,
    sqlite_driver,
)
from roomlog.log import migrate as migrations
from roomlog.log.detached import Detached
from roomlog.log.pool import check_on_checkout
from roomlog.log.rows import RoomRows, lock_room
from roomlog.log.schema import dedup, messages, meta, rooms, snapshots
from roomlog.log.txn import SqlTxn, flush_all, lock_rooms, prefetch
from roomlog.protocol import Message

__all__ = ["SqlLog", "new_epoch"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_HEADS_CHUNK = 500  # room names per query of `heads`
_PING_AFTER = 5.0  # seconds in the pool after which a connection is pinged before use
_WARN_EVERY = 10.0  # seconds between warnings of a failing database (an outage is one story)


_PAGE = (sa.select(messages.c.seq, messages.c.ts, messages.c.author, messages.c.data)
         .where(messages.c.room_id == sa.bindparam("rid"), messages.c.seq > sa.bindparam("after"))
         .order_by(messages.c.seq)
         .limit(sa.bindparam("n")))


def new_epoch() -> str:
    """A fresh random epoch (a room's reset): never one a client holds."""
    return secrets.token_hex(6)


class SqlLog:
    def __init__(
        self,
        url: str,
        *,
        retention_max_messages: int = 0,
        migrate: bool = False,
        pool_size: int = 10,
        pool_overflow: int = 10,
        pool_timeout: float = 10.0,
        close_timeout: float = 10.0,
        room_cache_size: int = 10_000,
    ) -> None:
        self.url = url
        self._max_messages = retention_max_messages
        self._migrate = migrate
        self._pool_size = pool_size
        self._pool_overflow = pool_overflow
        self._pool_timeout = pool_timeout
        self._sqlite = url.startswith("sqlite")
        self._rows = RoomRows(sqlite_dialect=self._sqlite, cache_size=room_cache_size)
        # SQLite has one writer per file; queue writers here rather than in busy_timeout.
        self._write_lock = asyncio.Lock() if self._sqlite else None
        self._reader: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None
        self._warned_at = -_WARN_EVERY
        self._unwarned = 0  # failures since the last warning
        self._detached = Detached()
        self._close_timeout = close_timeout
        self._probe: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        if self._sqlite:
            self._writer = self._sqlite_engine("BEGIN IMMEDIATE", pool_size=1)
            self._reader = self._sqlite_engine("BEGIN", pool_size=self._pool_size)
        else:
            # a connection cut by a database restart or failover is replaced before
            # use instead of failing the write that drew it (``roomlog.log.pool``)
            engine = create_async_engine(
                self.url, pool_size=self._pool_size, max_overflow=self._pool_overflow,
                pool_timeout=self._pool_timeout,
            )
            check_on_checkout(engine, ping_after=_PING_AFTER)
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
                f"this server needs {head}: run `roomlog migrate` first"
            )
        async with self._reader.connect() as conn:  # a read: no write lock on SQLite
            await self._rows.load_salt(conn)

    @property
    def cached_rooms(self) -> int:
        """Room ids held in memory (at most ``room_cache_size``)."""
        return self._rows.cached

    async def close(self) -> None:
        """Let operations in flight finish (up to ``close_timeout``), then disconnect."""
        await self._detached.settle(self._close_timeout)
        for engine in {self._reader, self._writer} - {None}:
            assert engine is not None
            await engine.dispose()
        self._reader = self._writer = None

    @property
    def _safe_url(self) -> str:
        return sa.make_url(self.url).render_as_string(hide_password=True)

    def _sqlite_engine(self, begin: str, *, pool_size: int) -> AsyncEngine:
        url = sa.make_url(self.url)
        options: dict[str, Any] = {}
        if url.database and url.database != ":memory:" and not url.query:
            options["async_creator"] = sqlite_driver.connector(url.database)  # one hop each
        engine = create_async_engine(self.url, pool_size=pool_size, max_overflow=0, **options)

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
                self._detached.check()
                async with self._writer.begin() as conn:
                    yield conn
            else:
                async with self._write_lock:  # queued here, not in busy_timeout
                    self._detached.check()
                    async with self._writer.begin() as conn:
                        yield conn
        except UnicodeError as exc:  # a driver cannot encode a value (a lone surrogate)
            self._warn("write refused", exc)
            raise Refused(f"the database refused the write: {exc}") from exc
        except (SQLAlchemyError, OSError) as exc:
            if _refused(exc):  # what was written is at fault, not the database
                self._warn("write refused", exc)
                raise Refused(f"the database refused the write: {_first_line(exc)}") from exc
            self._warn("write", exc)
            raise Unavailable("the database is unavailable; retry with the same id") from exc

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        assert self._reader is not None, "open() the log first"
        self._detached.check()
        try:
            async with self._reader.connect() as conn:
                if not self._sqlite:
                    await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    yield conn
        except (SQLAlchemyError, OSError) as exc:
            self._warn("read", exc)
            raise Unavailable("the database is unavailable") from exc

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]], *,
                  write: bool) -> T:
        """Run ``work`` in one transaction on this log's database, for another table of
        it (the ban list, ``roomlog/log/bans.py``): the same engines, the same SQLite
        writer queue, Unavailable when the database fails, and, like every operation
        of the log, out of reach of its caller's cancellation (``detached.py``)."""
        async def operation() -> T:
            async with self._write() if write else self._read() as conn:
                return await work(conn)

        return await self._detached.run(operation())

    def _warn(self, what: str, exc: BaseException) -> None:
        """One warning per ``_WARN_EVERY`` seconds while the database fails, saying
        how many failures it stands for: a thousand clients retrying during an
        outage must not bury the log."""
        now = time.monotonic()
        if now - self._warned_at < _WARN_EVERY:
            self._unwarned += 1
            return
        more = f" ({self._unwarned} more failures since the last warning)" if self._unwarned else ""
        logger.warning("log %s failed: %s%s", what, describe(exc), more)
        self._warned_at, self._unwarned = now, 0

    # -- the port ------------------------------------------------------------

    async def transact(
        self, room: str, now_ms: int, work: Callable[[RoomTxn], Awaitable[T]]
    ) -> tuple[T, dict[str, list[Message]]]:
        return await self._detached.run(
            _once_more(lambda last: self._transact(room, now_ms, work, last)))

    async def _transact(
        self, room: str, now_ms: int, work: Callable[[RoomTxn], Awaitable[T]], last: bool
    ) -> tuple[T, dict[str, list[Message]]]:
        async with self._write() as conn:
            txn = SqlTxn(conn, room, now_ms, rows=self._rows, sqlite_dialect=self._sqlite,
                         max_messages=self._max_messages)
            async with _first(last):
                await txn.begin()
            value = await work(txn)
            stored = await txn.flush()
        for name, room_id in txn.created.items():  # committed: now others may see them
            self._rows.remember(name, room_id)
        return value, stored

    async def transact_many(
        self, names: Sequence[str], now_ms: int,
        work: Callable[[Sequence[RoomTxn]], Awaitable[T]],
        prior: Mapping[str, Iterable[tuple[str, str]]] | None = None,
    ) -> tuple[T, dict[str, list[Message]]]:
        return await self._detached.run(_once_more(
            lambda last: self._transact_many(names, now_ms, work, prior or {}, last)))

    async def _transact_many(
        self, names: Sequence[str], now_ms: int,
        work: Callable[[Sequence[RoomTxn]], Awaitable[T]],
        prior: Mapping[str, Iterable[tuple[str, str]]], last: bool,
    ) -> tuple[T, dict[str, list[Message]]]:
        async with self._write() as conn:
            others: dict[str, list[tuple[str, bytes]]] = {}
            txns = [SqlTxn(conn, name, now_ms, rows=self._rows, sqlite_dialect=self._sqlite,
                           max_messages=self._max_messages, others=others)
                    for name in dict.fromkeys(names)]
            async with _first(last):
                await lock_rooms(txns)
            await prefetch(txns, prior)
            value = await work(txns)
            stored = await flush_all(txns, others)
        for txn in txns:  # committed: now others may see them
            for name, room_id in txn.created.items():
                self._rows.remember(name, room_id)
        return value, stored

    async def append(
        self, room: str, items: Sequence[Append], *, now_ms: int
    ) -> tuple[list[Appended], list[Message]]:
        results, stored = await self.append_many({room: items}, now_ms=now_ms)
        return results[room], stored.get(room, [])

    async def append_many(
        self, batches: Mapping[str, Sequence[Append]], *, now_ms: int
    ) -> tuple[dict[str, list[Appended]], dict[str, list[Message]]]:
        """Rooms whose row ids are cached (every room after its first write) take one
        statement on PostgreSQL (``pg_append``) or one trip to SQLite's thread
        (``sqlite_append``); the others, and whatever those leave, the general
        transaction. Rooms without a known row get one first (``_make_rows``)."""
        ids = self._cached_ids(batches)
        if len(ids) < len(batches):
            missing = sorted(room for room in batches if room not in ids)
            await self._detached.run(_once_more(lambda last: self._make_rows(missing, last)))
            ids = self._cached_ids(batches)
        if len(ids) == len(batches):
            by_id = {ids[room]: items for room, items in batches.items()}
            if self._sqlite:
                found = await self._detached.run(self._append_in_thread(by_id, now_ms))
            elif pg_append.fits(by_id, self._max_messages):
                found = await self._detached.run(self._append_one_statement(by_id, now_ms))
            else:
                found = None
            if found is not None:
                results: dict[str, list[Appended]] = {}
                stored: dict[str, list[Message]] = {}
                for room in batches:
                    if ids[room] not in found:
                        continue
                    epoch, results[room], new = found[ids[room]]
                    if new:
                        stored[room] = [Message(room, seq, epoch, now_ms, item.actor, item.raw)
                                        for item, seq in new]
                rest = {room: batches[room] for room in batches if room not in results}
                if rest:  # a cached id without a row: never (rows are never deleted)
                    more, more_stored = await self._append_in_transaction(rest, now_ms)
                    results |= more
                    stored |= more_stored
                return results, stored
        return await self._append_in_transaction(batches, now_ms)

    def _cached_ids(self, names: Iterable[str]) -> dict[str, int]:
        return {name: room_id for name in names
                if (room_id := self._rows.cached_id(name)) is not None}

    async def _make_rows(self, names: list[str], last: bool) -> None:
        """Find or make the rows of ``names`` (sorted) and cache their ids, in one short
        transaction of a few statements whatever their number: a room's first write
        through the general transaction made its row there, several round trips per
        room, and a burst of new rooms (32 at the start of a webhook benchmark) held
        commits for 20-35 ms on PostgreSQL. A plain append always writes, so its rooms'
        rows are made before it; if the append then fails, the room stays empty, as one
        never written (its epoch is the one readers were given: ``RoomRows.epoch_for``)."""
        async with self._write() as conn:
            async with _first(last):
                found = await self._rows.find_many(conn, names)  # cached: committed rows
            rest = [name for name in names if name not in found]
            made = await self._rows.create_many(conn, rest) if rest else {}
            for name in rest:  # made meanwhile by another transaction: committed now
                if name not in made:
                    await self._rows.find(conn, name)
        for name, room_id in made.items():  # committed: now others may see them
            self._rows.remember(name, room_id)

    async def _append_in_transaction(
        self, batches: Mapping[str, Sequence[Append]], now_ms: int
    ) -> tuple[dict[str, list[Appended]], dict[str, list[Message]]]:
        async def work(txns: Sequence[RoomTxn]) -> dict[str, list[Appended]]:
            return {txn.room: await append_in(txn, batches[txn.room]) for txn in txns}

        return await self.transact_many(
            list(batches), now_ms, work,
            prior={room: [(i.actor, i.id) for i in items if i.id is not None]
                   for room, items in batches.items()})

    async def _append_one_statement(self, by_id: dict[int, Sequence[Append]], now_ms: int
                                    ) -> Placed | None:
        """``append_many`` of rooms by row id in one statement (``roomlog.log.pg_append``),
        or None when the general transaction must do it (and report what fails there):
        an id was seen before, no connection was had, or the statement failed with
        nothing written. A room missing from the answer got
        nothing (its row is gone). A connection lost while the statement ran leaves
        its outcome unknown: a batch whose every item has an id takes the general path
        (it answers ``duplicate`` for what did commit); another fails Unavailable, as a
        lost COMMIT does."""
        assert self._writer is not None, "open() the log first"
        self._detached.check()
        sent = False
        try:
            async with self._writer.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                sent = True
                heads = await pg_append.append(driver, by_id, now_ms=now_ms,
                                               max_messages=self._max_messages)
        except pg_append.Taken:
            return None
        except Exception as exc:
            if not sent or pg_append.not_written(exc) or all(
                    i.id is not None for items in by_id.values() for i in items):
                return None  # no connection, or nothing written, or ids make it exact
            self._warn("write", exc)
            raise Unavailable("the database is unavailable; retry with the same id") from exc
        placed: Placed = {}
        for room_id, (epoch, base) in heads.items():
            new = [(item, base + n) for n, item in enumerate(by_id[room_id], 1)]
            placed[room_id] = (epoch, [Appended(seq, epoch, now_ms) for _, seq in new], new)
        return placed

    async def _append_in_thread(self, by_id: dict[int, Sequence[Append]], now_ms: int
                                ) -> Placed | None:
        """``append_many`` of rooms by row id in one trip to SQLite's thread
        (``roomlog.log.sqlite_append``), or None if it failed: it rolled back, and the
        general transaction does it (and reports what fails there)."""
        assert self._writer is not None and self._write_lock is not None, "open() first"
        async with self._write_lock:
            self._detached.check()
            try:
                async with self._writer.connect() as conn:
                    driver = (await conn.get_raw_connection()).driver_connection
                    return await sqlite_driver.in_thread(driver, functools.partial(
                        sqlite_append.append, batches=by_id, now_ms=now_ms,
                        max_messages=self._max_messages))
            except Exception:  # no connection, or rolled back in the thread
                return None

    async def read(self, room: str, after: int, limit: int) -> Page:
        return await self._detached.run(
            _once_more(lambda last: self._read_page(room, after, limit, last)))

    async def _read_page(self, room: str, after: int, limit: int, last: bool) -> Page:
        async with self._read() as conn:
            async with _first(last):
                info, room_id = await self._rows.info(conn, room)
            if room_id is None:  # never written: empty, and it stays without a row
                return Page(info, after, [])
            rows = await conn.execute(_PAGE, {"rid": room_id, "after": after, "n": limit})
            found = [Message(room, seq, info.epoch, ts, author, bytes(data))
                     for seq, ts, author, data in rows]
        return Page(info, after, found)

    async def info(self, room: str) -> RoomInfo:
        return await self._detached.run(_once_more(lambda last: self._info_of(room, last)))

    async def _info_of(self, room: str, last: bool) -> RoomInfo:
        async with self._read() as conn, _first(last):
            info, _ = await self._rows.info(conn, room)
        return info

    async def heads(self, names: Sequence[str]) -> dict[str, RoomInfo]:
        return await self._detached.run(self._heads(names))

    async def _heads(self, names: Sequence[str]) -> dict[str, RoomInfo]:
        found: dict[str, RoomInfo] = {}
        columns = (rooms.c.name, rooms.c.epoch, rooms.c.head_seq, rooms.c.trimmed_seq)
        async with self._read() as conn:
            for start in range(0, len(names), _HEADS_CHUNK):
                chunk = list(names[start:start + _HEADS_CHUNK])
                stmt = sa.select(*columns).where(rooms.c.name.in_(chunk))
                for name, epoch, head, trimmed in await conn.execute(stmt):
                    found[name] = RoomInfo(name, epoch, head, trimmed)
        return found

    async def reset(self, room: str) -> RoomInfo:
        return await self._detached.run(self._reset(room))

    async def _reset(self, room: str) -> RoomInfo:
        """A room never written gets its row here: the new epoch must be stored."""
        epoch = new_epoch()
        async with self._write() as conn:
            room_id, created = await self._rows.get_or_create(conn, room)
            await lock_room(conn, room_id)
            for table in (messages, dedup, snapshots):
                await conn.execute(table.delete().where(table.c.room_id == room_id))
            await conn.execute(rooms.update().where(rooms.c.id == room_id).values(
                epoch=epoch, head_seq=0, trimmed_seq=0, snapshot_seq=None))
        if created:
            self._rows.remember(room, room_id)
        return RoomInfo(room, epoch, 0, 0)

    async def trim_before(self, cutoff_ms: int) -> int:
        """Age-based retention, one short transaction per room with old messages."""
        return await self._detached.run(self._trim_before(cutoff_ms))

    async def _trim_before(self, cutoff_ms: int) -> int:
        stmt = (sa.select(messages.c.room_id, sa.func.max(messages.c.seq))
                .where(messages.c.ts < cutoff_ms).group_by(messages.c.room_id))
        async with self._read() as conn:
            old = list(await conn.execute(stmt))
        dropped = 0
        for room_id, upto in old:
            async with self._write() as conn:
                _, _, trimmed, snapshot_seq = await lock_room(conn, room_id)
                if snapshot_seq is not None:  # a domain room: keep what rebuilds its state
                    upto = min(upto, snapshot_seq)
                if upto <= trimmed:
                    continue
                result = await conn.execute(messages.delete().where(
                    messages.c.room_id == room_id, messages.c.seq <= upto))
                dropped += result.rowcount
                await conn.execute(rooms.update().where(rooms.c.id == room_id).values(
                    trimmed_seq=upto))
        return dropped

    async def expire_ids(self, cutoff_ms: int) -> int:
        return await self._detached.run(self._expire_ids(cutoff_ms))

    async def _expire_ids(self, cutoff_ms: int) -> int:
        async with self._write() as conn:
            result = await conn.execute(dedup.delete().where(dedup.c.ts < cutoff_ms))
        return result.rowcount

    async def check(self) -> None:
        """A write transaction, committed: through the same writer as every write (on
        SQLite behind the same lock). At most one is in flight; a check while one
        runs waits for it, so a caller that gives up (a readiness timeout) leaves
        one probe behind, not one per try."""
        if self._probe is None or self._probe.done():
            self._probe = self._detached.start(self._write_probe())
        await asyncio.shield(self._probe)

    async def _write_probe(self) -> None:
        async with self._write() as conn:
            await conn.execute(meta.update().where(meta.c.key == "ready_probe").values(
                value=str(int(time.time() * 1000))))


class _FirstFailed(Exception):
    """The first statement of an operation failed: nothing was written or decided yet."""


@asynccontextmanager
async def _first(last: bool) -> AsyncIterator[None]:
    """Around an operation's first statement: unless this is the ``last`` try, its
    failure is ``_FirstFailed`` (retried by ``_once_more``); on the last, the
    database's error, as from any statement."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        if last:
            raise
        raise _FirstFailed() from exc


async def _once_more(attempt: Callable[[bool], Awaitable[T]]) -> T:
    """``attempt(last=False)``, and if its first statement failed, ``attempt(last=True)``.

    A restart or failover terminates every backend; a pooled connection can be drawn
    before the event loop has read that its socket closed (``roomlog.log.pool``
    replaces those it knows are closed). The first statement then fails, before any
    work was done, so the operation runs once more on a fresh connection instead of
    failing (``test_cut_pooled_connections_are_replaced_before_use``). A database
    that is down fails the second try too, with ``Unavailable`` as before."""
    try:
        return await attempt(False)
    except _FirstFailed:
        return await attempt(True)


def _refused(exc: BaseException) -> bool:
    """Whether the database refused a write for what it holds: an integrity or a data
    exception (SQLSTATE classes 23 and 22: a NUL in text, a value too long), as
    opposed to being down, busy or in the way (retry those)."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    cause: BaseException | None = getattr(exc, "orig", None)
    while cause is not None:  # asyncpg's own error, under SQLAlchemy's wrapper, has it
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str):
            return state[:2] in ("22", "23")
        cause = cause.__cause__
    return False


def _first_line(exc: BaseException) -> str:
    return str(exc).split("\n")[0]
