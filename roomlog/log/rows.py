"""Room rows of the SQL log: found by name, created by a room's first write.

A room that was only ever read has no row. It reads as an empty log (head 0)
under the epoch it will be created with: a hash of its name keyed with a random
salt the database got when it was migrated (``rt_meta``, migration 0003). So a
subscriber of a room nobody wrote yet sees no epoch change when the first write
creates it, and a recreated database, with a new salt, never hands out an
epoch a client may still hold. ``reset`` gives a room a random epoch, as before.

Reads therefore store nothing: before, every read of a new name inserted a row
for good (one guest made 5,000 in 14 s).

Locks: a room's row is its lock (``lock_room``, ``SELECT ... FOR UPDATE``). A
transaction in a room without a row holds, on PostgreSQL, a transaction-scoped
advisory lock on the room's name instead (:meth:`RoomRows.find_locked`), and
whoever creates a row takes that lock first; so two first writes, or a first
write and a look at the room's state, queue as they would on a row. On SQLite
the one writer (``BEGIN IMMEDIATE``) serializes them anyway.

The ids of rows known to be committed are cached, at most ``cache_size``, the
least recently used going first: rows are never deleted, so an id stays true.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from roomlog.log import RoomInfo
from roomlog.log.schema import meta, rooms
from roomlog.lru import Lru

__all__ = ["Locked", "RoomRows", "lock_room", "lock_rows"]

_ADVISORY = b"roomlog:room:"  # namespaces our advisory lock keys

Locked = tuple[str, int, int, int | None]  # a locked row: epoch, head, trimmed, snapshot seq

# The names' locks of several rooms, taken one after the other in the order given.
_LOCK_NAMES = sa.text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS BIGINT[])) "
                      "WITH ORDINALITY AS t(k, i) ORDER BY i")


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(_ADVISORY + name.encode(), digest_size=8).digest(),
                          "big", signed=True)


async def lock_room(conn: AsyncConnection, room_id: int) -> Locked:
    """Lock the room's row for this transaction: (epoch, head, trimmed, snapshot seq)."""
    stmt = sa.select(rooms.c.epoch, rooms.c.head_seq, rooms.c.trimmed_seq,
                     rooms.c.snapshot_seq).where(rooms.c.id == room_id)
    epoch, head, trimmed, snap = (await conn.execute(stmt.with_for_update())).one()
    return str(epoch), int(head), int(trimmed), None if snap is None else int(snap)


async def lock_rows(conn: AsyncConnection, ids: list[int]) -> dict[int, Locked]:
    """Lock the rows ``ids`` in name order, in one statement: (epoch, head, trimmed,
    snapshot seq) of each."""
    if not ids:
        return {}
    stmt = (sa.select(rooms.c.id, rooms.c.epoch, rooms.c.head_seq, rooms.c.trimmed_seq,
                      rooms.c.snapshot_seq)
            .where(rooms.c.id.in_(ids)).order_by(rooms.c.name).with_for_update())
    return {int(room_id): (str(epoch), int(head), int(trimmed),
                           None if snap is None else int(snap))
            for room_id, epoch, head, trimmed, snap in await conn.execute(stmt)}


async def _lock_named(conn: AsyncConnection, run: list[tuple[str, int]]
                      ) -> list[tuple[str, int, Locked]]:
    found = await lock_rows(conn, [room_id for _, room_id in run])
    return [(name, room_id, found[room_id]) for name, room_id in run]


class RoomRows:
    def __init__(self, *, sqlite_dialect: bool, cache_size: int) -> None:
        self._sqlite = sqlite_dialect
        self._ids: Lru[str, int] = Lru(cache_size)
        self._salt = b""

    async def load_salt(self, conn: AsyncConnection) -> None:
        """Read the database's epoch salt (once, at open)."""
        value = await conn.scalar(sa.select(meta.c.value).where(meta.c.key == "epoch_salt"))
        if not value:
            raise SystemExit("the database has no epoch salt (rt_meta): run `roomlog migrate`")
        self._salt = bytes.fromhex(value)

    def epoch_for(self, name: str) -> str:
        """The epoch of a room that has no row yet: the one its first write gives it."""
        assert self._salt, "load_salt() first"
        return hashlib.blake2b(name.encode(), key=self._salt, digest_size=6).hexdigest()

    # -- the id cache --------------------------------------------------------

    @property
    def cached(self) -> int:
        return len(self._ids)

    def cached_id(self, name: str) -> int | None:
        return self._ids.get(name)

    def remember(self, name: str, room_id: int) -> None:
        """Cache the id of a row that is committed (never of one still being written)."""
        self._ids.put(name, room_id)

    # -- lookups ---------------------------------------------------------------

    async def find(self, conn: AsyncConnection, name: str) -> int | None:
        """The room's row id, or None if it has none (committed rows only)."""
        room_id = self.cached_id(name)
        if room_id is None:
            found = await conn.scalar(sa.select(rooms.c.id).where(rooms.c.name == name))
            if found is not None:
                room_id = int(found)
                self.remember(name, room_id)
        return room_id

    async def info(self, conn: AsyncConnection, name: str) -> tuple[RoomInfo, int | None]:
        """The room's epoch, head and trim point, and its row id (None: no row; the
        room reads as empty, under the epoch its first write will give it)."""
        columns = (rooms.c.epoch, rooms.c.head_seq, rooms.c.trimmed_seq)
        room_id = self.cached_id(name)
        if room_id is not None:
            epoch, head, trimmed = (await conn.execute(
                sa.select(*columns).where(rooms.c.id == room_id))).one()
            return RoomInfo(name, epoch, head, trimmed), room_id
        row = (await conn.execute(
            sa.select(rooms.c.id, *columns).where(rooms.c.name == name))).first()
        if row is None:
            return RoomInfo(name, self.epoch_for(name), 0, 0), None
        self.remember(name, int(row[0]))
        return RoomInfo(name, row[1], row[2], row[3]), int(row[0])

    # -- inside write transactions ---------------------------------------------

    async def find_locked(self, conn: AsyncConnection, name: str) -> int | None:
        """``find``; when the room has no row, hold its name's lock (PostgreSQL) for
        the rest of the transaction and look again: someone may have just made it."""
        room_id = await self.find(conn, name)
        if room_id is None and not self._sqlite:
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_advisory_key(name))))
            room_id = await self.find(conn, name)
        return room_id

    async def create(self, conn: AsyncConnection, name: str) -> int | None:
        """Insert the room's row (the caller holds ``find_locked``'s lock); its id, or
        None if a row appeared anyway (a writer that took no lock). Not cached: the
        caller caches it once the transaction has committed."""
        values = dict(name=name, epoch=self.epoch_for(name), head_seq=0, trimmed_seq=0,
                      created_at=int(time.time() * 1000))
        insert = sqlite.insert(rooms) if self._sqlite else postgresql.insert(rooms)
        inserted = await conn.scalar(
            insert.values(values).on_conflict_do_nothing().returning(rooms.c.id))
        return None if inserted is None else int(inserted)

    async def get_or_create_many(self, conn: AsyncConnection, names: Sequence[str]
                                 ) -> list[tuple[str, int, bool, Locked]]:
        """Get or create and lock the rooms ``names`` (sorted; none with a cached id):
        (name, id, whether this transaction created the row, its locked row) of each,
        in a few statements whatever their number (one guest's notice each, for a
        batch of paid submits, took five round trips per guest while the room that
        notified them stayed locked). Locks are still taken in name order: the rows
        found, a run at a time; the names without a row, a run at a time, by their
        names' locks (``find_locked``), then their rows are made in one INSERT."""
        found = await self._find_many(conn, names)
        done: list[tuple[str, int, bool, Locked]] = []
        i = 0
        while i < len(names):
            j = i
            have = names[i] in found
            while j < len(names) and (names[j] in found) == have:
                j += 1
            run = names[i:j]
            if have:
                for name, room_id, locked in await _lock_named(conn, [(n, found[n]) for n in run]):
                    done.append((name, room_id, False, locked))
            else:
                done += await self._create_run(conn, run)
            i = j
        return done

    async def _find_many(self, conn: AsyncConnection, names: Sequence[str]) -> dict[str, int]:
        """The ids of the rows of ``names`` that exist (committed), cached."""
        rows = await conn.execute(sa.select(rooms.c.name, rooms.c.id)
                                  .where(rooms.c.name.in_(list(names))))
        found = {str(name): int(room_id) for name, room_id in rows}
        for name, room_id in found.items():
            self.remember(name, room_id)
        return found

    async def _create_run(self, conn: AsyncConnection, names: Sequence[str]
                          ) -> list[tuple[str, int, bool, Locked]]:
        """Rows for ``names`` (sorted, none found): their names' locks in order, then one
        INSERT. A row another transaction made meanwhile is found and locked instead
        (rare; after the later names' locks: a deadlock that this could make is broken
        by PostgreSQL, and the writes of that batch are retried with the same ids)."""
        if not self._sqlite:  # SQLite: the one writer serializes every write anyway
            keys = [_advisory_key(name) for name in names]
            await conn.execute(_LOCK_NAMES, {"keys": keys})
        now = int(time.time() * 1000)
        insert = sqlite.insert(rooms) if self._sqlite else postgresql.insert(rooms)
        stmt = (insert.values([dict(name=n, epoch=self.epoch_for(n), head_seq=0, trimmed_seq=0,
                                    created_at=now) for n in names])
                .on_conflict_do_nothing().returning(rooms.c.name, rooms.c.id))
        made = {str(name): int(room_id) for name, room_id in await conn.execute(stmt)}
        done: list[tuple[str, int, bool, Locked]] = []
        for name in names:
            if name in made:  # ours, not yet visible to anyone: locked as it is
                done.append((name, made[name], True, (self.epoch_for(name), 0, 0, None)))
                continue
            room_id = await self.find(conn, name)  # made meanwhile (rare)
            assert room_id is not None
            done.append((name, room_id, False, await lock_room(conn, room_id)))
        return done

    async def get_or_create(self, conn: AsyncConnection, name: str) -> tuple[int, bool]:
        """(the room's row id, whether this transaction created the row)."""
        room_id = await self.find_locked(conn, name)
        if room_id is not None:
            return room_id, False
        created = await self.create(conn, name)
        if created is not None:
            return created, True
        found = await self.find(conn, name)
        assert found is not None
        return found, False
