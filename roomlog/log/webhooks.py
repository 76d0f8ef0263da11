"""The SQL adapter of the webhook ports (``roomlog.webhooks.store``): endpoints,
cursors, attempts and leases, on the log's own database (``SqlLog.run``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from roomlog.log import RoomInfo
from roomlog.log.schema import rooms
from roomlog.log.sql import SqlLog
from roomlog.log.webhook_schema import (
    webhook_attempts,
    webhook_cursors,
    webhook_leases,
    webhooks,
)
from roomlog.webhooks.core import Cursor
from roomlog.webhooks.endpoint import Endpoint, Secret, like_prefixes
from roomlog.webhooks.store import Attempt

__all__ = ["SqlLeases", "SqlWebhooks"]


class SqlWebhooks:
    def __init__(self, log: SqlLog) -> None:
        self._log = log
        self._sqlite = log.url.startswith("sqlite")

    def _insert(self, table: sa.Table) -> Any:
        return (sqlite.insert if self._sqlite else postgresql.insert)(table)

    # -- endpoints -------------------------------------------------------------

    async def create(self, endpoint: Endpoint) -> None:
        async def work(conn: AsyncConnection) -> None:
            await conn.execute(webhooks.insert().values(_row(endpoint)))
            await self._start_at_heads(conn, endpoint)

        await self._log.run(work, write=True)

    async def _start_at_heads(self, conn: AsyncConnection, endpoint: Endpoint) -> None:
        """A cursor at the head of every followed room that has none."""
        select = sa.select(sa.literal(endpoint.id), rooms.c.name, rooms.c.epoch,
                           rooms.c.head_seq, sa.literal(endpoint.updated_ms)).where(
            _follows(endpoint))
        stmt = self._insert(webhook_cursors).from_select(
            ["endpoint_id", "room", "epoch", "seq", "updated_ms"], select)
        await conn.execute(stmt.on_conflict_do_nothing())

    async def get(self, endpoint_id: str) -> Endpoint | None:
        async def work(conn: AsyncConnection) -> Any:
            return (await conn.execute(webhooks.select().where(
                webhooks.c.id == endpoint_id))).first()

        row = await self._log.run(work, write=False)
        return None if row is None else _endpoint(row._mapping)

    async def all(self) -> list[Endpoint]:
        async def work(conn: AsyncConnection) -> list[Endpoint]:
            rows = await conn.execute(webhooks.select().order_by(webhooks.c.created_ms,
                                                                 webhooks.c.id))
            return [_endpoint(row._mapping) for row in rows]

        return await self._log.run(work, write=False)

    async def update(self, endpoint: Endpoint, *, widened: bool,
                     reenabled: bool = False) -> bool:
        async def work(conn: AsyncConnection) -> bool:
            values = _row(endpoint)
            del values["id"]
            values["version"] = webhooks.c.version + 1
            result = await conn.execute(webhooks.update().where(
                webhooks.c.id == endpoint.id).values(values))
            if result.rowcount == 0:
                return False
            if widened:
                await self._start_at_heads(conn, endpoint)
            if reenabled:
                await conn.execute(webhook_cursors.update().where(
                    webhook_cursors.c.endpoint_id == endpoint.id).values(
                    failing_since_ms=None))
            return True

        return await self._log.run(work, write=True)

    async def delete(self, endpoint_id: str) -> bool:
        async def work(conn: AsyncConnection) -> bool:
            # the lease first: a cursor flush locks it before the cursors (no lock cycle)
            await conn.execute(webhook_leases.delete().where(
                webhook_leases.c.endpoint_id == endpoint_id))
            result = await conn.execute(webhooks.delete().where(webhooks.c.id == endpoint_id))
            for table in (webhook_cursors, webhook_attempts):
                await conn.execute(table.delete().where(table.c.endpoint_id == endpoint_id))
            return bool(result.rowcount)

        return await self._log.run(work, write=True)

    async def disable(self, endpoint_id: str, reason: str, now_ms: int) -> Endpoint | None:
        async def work(conn: AsyncConnection) -> Any:
            await conn.execute(webhooks.update().where(webhooks.c.id == endpoint_id).values(
                enabled=False, disabled_ms=now_ms, disabled_reason=reason[:500],
                updated_ms=now_ms, version=webhooks.c.version + 1))
            return (await conn.execute(webhooks.select().where(
                webhooks.c.id == endpoint_id))).first()

        row = await self._log.run(work, write=True)
        return None if row is None else _endpoint(row._mapping)

    # -- cursors -----------------------------------------------------------------

    async def cursors(self, endpoint_id: str) -> dict[str, Cursor]:
        async def work(conn: AsyncConnection) -> dict[str, Cursor]:
            await self._apply_rewinds(conn, endpoint_id)
            rows = await conn.execute(sa.select(
                webhook_cursors.c.room, webhook_cursors.c.epoch, webhook_cursors.c.seq,
                webhook_cursors.c.failing_since_ms).where(
                webhook_cursors.c.endpoint_id == endpoint_id))
            return {room: Cursor(epoch, seq, failing_since_ms=since)
                    for room, epoch, seq, since in rows}

        return await self._log.run(work, write=True)

    async def take_rewinds(self, endpoint_id: str) -> dict[str, Cursor]:
        async def work(conn: AsyncConnection) -> dict[str, Cursor]:
            return await self._apply_rewinds(conn, endpoint_id)

        return await self._log.run(work, write=True)

    async def _apply_rewinds(self, conn: AsyncConnection, endpoint_id: str
                             ) -> dict[str, Cursor]:
        c = webhook_cursors.c
        rows = list(await conn.execute(sa.select(c.room, c.epoch, c.rewind).where(
            c.endpoint_id == endpoint_id, c.rewind.is_not(None))))
        for room, _, rewind in rows:
            await conn.execute(webhook_cursors.update().where(
                c.endpoint_id == endpoint_id, c.room == room, c.rewind == rewind).values(
                seq=rewind, rewind=None, failing_since_ms=None))
        return {room: Cursor(epoch, rewind) for room, epoch, rewind in rows}

    async def behind(self, endpoint: Endpoint, limit: int) -> list[RoomInfo]:
        c = webhook_cursors.c
        joined = rooms.outerjoin(webhook_cursors, sa.and_(
            c.endpoint_id == endpoint.id, c.room == rooms.c.name))
        stmt = (sa.select(rooms.c.name, rooms.c.epoch, rooms.c.head_seq, rooms.c.trimmed_seq)
                .select_from(joined)
                .where(_follows(endpoint), rooms.c.head_seq > 0, sa.or_(
                    c.room.is_(None), c.epoch != rooms.c.epoch, c.seq < rooms.c.head_seq))
                .limit(limit))

        async def work(conn: AsyncConnection) -> list[RoomInfo]:
            return [RoomInfo(*row) for row in await conn.execute(stmt)]

        return await self._log.run(work, write=False)

    async def save(self, endpoint_id: str, cursors: Mapping[str, Cursor],
                   attempts: Sequence[Attempt], now_ms: int, *, holder: str | None,
                   keep_attempts: int) -> bool:
        rows = [{"endpoint_id": endpoint_id, "room": room, "epoch": cur.epoch, "seq": cur.seq,
                 "failing_since_ms": cur.failing_since_ms, "updated_ms": now_ms}
                for room, cur in cursors.items()]
        tried = [{"endpoint_id": endpoint_id, "ts_ms": a.ts_ms, "room": a.room,
                  "webhook_id": a.webhook_id[:300], "first_seq": a.first, "last_seq": a.last,
                  "status": a.status, "latency_ms": a.latency_ms,
                  "error": None if a.error is None else a.error[:300]} for a in attempts]

        async def work(conn: AsyncConnection) -> bool:
            if holder is not None:  # fenced: only the lease's holder moves cursors
                held = await conn.scalar(sa.select(webhook_leases.c.holder).where(
                    webhook_leases.c.endpoint_id == endpoint_id).with_for_update())
                if held != holder:
                    return False
            elif await conn.scalar(sa.select(webhooks.c.id).where(
                    webhooks.c.id == endpoint_id)) is None:
                return False  # deleted meanwhile: leave no rows behind
            if rows:
                stmt = self._insert(webhook_cursors)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["endpoint_id", "room"],
                    set_={"epoch": stmt.excluded.epoch, "seq": stmt.excluded.seq,
                          "failing_since_ms": stmt.excluded.failing_since_ms,
                          "updated_ms": stmt.excluded.updated_ms})
                await conn.execute(stmt, rows)
            if tried:
                await conn.execute(webhook_attempts.insert(), tried)
                await self._prune(conn, endpoint_id, keep_attempts)
            return True

        return await self._log.run(work, write=True)

    async def _prune(self, conn: AsyncConnection, endpoint_id: str, keep: int) -> None:
        a = webhook_attempts.c
        oldest_kept = await conn.scalar(
            sa.select(a.id).where(a.endpoint_id == endpoint_id).order_by(a.id.desc())
            .offset(keep - 1).limit(1))
        if oldest_kept is not None:
            await conn.execute(webhook_attempts.delete().where(
                a.endpoint_id == endpoint_id, a.id < oldest_kept))

    async def attempts(self, endpoint_id: str, limit: int) -> list[Attempt]:
        a = webhook_attempts.c

        async def work(conn: AsyncConnection) -> list[Attempt]:
            rows = await conn.execute(
                sa.select(a.ts_ms, a.room, a.webhook_id, a.first_seq, a.last_seq, a.status,
                          a.latency_ms, a.error)
                .where(a.endpoint_id == endpoint_id).order_by(a.id.desc()).limit(limit))
            return [Attempt(*row) for row in rows]

        return await self._log.run(work, write=False)

    async def rewind(self, endpoint_id: str, room: str, after: int, now_ms: int) -> RoomInfo:
        async def work(conn: AsyncConnection) -> RoomInfo:
            row = (await conn.execute(sa.select(
                rooms.c.epoch, rooms.c.head_seq, rooms.c.trimmed_seq).where(
                rooms.c.name == room))).first()
            if row is None:
                return RoomInfo(room, "", 0, 0)
            epoch, head, trimmed = row
            target = min(after, head)
            # the endpoint's row first, as every other write of it (no lock cycles)
            await conn.execute(webhooks.update().where(webhooks.c.id == endpoint_id).values(
                version=webhooks.c.version + 1))
            stmt = self._insert(webhook_cursors).values(
                endpoint_id=endpoint_id, room=room, epoch=epoch, seq=target, rewind=target,
                updated_ms=now_ms)
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=["endpoint_id", "room"],
                set_={"rewind": target, "epoch": epoch}))
            return RoomInfo(room, epoch, head, trimmed)

        return await self._log.run(work, write=True)


class SqlLeases:
    """Leases in ``rt_webhook_leases`` (several instances on PostgreSQL)."""

    def __init__(self, log: SqlLog) -> None:
        self._log = log

    async def acquire(self, endpoint_id: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        lease = webhook_leases.c

        async def work(conn: AsyncConnection) -> bool:
            stmt = postgresql.insert(webhook_leases).values(
                endpoint_id=endpoint_id, holder=holder, until_ms=now_ms + ttl_ms)
            stmt = stmt.on_conflict_do_update(
                index_elements=["endpoint_id"],
                set_={"holder": holder, "until_ms": now_ms + ttl_ms},
                where=sa.or_(lease.holder == holder, lease.until_ms < now_ms))
            result = await conn.execute(stmt.returning(lease.holder))
            return result.first() is not None

        return await self._log.run(work, write=True)

    async def release(self, endpoint_id: str, holder: str) -> None:
        async def work(conn: AsyncConnection) -> None:
            await conn.execute(webhook_leases.delete().where(
                webhook_leases.c.endpoint_id == endpoint_id,
                webhook_leases.c.holder == holder))

        await self._log.run(work, write=True)


def _follows(endpoint: Endpoint) -> Any:
    prefixes = like_prefixes(endpoint.rooms)
    if prefixes is None:
        return sa.true()
    exact = [p for p, pattern in zip(prefixes, endpoint.rooms, strict=True)
             if not pattern.endswith("*")]
    starts = [p for p, pattern in zip(prefixes, endpoint.rooms, strict=True)
              if pattern.endswith("*")]
    clauses = [rooms.c.name.startswith(p, autoescape=True) for p in starts]
    if exact:
        clauses.append(rooms.c.name.in_(exact))
    return sa.or_(*clauses)


def _row(e: Endpoint) -> dict[str, Any]:
    return {"id": e.id, "url": e.url, "description": e.description,
            "rooms": orjson.dumps(list(e.rooms)).decode(),
            "events": orjson.dumps(list(e.events)).decode(),
            "secrets": orjson.dumps([s.to_json() for s in e.secrets]).decode(),
            "enabled": e.enabled, "batch_max": e.batch_max, "created_ms": e.created_ms,
            "updated_ms": e.updated_ms, "version": e.version, "disabled_ms": e.disabled_ms,
            "disabled_reason": e.disabled_reason}


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        id=row["id"], url=row["url"], description=row["description"],
        rooms=tuple(orjson.loads(row["rooms"])), events=tuple(orjson.loads(row["events"])),
        secrets=tuple(Secret.from_json(s) for s in orjson.loads(row["secrets"])),
        enabled=bool(row["enabled"]), batch_max=int(row["batch_max"]),
        created_ms=int(row["created_ms"]), updated_ms=int(row["updated_ms"]),
        version=int(row["version"]), disabled_ms=row["disabled_ms"],
        disabled_reason=row["disabled_reason"])
