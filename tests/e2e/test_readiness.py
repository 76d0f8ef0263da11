"""``/health/ready`` proves that a write can commit now (issue 10, section 1).

It used to run ``SELECT 1``: a SQLite database whose write lock was held for good
(a wedged writer, another process) and a PostgreSQL that only takes reads (a
failover to a standby, a read-only switch) answered ``ok`` while every publish
failed. The readiness check now commits a write through the writer every write
takes, bounded by ``ready_timeout``.
"""

from __future__ import annotations

import sqlite3

import asyncpg
import httpx

from tests.conftest import ADMIN_DSN
from tests.e2e.conftest import MakeServer
from tests.e2e.support import Server, migrate, open_client, unique_room


async def _ready(http: httpx.AsyncClient, srv: Server) -> tuple[int, dict[str, object]]:
    reply = await http.get(srv.base + "/health/ready")
    return reply.status_code, reply.json()


async def test_a_locked_sqlite_database_is_not_ready(make_server: MakeServer,
                                                     http: httpx.AsyncClient) -> None:
    srv = await make_server(ready_timeout=0.5)
    assert (await _ready(http, srv))[0] == 200
    holder = sqlite3.connect(srv.workdir / "roomlog.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        status, body = await _ready(http, srv)
        assert status == 503, body
        assert body["status"] == "unavailable" and body["database"] != "ok", body
        assert body["bus"] == "ok"  # what works is still said to work
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    status, body = await _ready(http, srv)
    assert (status, body["status"], body["database"]) == (200, "ok", "ok"), body
    client = await open_client(srv.ws_url)
    assert (await client.publish(unique_room(), {"n": 1}))["seq"] == 1
    await client.close()


async def _read_only(url: str, on: bool) -> None:
    """Make the database take reads only (as a standby does), and cut its connections
    so that the server's pool reconnects into the new default."""
    database = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        action = "SET default_transaction_read_only = on" if on else "RESET ALL"
        await admin.execute(f'ALTER DATABASE "{database}" {action}')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1 AND pid <> pg_backend_pid()", database)
    finally:
        await admin.close()


async def test_a_read_only_postgresql_is_not_ready(make_server: MakeServer,
                                                   http: httpx.AsyncClient,
                                                   own_pg_url: str) -> None:
    migrate(own_pg_url)
    srv = await make_server(own_pg_url, ready_timeout=5)
    assert (await _ready(http, srv))[0] == 200
    await _read_only(own_pg_url, True)
    status, body = await _ready(http, srv)
    assert status == 503 and body["status"] == "unavailable", body
    await _read_only(own_pg_url, False)
    status, body = await _ready(http, srv)
    assert (status, body["status"]) == (200, "ok"), body
