"""Tables of the SQL log. Changes here need a migration in ``migrations/versions``."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["bans", "claims", "dedup", "messages", "meta", "metadata", "rooms", "snapshots"]

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

# Bans (roomlog.bans): a user id (every role, or one role of it) or one token (jti).
# Rows are never deleted: a lifted or expired ban stays on record.
bans = sa.Table(
    "rt_bans",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(200), nullable=True),
    sa.Column("role", sa.String(32), nullable=True),
    sa.Column("jti", sa.String(128), nullable=True),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("by_user", sa.String(200), nullable=False),
    sa.Column("by_role", sa.String(32), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("until_ms", sa.BigInteger, nullable=True),  # null: until lifted
    sa.Column("lifted_ms", sa.BigInteger, nullable=True),
    sa.Column("lifted_by_user", sa.String(200), nullable=True),
    sa.Column("lifted_by_role", sa.String(32), nullable=True),
    sa.Index("rt_bans_user", "user_id"),
    sa.Index("rt_bans_jti", "jti"),
    sa.Index("rt_bans_lifted", "lifted_ms"),
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

# Keys used once ever (``RoomTxn.claim``, migration 0006): ``payment:{reference}`` is
# a payment reference that funds a request or a tip, in the room named here.
claims = sa.Table(
    "rt_claims",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("room", sa.String(200), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
)
