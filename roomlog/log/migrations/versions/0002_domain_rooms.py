"""Domain rooms: command results, state snapshots.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rt_rooms") as batch:
        batch.add_column(sa.Column("snapshot_seq", sa.BigInteger, nullable=True))
    with op.batch_alter_table("rt_dedup") as batch:
        batch.add_column(sa.Column("result", sa.LargeBinary, nullable=True))
    op.create_table(
        "rt_snapshots",
        sa.Column("room_id", sa.BigInteger, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rt_snapshots")
    with op.batch_alter_table("rt_dedup") as batch:
        batch.drop_column("result")
    with op.batch_alter_table("rt_rooms") as batch:
        batch.drop_column("snapshot_seq")
