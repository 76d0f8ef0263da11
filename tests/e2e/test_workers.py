"""``roomlog serve --workers N``: several processes on one port, sharing PostgreSQL and
the PostgreSQL bus (LISTEN/NOTIFY); SQLite refused.

The kernel spreads connections over the workers (SO_REUSEPORT): with 18 clients, the
chance that every one lands on the same of two workers is 2^-17, and the test checks
where they landed (each worker's ``/health/ready`` names its instance and counts its
connections) before it relies on it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SECRET
from tests.e2e.support import TIMEOUT, Server, open_client, unique_room

SUBSCRIBERS = 16
PER_PUBLISHER = 40


async def _connections_per_worker(srv: Server, want: int) -> dict[str, int]:
    """Each worker's count of open WebSockets, once they add up to ``want`` (a new
    HTTP connection per request, so the kernel picks a worker each time)."""
    seen: dict[str, int] = {}
    for _ in range(400):
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            body: dict[str, Any] = (await http.get(srv.base + "/health/ready")).json()
        seen[body["instance"]] = body["connections"]
        if len(seen) == 2 and sum(seen.values()) == want:
            return seen
        await asyncio.sleep(0.02)
    raise AssertionError(f"connections per worker never added up to {want}: {seen}")


async def test_clients_on_both_workers_get_every_message_in_order(
        tmp_path: Path, pg_migrated: str) -> None:
    srv = await Server(tmp_path / "hub", pg_migrated, workers=2).astart()
    room = unique_room()
    clients = []
    try:
        # Ready means one worker answers: wait for both, or all clients land on one.
        await _connections_per_worker(srv, 0)
        subscribers = [await open_client(srv.ws_url, user=f"s{i}") for i in range(SUBSCRIBERS)]
        publishers = [await open_client(srv.ws_url, user=f"p{i}") for i in range(2)]
        clients = subscribers + publishers
        for client in subscribers:
            await client.subscribe(room)
        per_worker = await _connections_per_worker(srv, len(clients))
        assert len(per_worker) == 2 and min(per_worker.values()) > 0, per_worker

        async def publish(index: int) -> None:
            for n in range(PER_PUBLISHER):
                await publishers[index].publish(room, {"from": index, "n": n})

        await asyncio.gather(publish(0), publish(1))
        total = 2 * PER_PUBLISHER
        for client in subscribers:
            frames = await client.messages(room, total)
            assert [f["seq"] for f in frames] == list(range(1, total + 1))
            for index in (0, 1):  # each publisher's messages in the order it sent them
                ns = [f["data"]["n"] for f in frames if f["data"]["from"] == index]
                assert ns == list(range(PER_PUBLISHER))
    finally:
        for client in clients:
            await client.close()
        assert await srv.astop() == 0
    srv.assert_clean_log()


def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ROOMLOG_")}
    return subprocess.run([sys.executable, "-m", "roomlog", "serve", *args], cwd=tmp_path,
                          env=base | {"ROOMLOG_SECRET": SECRET} | env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_sqlite_with_several_workers_is_refused_with_advice(tmp_path: Path) -> None:
    done = _serve(tmp_path, "--workers", "2", "--port", "0")
    assert done.returncode != 0
    assert "--workers 2 needs PostgreSQL" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    env_done = _serve(tmp_path, "--port", "0", ROOMLOG_WORKERS="3")
    assert env_done.returncode != 0 and "--workers 3 needs PostgreSQL" in env_done.stderr


def test_several_workers_without_a_shared_bus_are_refused(tmp_path: Path,
                                                          pg_migrated: str) -> None:
    done = _serve(tmp_path, "--workers", "2", "--port", "0", ROOMLOG_DATABASE_URL=pg_migrated,
                  ROOMLOG_BUS="memory")
    assert done.returncode != 0
    assert "need a bus between them" in done.stderr, done.stderr
