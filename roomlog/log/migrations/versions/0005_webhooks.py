"""Webhooks: endpoints, per-room cursors, recent attempts, delivery leases.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rt_webhooks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("rooms", sa.Text, nullable=False),
        sa.Column("events", sa.Text, nullable=False),
        sa.Column("secrets", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("batch_max", sa.Integer, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("disabled_ms", sa.BigInteger, nullable=True),
        sa.Column("disabled_reason", sa.String(500), nullable=True),
    )
    op.create_table(
        "rt_webhook_cursors",
        sa.Column("endpoint_id", sa.String(40), primary_key=True),
        sa.Column("room", sa.String(200), primary_key=True),
        sa.Column("epoch", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("failing_since_ms", sa.BigInteger, nullable=True),
        sa.Column("rewind", sa.BigInteger, nullable=True),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rt_webhook_attempts",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("endpoint_id", sa.String(40), nullable=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("room", sa.String(200), nullable=False),
        sa.Column("webhook_id", sa.String(300), nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("error", sa.String(300), nullable=True),
    )
    op.create_index("rt_webhook_attempts_endpoint", "rt_webhook_attempts",
                    ["endpoint_id", "id"])
    op.create_table(
        "rt_webhook_leases",
        sa.Column("endpoint_id", sa.String(40), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("until_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("rt_webhook_leases", "rt_webhook_attempts", "rt_webhook_cursors",
                  "rt_webhooks"):
        op.drop_table(table)
