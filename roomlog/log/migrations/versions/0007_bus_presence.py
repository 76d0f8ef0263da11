"""The PostgreSQL bus (``roomlog/bus/postgres.py``): live instances and their presence.

Both tables hold what a restart may lose (instances beat again and write their
presence again), so on PostgreSQL they are UNLOGGED: no WAL per join and leave.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE UNLOGGED TABLE rt_bus_instances ("
                   "instance VARCHAR(200) PRIMARY KEY, beat_ms BIGINT NOT NULL)")
        op.execute("CREATE UNLOGGED TABLE rt_bus_presence ("
                   "room VARCHAR(200) NOT NULL, conn VARCHAR(200) NOT NULL, "
                   "instance VARCHAR(200) NOT NULL, entry TEXT NOT NULL, "
                   "PRIMARY KEY (room, conn))")
        op.execute("CREATE INDEX rt_bus_presence_instance ON rt_bus_presence (instance)")
        op.execute("CREATE UNLOGGED TABLE rt_bus_buckets (key VARCHAR(200) PRIMARY KEY, "
                   "tokens DOUBLE PRECISION NOT NULL, at_ms BIGINT NOT NULL, "
                   "wait DOUBLE PRECISION NOT NULL)")
        return
    # SQLite serves one process and never runs this bus; the tables keep schemas alike.
    op.create_table(
        "rt_bus_instances",
        sa.Column("instance", sa.String(200), primary_key=True),
        sa.Column("beat_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rt_bus_presence",
        sa.Column("room", sa.String(200), primary_key=True),
        sa.Column("conn", sa.String(200), primary_key=True),
        sa.Column("instance", sa.String(200), nullable=False),
        sa.Column("entry", sa.Text, nullable=False),
    )
    op.create_index("rt_bus_presence_instance", "rt_bus_presence", ["instance"])
    op.create_table(
        "rt_bus_buckets",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("wait", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rt_bus_buckets")
    op.drop_table("rt_bus_presence")
    op.drop_table("rt_bus_instances")
