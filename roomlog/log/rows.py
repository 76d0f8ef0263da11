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

__all__ = ["RoomRows", "lock_room"]

_ADVISORY = b"roomlog:room:"  # namespaces our advisory lock keys
# The names' locks of several rooms, taken one after the other in the order given.
_LOCK_NAMES = sa.text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS BIGINT[])) "
                      "WITH ORDINALITY AS t(k, i) ORDER BY i")


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(_ADVISORY + name.encode(), digest_size=8).digest(),
                          "big", signed=True)


# The statements of every transaction, built once: building one per call (its
# expression tree and its cache key) cost more than running it.
_LOCK = sa.select(rooms.c.epoch, rooms.c.head_seq, rooms.c.trimmed_seq, rooms.c.snapshot_seq
                  ).where(rooms.c.id == sa.bindparam("rid")).with_for_update()
_ID_OF = sa.select(rooms.c.id).where(rooms.c.name == sa.bindparam("name"))
_INFO_BY_ID = sa.select(rooms.c.epoch, rooms.c.head_seq, rooms.c.trimmed_seq).where(
    rooms.c.id == sa.bindparam("rid"))
_INFO_BY_NAME = sa.select(rooms.c.id, rooms.c.epoch, rooms.c.head_seq, rooms.c.trimmed_seq
                          ).where(rooms.c.name == sa.bindparam("name"))


async def lock_room(conn: AsyncConnection, room_id: int) -> tuple[str, int, int, int | None]:
    """Lock the room's row for this transaction: (epoch, head, trimmed, snapshot seq)."""
    epoch, head, trimmed, snap = (await conn.execute(_LOCK, {"rid": room_id})).one()
    return str(epoch), int(head), int(trimmed), None if snap is None else int(snap)


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
            found = await conn.scalar(_ID_OF, {"name": name})
            if found is not None:
                room_id = int(found)
                self.remember(name, room_id)
        return room_id

    async def info(self, conn: AsyncConnection, name: str) -> tuple[RoomInfo, int | None]:
        """The room's epoch, head and trim point, and its row id (None: no row; the
        room reads as empty, under the epoch its first write will give it)."""
        room_id = self.cached_id(name)
        if room_id is not None:
            epoch, head, trimmed = (await conn.execute(_INFO_BY_ID, {"rid": room_id})).one()
            return RoomInfo(name, epoch, head, trimmed), room_id
        row = (await conn.execute(_INFO_BY_NAME, {"name": name})).first()
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

    async def find_many(self, conn: AsyncConnection, names: Sequence[str]) -> dict[str, int]:
        """The row ids of those of ``names`` that have one (committed rows only)."""
        rows = await conn.execute(sa.select(rooms.c.name, rooms.c.id)
                                  .where(rooms.c.name.in_(list(names))))
        found = {str(name): int(room_id) for name, room_id in rows}
        for name, room_id in found.items():
            self.remember(name, room_id)
        return found

    async def create_many(self, conn: AsyncConnection, names: Sequence[str]) -> dict[str, int]:
        """Rows for ``names`` (sorted; none found without a lock): each name's lock
        (``find_locked``'s, PostgreSQL), taken in order in one statement, then one
        INSERT. The ids of the rows made; a name missing from it got a row from
        another transaction meanwhile (find and lock that one). Not cached (see
        ``create``)."""
        if not self._sqlite:  # SQLite: its one writer serializes every write anyway
            await conn.execute(_LOCK_NAMES, {"keys": [_advisory_key(n) for n in names]})
        now = int(time.time() * 1000)
        insert = sqlite.insert(rooms) if self._sqlite else postgresql.insert(rooms)
        stmt = (insert.values([dict(name=n, epoch=self.epoch_for(n), head_seq=0, trimmed_seq=0,
                                    created_at=now) for n in names])
                .on_conflict_do_nothing().returning(rooms.c.name, rooms.c.id))
        return {str(name): int(room_id) for name, room_id in await conn.execute(stmt)}

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
