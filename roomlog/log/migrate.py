"""Versioned schema migrations (Alembic), run on an async engine.

``roomlog migrate`` calls :func:`upgrade`; the server calls :func:`pending` at
start and refuses to run on a database that is behind.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["pending", "upgrade"]

_SCRIPTS = Path(__file__).with_name("migrations")


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent)."""

    def run(connection: Connection) -> None:
        command.upgrade(_config(connection), "head")

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def pending(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """(current revision, newest revision); equal when nothing is pending."""

    def current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        now = await conn.run_sync(current)
    return now, ScriptDirectory.from_config(_config()).get_current_head()
