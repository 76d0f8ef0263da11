"""The database goes away under a running server (a private PostgreSQL, stopped
and started again): readiness says so, writes are UNAVAILABLE, the log holds a
warning per outage (never a traceback), and everything works once it is back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.support import Server, bearer, migrate, unique_room
from tests.pg_server import PgServer


@pytest.fixture
def private_pg() -> Iterator[PgServer]:
    pg = PgServer().start()
    try:
        yield pg
    finally:
        pg.cleanup()


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds; 20 s is the bound of a broken server."""
    try:
        async with asyncio.timeout(20.0):
            while not await check():  # noqa: ASYNC110 (polling another process)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_an_outage_is_one_warning_and_the_server_recovers(
        private_pg: PgServer, tmp_path: Path, http: httpx.AsyncClient) -> None:
    await asyncio.to_thread(migrate, private_pg.url)
    srv = Server(tmp_path / "srv", private_pg.url, retention_interval=0.2)
    await srv.astart()
    try:
        room = unique_room()
        publish = f"{srv.base}/v1/rooms/{room}/messages"
        assert (await http.post(publish, json={"id": "a", "data": 1},
                                headers=bearer())).status_code == 201

        await asyncio.to_thread(private_pg.stop)

        async def unready() -> bool:
            return (await http.get(srv.base + "/health/ready")).status_code == 503

        await _until(unready, "readiness to fail")
        failed = await http.post(publish, json={"id": "b", "data": 2}, headers=bearer())
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "UNAVAILABLE"

        async def warned() -> bool:
            return "retention sweep skipped" in srv.output()

        await _until(warned, "the sweep's warning")
        await asyncio.sleep(1.0)  # five more sweeps fail meanwhile
        assert srv.output().count("retention sweep skipped") == 1

        await asyncio.to_thread(private_pg.start)

        async def ready() -> bool:
            return (await http.get(srv.base + "/health/ready")).status_code == 200

        await _until(ready, "readiness to recover")
        again = await http.post(publish, json={"id": "b", "data": 2}, headers=bearer())
        assert again.status_code == 201 and again.json()["seq"] == 2
        await _until(lambda: _said(srv, "retention sweep works again"), "the sweep to recover")
        output = srv.output()
        assert "Traceback" not in output and "ERROR" not in output, output[-3000:]
    finally:
        await srv.astop()


async def _said(srv: Server, text: str) -> bool:
    return text in srv.output()
