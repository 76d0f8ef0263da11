"""The SQL adapter of the PaymentIndex port (``roomlog.payments``): the ``rt_claims``
table the command path writes (``RoomTxn.claim``), read on the log's own database."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from roomlog.log.schema import claims
from roomlog.log.sql import SqlLog
from roomlog.payments import Used

__all__ = ["SqlPaymentIndex"]

_PAYMENT = "payment:"


class SqlPaymentIndex:
    def __init__(self, log: SqlLog) -> None:
        self._log = log

    async def rooms(self, since_ms: int) -> list[str]:
        stmt = (sa.select(claims.c.room).distinct()
                .where(claims.c.ts >= since_ms, claims.c.key.startswith(_PAYMENT))
                .order_by(claims.c.room))

        async def select(conn: AsyncConnection) -> list[str]:
            return [str(row[0]) for row in await conn.execute(stmt)]

        return await self._log.run(select, write=False)

    async def reference(self, reference: str) -> Used | None:
        stmt = sa.select(claims.c.room, claims.c.ts).where(claims.c.key == _PAYMENT + reference)

        async def select(conn: AsyncConnection) -> Any:
            return (await conn.execute(stmt)).first()

        row = await self._log.run(select, write=False)
        return None if row is None else Used(str(row[0]), int(row[1]))
