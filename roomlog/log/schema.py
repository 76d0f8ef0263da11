"""Tables of the SQL log. Changes here need a migration in ``migrations/versions``."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["dedup", "messages", "meta", "metadata", "rooms", "snapshots"]

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
    # seq of the room's state snapshot (domain rooms); retention never trims past it
    sa.Column("snapshot_seq", sa.BigInteger, nullable=True),
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
    sa.Column("result", sa.LargeBinary, nullable=True),  # a command's result, JSON
    sa.Index("rt_dedup_ts", "ts"),
)

# The latest state of a domain room, so rebuilding it reads only the events after.
snapshots = sa.Table(
    "rt_snapshots",
    metadata,
    sa.Column("room_id", sa.BigInteger, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("state", sa.LargeBinary, nullable=False),
)

# Facts about the database itself, one row each (migration 0003):
# ``epoch_salt``: random; with a room's name it makes the epoch of a room never written
# (``roomlog.log.rows``); ``ready_probe``: written by each readiness check.
meta = sa.Table(
    "rt_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)
