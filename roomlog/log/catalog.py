"""The SQL adapter of the Catalog port (``roomlog.console.catalog``): reads of
``rt_rooms`` and ``rt_snapshots`` on the log's connections (``SqlLog.run``)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from roomlog.console.catalog import RoomRow, SnapshotRow
from roomlog.log.schema import rooms, snapshots
from roomlog.log.sql import SqlLog

__all__ = ["SqlCatalog"]


def _like(text: str) -> str:
    """``text`` as a LIKE pattern matching it anywhere, its wildcards escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SqlCatalog:
    def __init__(self, log: SqlLog) -> None:
        self._log = log

    async def search(self, text: str, kind: str | None, after: str | None,
                     limit: int) -> list[RoomRow]:
        stmt = rooms.select().order_by(rooms.c.name).limit(limit)
        if text:
            stmt = stmt.where(sa.func.lower(rooms.c.name).like(_like(text.lower()), escape="\\"))
        if kind:
            stmt = stmt.where(rooms.c.name.like(_like(kind + ":")[1:], escape="\\"))
        if after:
            stmt = stmt.where(rooms.c.name > after)

        async def select(conn: AsyncConnection) -> list[RoomRow]:
            return [_row(r._mapping) for r in await conn.execute(stmt)]

        return await self._log.run(select, write=False)

    async def room(self, room: str) -> RoomRow | None:
        async def select(conn: AsyncConnection) -> Any:
            return (await conn.execute(rooms.select().where(rooms.c.name == room))).first()

        row = await self._log.run(select, write=False)
        return None if row is None else _row(row._mapping)

    async def snapshot(self, room: str) -> SnapshotRow | None:
        stmt = (sa.select(snapshots.c.seq, snapshots.c.state)
                .select_from(snapshots.join(rooms, rooms.c.id == snapshots.c.room_id))
                .where(rooms.c.name == room))

        async def select(conn: AsyncConnection) -> Any:
            return (await conn.execute(stmt)).first()

        row = await self._log.run(select, write=False)
        return None if row is None else SnapshotRow(int(row.seq), bytes(row.state))


def _row(row: Any) -> RoomRow:
    return RoomRow(row["name"], row["epoch"], int(row["head_seq"]), int(row["trimmed_seq"]),
                   int(row["created_at"]),
                   None if row["snapshot_seq"] is None else int(row["snapshot_seq"]))
