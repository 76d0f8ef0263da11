"""Rooms are created by their first write: the salt of their epochs, the readiness probe.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table(
        "rt_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
    )
    # Random per database, so a recreated database never hands out an epoch again.
    op.bulk_insert(meta, [{"key": "epoch_salt", "value": secrets.token_hex(16)},
                          {"key": "ready_probe", "value": "0"}])


def downgrade() -> None:
    op.drop_table("rt_meta")
