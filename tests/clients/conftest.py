"""Fixtures of the client tests: the Python client (``clients/python``) made
importable without installing it, and private servers per test.

* ``make_server``: ``await make_server(websockets=False, ...)`` starts a real
  ``realtime serve`` process (SQLite in tmp_path) with per-test ``REALTIME_*``
  settings; killed at the end of the test, its log checked for exceptions.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"
if str(CLIENT) not in sys.path:
    sys.path.insert(0, str(CLIENT))

from tests.e2e.support import Server  # noqa: E402

MakeServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[MakeServer]:
    made: list[Server] = []

    async def make(**settings: object) -> Server:
        srv = Server(tmp_path / f"server-{len(made)}", None, **settings)
        made.append(srv)
        return await srv.astart()

    yield make
    for srv in made:
        await asyncio.to_thread(srv.kill)
    for srv in made:
        srv.assert_clean_log()
