"""Bans: users, roles of users and tokens an admin banned.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rt_bans",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("role", sa.String(32), nullable=True),
        sa.Column("jti", sa.String(128), nullable=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("by_user", sa.String(200), nullable=False),
        sa.Column("by_role", sa.String(32), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("until_ms", sa.BigInteger, nullable=True),
        sa.Column("lifted_ms", sa.BigInteger, nullable=True),
        sa.Column("lifted_by_user", sa.String(200), nullable=True),
        sa.Column("lifted_by_role", sa.String(32), nullable=True),
    )
    op.create_index("rt_bans_user", "rt_bans", ["user_id"])
    op.create_index("rt_bans_jti", "rt_bans", ["jti"])
    op.create_index("rt_bans_lifted", "rt_bans", ["lifted_ms"])


def downgrade() -> None:
    op.drop_table("rt_bans")
