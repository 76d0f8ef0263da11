"""The SQL room transaction behind ``SqlLog.transact``.

Reads go straight to the database inside the transaction; writes are buffered
and flushed by :meth:`SqlTxn.flush` just before the commit, in one INSERT per
table, so a batch of many commands costs a handful of statements.

A room without a row (only ever read) is an empty log under the epoch its first
write will give it; the row is made at the flush, and only if something is
written to the room (see ``roomlog.log.rows``). ``created`` names the rows this
transaction made, for the caller to cache once it has committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from roomlog.errors import Unavailable
from roomlog.log import Prior, Snapshot
from roomlog.log.rows import RoomRows, lock_room
from roomlog.log.schema import claims, dedup, messages, rooms, snapshots
from roomlog.protocol import Message

__all__ = ["SqlTxn", "trim_point"]


def _among(column: sa.Column[Any], name: str) -> sa.ColumnElement[bool]:
    """``column IN (...)`` of the list bound as ``name``, expanded to one parameter per
    value. Not ``= ANY(:array)`` on PostgreSQL, though its text would be prepared once
    for any length: PostgreSQL then runs it with a generic plan, and queue rooms at
    1,000 commands/s went from 996 to 897 answered/s, p99 57 to 716 ms, with the
    database's CPU at 67% instead of 32% (``loadtest/queue.py --phases rate``)."""
    return column.in_(sa.bindparam(name, expanding=True))


# The reads of every transaction, built once (building one per call, its expression
# tree and its cache key, cost more than running it).
_PRIOR = sa.select(dedup.c.actor, dedup.c.client_id, dedup.c.seq, dedup.c.ts, dedup.c.result
                   ).where(
    # every column of the key: the primary key's index finds each pair, where
    # room_id and client_id alone scanned every id the room remembers
    dedup.c.room_id == sa.bindparam("rid"),
    _among(dedup.c.actor, "actors"),
    _among(dedup.c.client_id, "ids"))
_PREFETCH = sa.select(dedup.c.room_id, dedup.c.actor, dedup.c.client_id, dedup.c.seq,
                      dedup.c.ts, dedup.c.result).where(
    _among(dedup.c.room_id, "rids"),
    _among(dedup.c.actor, "actors"),
    _among(dedup.c.client_id, "ids"))
_LOCK_MANY = (sa.select(rooms.c.id, rooms.c.epoch, rooms.c.head_seq, rooms.c.trimmed_seq,
                        rooms.c.snapshot_seq)
              .where(_among(rooms.c.id, "rids"))
              .order_by(rooms.c.name).with_for_update())
_EVENTS = (sa.select(messages.c.seq, messages.c.ts, messages.c.author, messages.c.data)
           .where(messages.c.room_id == sa.bindparam("rid"),
                  messages.c.seq > sa.bindparam("after"))
           .order_by(messages.c.seq))
_SNAPSHOT = sa.select(snapshots.c.seq, snapshots.c.state).where(
    snapshots.c.room_id == sa.bindparam("rid"))


class _RoomWrite:
    """What a transaction appends to one room (``room_id`` None: no row yet)."""

    def __init__(self, room: str, room_id: int | None, epoch: str, head: int, trimmed: int,
                 snapshot_seq: int | None) -> None:
        self.room, self.room_id, self.epoch = room, room_id, epoch
        self.head, self.trimmed, self.snapshot_seq = head, trimmed, snapshot_seq
        self.stored: list[Message] = []


class SqlTxn:
    def __init__(self, conn: AsyncConnection, room: str, now_ms: int, *, rows: RoomRows,
                 sqlite_dialect: bool, max_messages: int,
                 others: dict[str, list[tuple[str, bytes]]] | None = None) -> None:
        self._conn = conn
        self._rows = rows
        self._sqlite = sqlite_dialect
        self._max_messages = max_messages
        self.room = room
        self.now_ms = now_ms
        self.epoch = ""
        self._main: _RoomWrite | None = None
        self._ids: list[dict[str, Any]] = []
        # notices for other rooms; shared by the rooms of one transaction (``flush_all``)
        self._others: dict[str, list[tuple[str, bytes]]] = {} if others is None else others
        self._snapshot: tuple[int, bytes] | None = None
        self.created: dict[str, int] = {}  # rows this transaction made: room -> id
        self._asked: set[tuple[str, str]] = set()  # keys ``prefetch`` looked up ...
        self._known: dict[tuple[str, str], Prior] = {}  # ... and what it found

    async def begin(self) -> None:
        room_id = await self._rows.find_locked(self._conn, self.room)
        if room_id is None:
            main = _RoomWrite(self.room, None, self._rows.epoch_for(self.room), 0, 0, None)
        else:
            epoch, head, trimmed, snap = await lock_room(self._conn, room_id)
            main = _RoomWrite(self.room, room_id, epoch, head, trimmed, snap)
        self._main, self.epoch = main, main.epoch

    def begin_locked(self, room_id: int, epoch: str, head: int, trimmed: int,
                     snapshot_seq: int | None) -> None:
        """``begin`` for a room whose row the caller has locked (``lock_rooms``)."""
        self._main = _RoomWrite(self.room, room_id, epoch, head, trimmed, snapshot_seq)
        self.epoch = epoch

    @property
    def _room_id(self) -> int | None:
        assert self._main is not None, "begin() first"
        return self._main.room_id

    @property
    def head(self) -> int:
        """The room's last seq, including the appends buffered so far."""
        assert self._main is not None, "begin() first"
        return self._main.head

    # -- reads -------------------------------------------------------------------

    async def prior(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Prior]:
        wanted = set(keys)
        if not wanted or self._room_id is None:
            return {}
        if wanted <= self._asked:  # looked up with the other rooms' (``prefetch``)
            return {key: self._known[key] for key in wanted if key in self._known}
        found = {}
        params = {"rid": self._room_id, "actors": list({actor for actor, _ in wanted}),
                  "ids": list({client_id for _, client_id in wanted})}
        for actor, client_id, seq, ts, result in await self._conn.execute(
                _PRIOR, params):
            if (actor, client_id) in wanted:
                stored = None if result is None else bytes(result)
                found[(actor, client_id)] = Prior(seq, ts, stored)
        return found

    async def events(self, after: int) -> list[Message]:
        if self._room_id is None:
            return []
        rows = await self._conn.execute(_EVENTS, {"rid": self._room_id, "after": after})
        return [Message(self.room, seq, self.epoch, ts, author, bytes(data))
                for seq, ts, author, data in rows]

    async def snapshot(self) -> Snapshot | None:
        if self._room_id is None:
            return None
        row = (await self._conn.execute(_SNAPSHOT, {"rid": self._room_id})).first()
        return None if row is None else Snapshot(int(row[0]), bytes(row[1]))

    # -- buffered writes ---------------------------------------------------------

    def append(self, actor: str, raw: bytes) -> Message:
        assert self._main is not None
        self._main.head += 1
        message = Message(self.room, self._main.head, self.epoch, self.now_ms, actor, raw)
        self._main.stored.append(message)
        return message

    def remember(self, actor: str, client_id: str, seq: int, result: bytes | None) -> None:
        self._ids.append(dict(actor=actor, client_id=client_id, seq=seq, ts=self.now_ms,
                              result=result))

    def notify(self, room: str, actor: str, raw: bytes) -> None:
        if room == self.room:
            raise ValueError("notify() writes to other rooms; append() to this one")
        self._others.setdefault(room, []).append((actor, raw))

    def save_snapshot(self, seq: int, state: bytes) -> None:
        self._snapshot = (seq, state)

    async def claim(self, keys: Mapping[str, str]) -> set[str]:
        """Written now, not at the flush: on PostgreSQL a concurrent claim of the
        same key waits for this transaction and then finds it taken (or free, if
        this one rolled back)."""
        if not keys:
            return set()
        insert = sqlite.insert(claims) if self._sqlite else postgresql.insert(claims)
        stmt = (insert.values([dict(key=k, room=self.room, actor=keys[k], ts=self.now_ms)
                               for k in sorted(keys)])
                .on_conflict_do_nothing(index_elements=[claims.c.key])
                .returning(claims.c.key))
        fresh = {row[0] for row in await self._conn.execute(stmt)}
        return {k for k in keys if k not in fresh}

    # -- commit ------------------------------------------------------------------

    async def flush(self) -> dict[str, list[Message]]:
        """Write everything buffered; other rooms locked in name order."""
        return await flush_all([self], self._others)

    async def _create_main(self) -> None:
        """The room's row, at its first write (the caller holds ``find_locked``'s lock)."""
        main = self._main
        assert main is not None
        if main.room_id is None and (main.stored or self._ids or self._snapshot is not None):
            main.room_id = await self._rows.create(self._conn, self.room)
            if main.room_id is None:  # only a writer that takes no lock (an old version)
                raise Unavailable("the room was created meanwhile; retry with the same id",
                                  retry_after=0.1)
            self.created[self.room] = main.room_id

    async def _save_snapshot(self, seq: int, state: bytes) -> None:
        assert self._main is not None
        insert = sqlite.insert(snapshots) if self._sqlite else postgresql.insert(snapshots)
        stmt = insert.values(room_id=self._room_id, seq=seq, state=state)
        await self._conn.execute(stmt.on_conflict_do_update(
            index_elements=[snapshots.c.room_id], set_=dict(seq=seq, state=state)))
        self._main.snapshot_seq = seq


def trim_point(head: int, trimmed: int, snapshot_seq: int | None, max_messages: int) -> int:
    """Count-based retention, never past the snapshot: a room's new trim point at
    ``head`` (messages up to it are deleted once the new ones are written)."""
    if max_messages and head - max_messages > trimmed:
        point = head - max_messages
        if snapshot_seq is not None:
            point = min(point, snapshot_seq)
        return max(point, trimmed)
    return trimmed


_ADVANCE = rooms.update().where(rooms.c.id == sa.bindparam("rid")).values(
    head_seq=sa.bindparam("head"), trimmed_seq=sa.bindparam("trimmed"),
    snapshot_seq=sa.bindparam("snap"))


# PostgreSQL: the messages, the remembered ids and the heads in one statement (data-
# modifying WITH clauses run to completion whether read or not), its text the same for
# any number of rows, so it is prepared once per connection.
_PG_WRITE = sa.text("""
WITH m AS (
  INSERT INTO rt_messages (room_id, seq, ts, author, data)
  SELECT * FROM unnest(CAST(:m_room AS BIGINT[]), CAST(:m_seq AS BIGINT[]),
                       CAST(:m_ts AS BIGINT[]), CAST(:m_author AS VARCHAR[]),
                       CAST(:m_data AS BYTEA[]))
), d AS (
  INSERT INTO rt_dedup (room_id, actor, client_id, seq, ts, result)
  SELECT * FROM unnest(CAST(:d_room AS BIGINT[]), CAST(:d_actor AS VARCHAR[]),
                       CAST(:d_client AS VARCHAR[]), CAST(:d_seq AS BIGINT[]),
                       CAST(:d_ts AS BIGINT[]), CAST(:d_result AS BYTEA[]))
)
UPDATE rt_rooms SET head_seq = v.head, trimmed_seq = v.trimmed, snapshot_seq = v.snap
FROM unnest(CAST(:h_room AS BIGINT[]), CAST(:h_head AS BIGINT[]),
            CAST(:h_trimmed AS BIGINT[]), CAST(:h_snap AS BIGINT[])) AS v(id, head, trimmed, snap)
WHERE rt_rooms.id = v.id
""")


def _pg_arrays(rows: list[dict[str, Any]], ids: list[dict[str, Any]],
               heads: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The columns of ``_PG_WRITE``, one array each."""
    return {
        "m_room": [r["room_id"] for r in rows], "m_seq": [r["seq"] for r in rows],
        "m_ts": [r["ts"] for r in rows], "m_author": [r["author"] for r in rows],
        "m_data": [r["data"] for r in rows],
        "d_room": [r["room_id"] for r in ids], "d_actor": [r["actor"] for r in ids],
        "d_client": [r["client_id"] for r in ids], "d_seq": [r["seq"] for r in ids],
        "d_ts": [r["ts"] for r in ids], "d_result": [r["result"] for r in ids],
        "h_room": [h["rid"] for h in heads], "h_head": [h["head"] for h in heads],
        "h_trimmed": [h["trimmed"] for h in heads], "h_snap": [h["snap"] for h in heads],
    }


async def lock_rooms(txns: Sequence[SqlTxn]) -> None:
    """``begin`` every transaction of one connection, strictly in room name order (so
    two such transactions, in any processes, never wait on each other in a cycle):
    each run of rooms whose row id is known is locked by one ``SELECT ... ORDER BY
    name FOR UPDATE`` (rows are locked in the order returned, after the sort), a room
    without a known id by its own ``begin``."""
    first = txns[0]
    run: dict[int, SqlTxn] = {}
    for t in sorted(txns, key=lambda t: t.room):
        room_id = first._rows.cached_id(t.room)
        if room_id is not None:
            run[room_id] = t
            continue
        await _lock_run(first._conn, run)
        run = {}
        await t.begin()
    await _lock_run(first._conn, run)


async def _lock_run(conn: AsyncConnection, run: dict[int, SqlTxn]) -> None:
    if not run:
        return
    if len(run) == 1:
        (t,) = run.values()
        await t.begin()
        return
    for room_id, locked in (await _lock_ids(conn, list(run))).items():
        run[room_id].begin_locked(room_id, *locked)
    for t in run.values():  # a cached id with no row (never: rows are never deleted)
        if t._main is None:
            await t.begin()


async def _lock_ids(conn: AsyncConnection, ids: list[int]
                    ) -> dict[int, tuple[str, int, int, int | None]]:
    """Lock the rows ``ids`` in name order, in one statement: (epoch, head, trimmed,
    snapshot seq) of each."""
    if not ids:
        return {}
    rows = await conn.execute(_LOCK_MANY, {"rids": ids})
    return {int(room_id): (str(epoch), int(head), int(trimmed),
                           None if snap is None else int(snap))
            for room_id, epoch, head, trimmed, snap in rows}


async def _lock_others(first: SqlTxn, names: list[str]
                       ) -> list[tuple[str, int, tuple[str, int, int, int | None]]]:
    """Get or create and lock the rooms ``names`` (sorted) in name order: runs of rows
    whose id is known in one statement each; runs of the others in a few
    (:func:`_get_unknown`). (name, id, locked row) of each."""
    conn, rows_of = first._conn, first._rows
    locked: list[tuple[str, int, tuple[str, int, int, int | None]]] = []
    run: list[tuple[str, int]] = []
    unknown: list[str] = []

    async def lock_run() -> None:
        found = await _lock_ids(conn, [room_id for _, room_id in run])
        locked.extend((name, room_id, found[room_id]) for name, room_id in run)
        run.clear()

    for name in names:
        room_id = rows_of.cached_id(name)
        if room_id is not None:
            if unknown:
                locked.extend(await _get_unknown(first, unknown))
                unknown = []
            run.append((name, room_id))
            continue
        await lock_run()
        unknown.append(name)
    await lock_run()
    if unknown:
        locked.extend(await _get_unknown(first, unknown))
    return locked


async def _get_unknown(first: SqlTxn, names: list[str]
                       ) -> list[tuple[str, int, tuple[str, int, int, int | None]]]:
    """Get or create and lock the rooms ``names`` (sorted, no id cached), in name order,
    in a few statements whatever their number: a batch of paid submits notifies each
    guest's ``user:`` room, new at a guest's first, and five round trips per room
    (find, name lock, find, insert, lock) kept the notifying room locked meanwhile.
    One look finds the rows that exist; then each run of those is locked in one
    statement, and each run of the others by their names' locks, then made in one
    INSERT (``RoomRows.create_many``)."""
    conn, rows_of = first._conn, first._rows
    found = await rows_of.find_many(conn, names)
    locked: list[tuple[str, int, tuple[str, int, int, int | None]]] = []
    i = 0
    while i < len(names):
        exists = names[i] in found
        j = i
        while j < len(names) and (names[j] in found) == exists:
            j += 1
        if exists:
            rows = await _lock_ids(conn, [found[n] for n in names[i:j]])
            locked.extend((n, found[n], rows[found[n]]) for n in names[i:j])
        else:
            made = await rows_of.create_many(conn, names[i:j])
            for name in names[i:j]:
                room_id = made.get(name)
                if room_id is not None:  # ours, seen by no one yet: locked as it is
                    first.created[name] = room_id
                    locked.append((name, room_id, (rows_of.epoch_for(name), 0, 0, None)))
                    continue
                # made meanwhile by another transaction (rare; and after the later
                # names' locks: a deadlock this could make is broken by PostgreSQL, and
                # the batch is retried with the same ids)
                room_id = await rows_of.find(conn, name)
                assert room_id is not None
                locked.append((name, room_id, await lock_room(conn, room_id)))
        i = j
    return locked


async def prefetch(txns: Sequence[SqlTxn], keys: Mapping[str, Iterable[tuple[str, str]]]
                   ) -> None:
    """Look up the remembered results of ``keys`` (per room) of every transaction in
    one query; each transaction's ``prior`` of those keys answers from it."""
    by_id: dict[int, SqlTxn] = {}
    actors, ids = set(), set()
    for t in txns:
        wanted = set(keys.get(t.room, ()))
        if t._room_id is None or not wanted:
            continue
        t._asked |= wanted
        by_id[t._room_id] = t
        actors |= {actor for actor, _ in wanted}
        ids |= {client_id for _, client_id in wanted}
    if not by_id:
        return
    conn = txns[0]._conn
    params = {"rids": list(by_id), "actors": list(actors), "ids": list(ids)}
    for room_id, actor, client_id, seq, ts, result in await conn.execute(
            _PREFETCH, params):
        t = by_id[room_id]
        if (actor, client_id) in t._asked:
            t._known[(actor, client_id)] = Prior(seq, ts, None if result is None else bytes(result))


async def flush_all(txns: Sequence[SqlTxn], others: dict[str, list[tuple[str, bytes]]]
                    ) -> dict[str, list[Message]]:
    """Write what the transactions of one connection buffered, each in its own room,
    and the notices ``others`` (shared by them) to other rooms, locked in name order
    after every room of ``txns``: one INSERT per table and one UPDATE of the heads,
    whatever the number of rooms."""
    first = txns[0]
    conn = first._conn
    mains: list[_RoomWrite] = []
    for t in txns:
        await t._create_main()
        assert t._main is not None
        mains.append(t._main)
    names = {w.room for w in mains}
    writes = list(mains)
    if names & others.keys():
        raise ValueError(f"notices to {sorted(names & others.keys())}, written to in this "
                         "transaction; append() to a room itself")
    for name, room_id, (epoch, head, trimmed, snap) in await _lock_others(first,
                                                                          sorted(others)):
        other = _RoomWrite(name, room_id, epoch, head, trimmed, snap)
        for actor, raw in others[name]:
            other.head += 1
            other.stored.append(Message(name, other.head, epoch, first.now_ms, actor, raw))
        writes.append(other)
    snapshotted = set()
    for t in txns:
        if t._snapshot is not None:
            await t._save_snapshot(*t._snapshot)
            snapshotted.add(t.room)
    rows = [dict(room_id=w.room_id, seq=m.seq, ts=m.ts, author=m.by, data=m.raw)
            for w in writes for m in w.stored]
    ids = [row | {"room_id": t._room_id} for t in txns for row in t._ids]
    heads: list[dict[str, Any]] = []
    trims: list[tuple[int, int]] = []
    for w in writes:
        if w.stored or w.room in snapshotted:
            trimmed = trim_point(w.head, w.trimmed, w.snapshot_seq, first._max_messages)
            heads.append(dict(rid=w.room_id, head=w.head, trimmed=trimmed,
                              snap=w.snapshot_seq))
            if trimmed > w.trimmed:
                assert w.room_id is not None
                trims.append((w.room_id, trimmed))
    if not first._sqlite:  # one round trip for the three
        await conn.execute(_PG_WRITE, _pg_arrays(rows, ids, heads))
    else:
        if rows:
            await conn.execute(messages.insert(), rows)
        if ids:
            await conn.execute(dedup.insert(), ids)
        if heads:
            await conn.execute(_ADVANCE, heads)
    for trimmed_id, upto in trims:
        await conn.execute(messages.delete().where(
            messages.c.room_id == trimmed_id, messages.c.seq <= upto))
    return {w.room: w.stored for w in writes if w.stored}
