"""aiosqlite with one thread hop per statement instead of four.

aiosqlite runs SQLite in a thread of its own; every call is a hop there and
back (a queue put that wakes the thread, a ``call_soon_threadsafe`` that wakes
the event loop through its self-pipe). SQLAlchemy's adapter makes four per
statement: open a cursor, execute, fetch the rows, close the cursor. A commit
of one message is seven statements, so about 25 hops, which cost more CPU than
SQLite's own work (``loadtest/commits.py --db sqlite``).

Here a statement is one hop: the cursor is made in the event loop's thread
(a ``sqlite3`` call that touches no database), ``execute`` fetches the rows in
the same hop, ``fetchall`` returns them, and ``close`` closes the cursor
without a hop. The connection is opened with ``check_same_thread=False``, and a
connection is only ever used by one transaction at a time (the engine's pool),
one statement at a time (SQLAlchemy's adapter awaits each), so the two threads
never touch it at once.

The one module that reaches into aiosqlite's internals; ``SqlLog`` uses it for
file URLs without query parameters, the plain driver otherwise. :func:`in_thread`
runs a whole function of ``sqlite3`` calls in that thread in one hop (plain
appends, ``roomlog.log.sqlite_append``) on either.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, TypeVar

import aiosqlite
from aiosqlite.context import contextmanager

__all__ = ["connector", "in_thread"]

T = TypeVar("T")


class _Cursor(aiosqlite.Cursor):
    _rows: list[Any] | None = None

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> _Cursor:
        cursor = self._cursor
        args: Any = [] if parameters is None else parameters

        def run() -> list[Any] | None:
            cursor.execute(sql, args)
            return cursor.fetchall() if cursor.description else None

        self._rows = await self._conn._execute(run)  # type: ignore[no-untyped-call]
        return self

    async def fetchall(self) -> Iterable[sqlite3.Row]:
        rows, self._rows = self._rows, None
        if rows is None:
            return await super().fetchall()
        return rows

    async def close(self) -> None:
        self._rows = None
        self._cursor.close()


class _Connection(aiosqlite.Connection):
    @contextmanager
    async def cursor(self) -> aiosqlite.Cursor:
        return _Cursor(self, self._conn.cursor())


async def in_thread(connection: Any, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``work`` with the ``sqlite3`` connection of ``connection`` (an aiosqlite
    connection: SQLAlchemy's ``driver_connection``) in its thread, in one hop: several
    statements for the price of one trip (``roomlog.log.sqlite_append``)."""
    raw: sqlite3.Connection = connection._conn
    result: T = await connection._execute(work, raw)
    return result


def connector(path: str) -> Callable[[], Any]:
    """An ``async_creator`` for SQLAlchemy: a connection to the SQLite file ``path``."""
    def connect() -> Any:
        connection = _Connection(partial(sqlite3.connect, path, check_same_thread=False),
                                 iter_chunk_size=64)
        connection._thread.daemon = True  # as SQLAlchemy does for aiosqlite's own
        return connection
    return connect
