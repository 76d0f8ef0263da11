"""Tables of the SQL log. Changes here need a migration in ``migrations/versions``."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["dedup", "messages", "metadata", "rooms"]

metadata = sa.MetaData()

# BIGINT on PostgreSQL; SQLite wants INTEGER for an autoincrementing primary key.
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

rooms = sa.Table(
    "rt_rooms",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("epoch", sa.String(32), nullable=False),
    sa.Column("head_seq", sa.BigInteger, nullable=False),
    sa.Column("trimmed_seq", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

messages = sa.Table(
    "rt_messages",
    metadata,
    sa.Column("room_id", sa.BigInteger, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Index("rt_messages_ts", "ts"),
)

# Idempotency: the first result of each (room, actor, client id).
dedup = sa.Table(
    "rt_dedup",
    metadata,
    sa.Column("room_id", sa.BigInteger, primary_key=True),
    sa.Column("actor", sa.String(200), primary_key=True),
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Index("rt_dedup_ts", "ts"),
)
