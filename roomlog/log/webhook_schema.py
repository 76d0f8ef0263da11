"""Tables of webhooks (migration 0005): endpoints, their cursors, attempts and leases.

On the log's own ``metadata`` and database; ``roomlog/log/webhooks.py`` is the
adapter that reads and writes them.
"""

from __future__ import annotations

import sqlalchemy as sa

from roomlog.log.schema import metadata

__all__ = ["webhook_attempts", "webhook_cursors", "webhook_leases", "webhooks"]

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# One row per endpoint. ``rooms``, ``events`` and ``secrets`` are JSON lists.
# ``version`` grows with every change an operator makes (the delivering instance
# reloads the endpoint when it sees a new one).
webhooks = sa.Table(
    "rt_webhooks",
    metadata,
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

# Where an endpoint is in one room: every seq <= ``seq`` of ``epoch`` was delivered
# (or filtered out). ``failing_since_ms``: the first failed attempt of the
# delivery now pending (null while healthy). ``rewind``: an operator's redelivery,
# applied by the instance that delivers the endpoint.
webhook_cursors = sa.Table(
    "rt_webhook_cursors",
    metadata,
    sa.Column("endpoint_id", sa.String(40), primary_key=True),
    sa.Column("room", sa.String(200), primary_key=True),
    sa.Column("epoch", sa.String(32), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("failing_since_ms", sa.BigInteger, nullable=True),
    sa.Column("rewind", sa.BigInteger, nullable=True),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)

# Recent attempts of each endpoint (the newest ``webhook_attempts_kept`` are kept).
webhook_attempts = sa.Table(
    "rt_webhook_attempts",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("endpoint_id", sa.String(40), nullable=False),
    sa.Column("ts_ms", sa.BigInteger, nullable=False),
    sa.Column("room", sa.String(200), nullable=False),
    sa.Column("webhook_id", sa.String(300), nullable=False),
    sa.Column("first_seq", sa.BigInteger, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("status", sa.Integer, nullable=True),  # HTTP status; null: no answer
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("error", sa.String(300), nullable=True),
    sa.Index("rt_webhook_attempts_endpoint", "endpoint_id", "id"),
)

# Which instance delivers an endpoint, until when (PostgreSQL; SQLite is one process).
webhook_leases = sa.Table(
    "rt_webhook_leases",
    metadata,
    sa.Column("endpoint_id", sa.String(40), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("until_ms", sa.BigInteger, nullable=False),
)
