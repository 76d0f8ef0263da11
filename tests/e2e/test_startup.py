"""Start-up: the server refuses a database whose schema is behind, saying what to run."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import ADMIN_DSN
from tests.e2e.support import Server, free_port, migrate, open_client, unique_room


def refused(srv: Server) -> str:
    """Launch the server and return its output once it has exited with an error."""
    proc = srv.launch()
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        srv.kill()
        raise AssertionError(f"the server started anyway:\n{srv.output()}") from None
    assert code != 0, srv.output()
    return srv.output()


@pytest.fixture
async def fresh_pg() -> AsyncIterator[str]:
    """An empty PostgreSQL database of its own, dropped afterwards; its SQLAlchemy URL."""
    name = f"rt_e2e_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(ADMIN_DSN, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def test_unmigrated_postgres_is_refused_until_migrated(
    fresh_pg: str, tmp_path: Path,
) -> None:
    srv = Server(tmp_path / "pg", fresh_pg)
    output = await asyncio.to_thread(refused, srv)
    assert "roomlog migrate" in output
    assert "Traceback" not in output  # a message, not a crash

    await asyncio.to_thread(migrate, fresh_pg)
    await srv.astart()
    try:
        client = await open_client(srv.ws_url)
        ack = await client.publish(unique_room(), "works")
        assert ack["seq"] == 1
        await client.close()
    finally:
        await srv.astop()


async def test_sqlite_without_auto_migrate_is_refused(tmp_path: Path) -> None:
    srv = Server(tmp_path / "lite", auto_migrate="no")
    output = await asyncio.to_thread(refused, srv)
    assert "roomlog migrate" in output and "Traceback" not in output


async def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    srv = Server(tmp_path / "down", url)
    output = await asyncio.to_thread(refused, srv)
    assert "cannot reach the database" in output and "Traceback" not in output
