"""The PostgreSQL bus's rate buckets hand out several tokens in one statement.

A round of ``take`` asks for the tokens of every write of one key that came in
while the last statement ran; ``granted`` keeps how many it handed out, which
RETURNING cannot compute from the new row (as ``wait`` does). The table is
UNLOGGED and its rows are a cache of rates: the column starts at 0.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rt_bus_buckets",
                  sa.Column("granted", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("rt_bus_buckets", "granted")
