"""The SQL adapter of the BanStore port (``roomlog.bans``): the ``rt_bans`` table,
on the log's own database and connections (``SqlLog.run``)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from roomlog.bans import Ban, BanQuery, NewBan
from roomlog.identity import Principal, Role
from roomlog.log.schema import bans
from roomlog.log.sql import SqlLog

__all__ = ["SqlBans"]


class SqlBans:
    def __init__(self, log: SqlLog) -> None:
        self._log = log

    async def add(self, new: NewBan, by: Principal, now_ms: int) -> Ban:
        values = dict(user_id=new.user, role=None if new.role is None else new.role.value,
                      jti=new.jti, reason=new.reason, by_user=by.user, by_role=by.role.value,
                      created_ms=now_ms, until_ms=new.until_ms)
        async def insert(conn: AsyncConnection) -> Any:
            return await conn.scalar(bans.insert().values(values).returning(bans.c.id))

        ban_id = await self._log.run(insert, write=True)
        assert ban_id is not None
        return Ban(int(ban_id), new.user, new.role, new.jti, new.reason, by, now_ms,
                   new.until_ms)

    async def lift(self, ban_id: int, by: Principal, now_ms: int) -> Ban | None:
        async def lift(conn: AsyncConnection) -> Any:
            await conn.execute(
                bans.update().where(bans.c.id == ban_id, bans.c.lifted_ms.is_(None))
                .values(lifted_ms=now_ms, lifted_by_user=by.user, lifted_by_role=by.role.value))
            return (await conn.execute(bans.select().where(bans.c.id == ban_id))).first()

        row = await self._log.run(lift, write=True)
        return None if row is None else _ban(row._mapping)

    async def get(self, ban_id: int) -> Ban | None:
        async def get(conn: AsyncConnection) -> Any:
            return (await conn.execute(bans.select().where(bans.c.id == ban_id))).first()

        row = await self._log.run(get, write=False)
        return None if row is None else _ban(row._mapping)

    async def in_force(self, now_ms: int) -> list[Ban]:
        stmt = bans.select().where(bans.c.lifted_ms.is_(None), sa.or_(
            bans.c.until_ms.is_(None), bans.c.until_ms > now_ms))
        return await self._select(stmt)

    async def find(self, query: BanQuery, now_ms: int) -> list[Ban]:
        stmt = bans.select().order_by(bans.c.id.desc()).limit(query.limit)
        if query.user is not None:
            stmt = stmt.where(bans.c.user_id == query.user)
        if query.jti is not None:
            stmt = stmt.where(bans.c.jti == query.jti)
        if query.before is not None:
            stmt = stmt.where(bans.c.id < query.before)
        ended = sa.and_(bans.c.until_ms.is_not(None), bans.c.until_ms <= now_ms)
        if query.status == "lifted":
            stmt = stmt.where(bans.c.lifted_ms.is_not(None))
        elif query.status == "expired":
            stmt = stmt.where(bans.c.lifted_ms.is_(None), ended)
        elif query.status == "active":
            stmt = stmt.where(bans.c.lifted_ms.is_(None), sa.not_(ended))
        return await self._select(stmt)

    async def _select(self, stmt: sa.Select[Any]) -> list[Ban]:
        async def select(conn: AsyncConnection) -> list[Ban]:
            return [_ban(row._mapping) for row in await conn.execute(stmt)]

        return await self._log.run(select, write=False)


def _ban(row: Any) -> Ban:
    lifted_by = None
    if row["lifted_by_user"] is not None:
        lifted_by = Principal(row["lifted_by_user"], Role(row["lifted_by_role"]))
    return Ban(int(row["id"]), row["user_id"], None if row["role"] is None else Role(row["role"]),
               row["jti"], row["reason"], Principal(row["by_user"], Role(row["by_role"])),
               int(row["created_ms"]), None if row["until_ms"] is None else int(row["until_ms"]),
               None if row["lifted_ms"] is None else int(row["lifted_ms"]), lifted_by)
