"""Plain rooms' appends on SQLite in one trip to its thread.

SQLite runs in a thread of its own (aiosqlite), and a plain append through the
general room transaction (``roomlog.log.txn``) is eight trips there and back:
BEGIN IMMEDIATE, the room's row, the client ids, the messages, the ids, the head,
COMMIT, and the connection's return. Each trip wakes the thread and then the event
loop, and with the SQLAlchemy work around each statement that cost about 2 ms of CPU
per append, a fifth of the core at 100 appends/s, on the core that fans the messages
out (``loadtest/commits.py --db sqlite``, ``loadtest/fanout.py --timeline``).

Here :func:`append` does the whole transaction in the thread, in one call of plain
``sqlite3``: the same statements and decisions (:func:`roomlog.log.place`, the
retention rule of :func:`roomlog.log.txn.trim_point`). SQLite has one writer: the
caller holds the log's write lock, as every write does, and BEGIN IMMEDIATE takes
the file's. The client ids are not looked up first, as on PostgreSQL
(``roomlog.log.pg_append``): a remembered one fails the INSERT of the ids
(``IntegrityError``), and a failure rolls back before it returns, so nothing of it
is written and the caller takes the general path, which answers ``duplicate``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from roomlog.log import Append, Placed, place
from roomlog.log.txn import trim_point

__all__ = ["append"]

_ROOM = "SELECT epoch, head_seq, trimmed_seq, snapshot_seq FROM rt_rooms WHERE id = ?"
_MESSAGE = "INSERT INTO rt_messages (room_id, seq, ts, author, data) VALUES (?, ?, ?, ?, ?)"
_ID = ("INSERT INTO rt_dedup (room_id, actor, client_id, seq, ts, result) "
       "VALUES (?, ?, ?, ?, ?, NULL)")
_HEAD = "UPDATE rt_rooms SET head_seq = ?, trimmed_seq = ? WHERE id = ?"
_TRIM = "DELETE FROM rt_messages WHERE room_id = ? AND seq > ? AND seq <= ?"


def append(conn: sqlite3.Connection, batches: Mapping[int, Sequence[Append]], *, now_ms: int,
           max_messages: int) -> Placed:
    """Append each room's items (room id -> items) in one transaction: per room found,
    its epoch, a result per item and the items stored with their seqs. A room without
    a row is missing from the answer and got nothing. Runs in SQLite's thread
    (``sqlite_driver.in_thread``), on a connection in autocommit mode."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        done: Placed = {}
        for room_id, items in batches.items():
            row = conn.execute(_ROOM, (room_id,)).fetchone()
            if row is None:
                continue
            epoch, head, trimmed, snapshot_seq = row
            results, new = place(items, {}, head, epoch, now_ms)
            done[room_id] = (epoch, results, new)
            if not new:
                continue
            conn.executemany(_MESSAGE, [(room_id, seq, now_ms, item.actor, item.raw)
                                        for item, seq in new])
            conn.executemany(_ID, [(room_id, item.actor, item.id, seq, now_ms)
                                   for item, seq in new if item.id is not None])
            last = new[-1][1]
            point = trim_point(last, trimmed, snapshot_seq, max_messages)
            conn.execute(_HEAD, (last, point, room_id))
            if point > trimmed:
                conn.execute(_TRIM, (room_id, trimmed, point))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return done
