"""The room log: rooms, messages, idempotency records.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rt_rooms",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("epoch", sa.String(32), nullable=False),
        sa.Column("head_seq", sa.BigInteger, nullable=False),
        sa.Column("trimmed_seq", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rt_messages",
        sa.Column("room_id", sa.BigInteger, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("rt_messages_ts", "rt_messages", ["ts"])
    op.create_table(
        "rt_dedup",
        sa.Column("room_id", sa.BigInteger, primary_key=True),
        sa.Column("actor", sa.String(200), primary_key=True),
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
    )
    op.create_index("rt_dedup_ts", "rt_dedup", ["ts"])


def downgrade() -> None:
    op.drop_table("rt_dedup")
    op.drop_table("rt_messages")
    op.drop_table("rt_rooms")
