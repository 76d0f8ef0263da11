"""Plain rooms' appends on PostgreSQL in one statement, one round trip (asyncpg).

The general room transaction (``roomlog.log.txn``) takes five round trips on
PostgreSQL: BEGIN, lock the room's row, look up the client ids it was given, write,
COMMIT. With 1,000 subscribers waiting for each message those round trips, and the
SQLAlchemy work around each, were the difference between the hub's latency on
PostgreSQL and on SQLite (``loadtest/commits.py``, ``loadtest/fanout.py``).

Here the appends of one or more rooms whose rows exist are one statement, run
outside a transaction block (PostgreSQL runs it as a transaction of its own):

* it locks the rooms' rows as the general transaction does (``SELECT ... ORDER BY
  name FOR UPDATE``), so appends of one room, from any instance and either path,
  still happen one after another, and moves each head by the number of its
  messages and each trim point by the retention rule;
* the messages get the seqs after their room's head, the client ids are
  remembered, and the messages retention drops are deleted, in data-modifying
  WITH clauses of the same statement: all of it commits, or none.

The client ids are not looked up first: a remembered id makes the INSERT of the
ids fail with a unique violation, the whole statement with it, and nothing is
written. The caller then takes the general path, which finds the id and answers
``duplicate`` (:class:`Taken`). Ids are rarely sent twice, so the common case pays
no lookup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from roomlog.log import Append

__all__ = ["Taken", "append", "fits", "not_written"]


class Taken(Exception):
    """An id of the batch was remembered already: nothing was written."""


# ``l`` locks the rooms' rows in name order, as every transaction of the log does (two
# writers never wait on each other in a cycle), and reads them as they are once locked
# (READ COMMITTED: the newest version). The UPDATE then finds them locked by this
# statement. The trim point moves as ``txn.trim_point`` moves it: to head - max_messages
# when that is past it, never past the snapshot; the messages between the old and the
# new trim point are deleted.
_APPEND = """
WITH l AS MATERIALIZED (
  SELECT r.id, r.epoch, r.head_seq, r.trimmed_seq, r.snapshot_seq, v.n
  FROM rt_rooms AS r JOIN unnest($1::bigint[], $2::bigint[]) AS v(id, n) ON r.id = v.id
  ORDER BY r.name
  FOR UPDATE OF r
), u AS (
  UPDATE rt_rooms AS t SET
    head_seq = l.head_seq + l.n,
    trimmed_seq = CASE WHEN $3::bigint > 0 AND l.head_seq + l.n - $3 > l.trimmed_seq
      THEN GREATEST(l.trimmed_seq,
                    LEAST(l.head_seq + l.n - $3, COALESCE(l.snapshot_seq, l.head_seq + l.n - $3)))
      ELSE l.trimmed_seq END
  FROM l WHERE t.id = l.id
  RETURNING t.id, l.epoch, l.head_seq AS base, t.trimmed_seq AS trimmed, l.trimmed_seq AS was
), m AS (
  INSERT INTO rt_messages (room_id, seq, ts, author, data)
  SELECT u.id, u.base + x.i, $4::bigint, x.author, x.data
  FROM unnest($5::bigint[], $6::bigint[], $7::varchar[], $8::bytea[]) AS x(room_id, i, author, data)
  JOIN u ON u.id = x.room_id
), d AS (
  INSERT INTO rt_dedup (room_id, actor, client_id, seq, ts, result)
  SELECT u.id, x.actor, x.client_id, u.base + x.i, $4, NULL
  FROM unnest($9::bigint[], $10::bigint[], $11::varchar[], $12::varchar[])
    AS x(room_id, i, actor, client_id)
  JOIN u ON u.id = x.room_id
), x AS (
  DELETE FROM rt_messages USING u
  WHERE u.trimmed > u.was AND rt_messages.room_id = u.id
    AND rt_messages.seq > u.was AND rt_messages.seq <= u.trimmed
)
SELECT id, epoch, base FROM u
"""


def fits(batches: Mapping[int, Sequence[Append]], max_messages: int) -> bool:
    """Whether one statement can append ``batches`` (room id -> items): no id twice in
    a room's batch (the general path answers the second as a duplicate of the first)
    and, with count retention, no room given more messages than it keeps (the DELETE
    does not see the rows this statement inserts)."""
    for items in batches.values():
        if max_messages and len(items) > max_messages:
            return False
        keys = [(i.actor, i.id) for i in items if i.id is not None]
        if len(keys) != len(set(keys)):
            return False
    return True


def not_written(exc: BaseException) -> bool:
    """Whether :func:`append` failing with ``exc`` surely wrote nothing: the server
    answered with an error (the statement, its own transaction, rolled back), or the
    driver refused before sending (a value it cannot encode, a connection it knows is
    closed). A connection lost on the way (``PostgresConnectionError``, ``OSError``)
    leaves it unknown: the server may have committed before the answer was lost."""
    if isinstance(exc, asyncpg.PostgresConnectionError):
        return False
    return isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError))


async def append(conn: asyncpg.Connection[Any], batches: Mapping[int, Sequence[Append]], *,
                 now_ms: int, max_messages: int) -> dict[int, tuple[str, int]]:
    """Append each room's items (room id -> items, in order) in one statement, outside
    any transaction block: (epoch, the head before its items) of each room found; a
    room without a row is missing from the answer and got nothing. Raises
    :class:`Taken` if an id was remembered already (nothing written), and asyncpg's
    errors as they come."""
    m_room, m_pos, m_author, m_data = [], [], [], []
    d_room, d_pos, d_actor, d_client = [], [], [], []
    for room_id, items in batches.items():
        for n, item in enumerate(items, 1):
            m_room.append(room_id)
            m_pos.append(n)
            m_author.append(item.actor)
            m_data.append(item.raw)
            if item.id is not None:
                d_room.append(room_id)
                d_pos.append(n)
                d_actor.append(item.actor)
                d_client.append(item.id)
    try:
        rows = await conn.fetch(_APPEND, list(batches), [len(i) for i in batches.values()],
                                max_messages, now_ms, m_room, m_pos, m_author, m_data,
                                d_room, d_pos, d_actor, d_client)
    except asyncpg.UniqueViolationError as exc:
        if exc.table_name == "rt_dedup":
            raise Taken() from exc
        raise
    return {int(room_id): (str(epoch), int(base)) for room_id, epoch, base in rows}
