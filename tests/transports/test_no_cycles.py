"""Closed connections leave no reference cycles (issue #10, section 3).

A cycle is freed only when the collector's oldest generation runs; with many
connections opened and closed that is memory held for minutes (and, with the
collector tuned to run it rarely, for good: RSS grew 22 KiB per closed connection).
The hub runs in this process under uvicorn, with the protocols ``roomlog serve``
uses, on a real socket; clients connect, subscribe and close, or never send
``connect``. With the collector off, nothing of theirs may be left for it to find.
"""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import uvicorn
from websockets.asyncio.client import connect

from roomlog.app import build_services, create_app
from roomlog.auth import Tokens
from roomlog.identity import Role
from roomlog.settings import Settings
from roomlog.transports.uvicorn_http import BoundedHttpProtocol
from roomlog.transports.uvicorn_ws import DirectSendProtocol
from tests.conftest import SECRET
from tests.ports import free_port

OURS = ("roomlog.", "uvicorn.", "websockets.server", "websockets.protocol")


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[int]:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/hub.db", secret=SECRET,
                        secret_file=str(tmp_path / ".secret"), media_dir=str(tmp_path))
    port = free_port()
    config = uvicorn.Config(create_app(settings, build_services(settings)), port=port,
                            ws=DirectSendProtocol, http=BoundedHttpProtocol,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
        await asyncio.sleep(0.02)
    yield port
    server.should_exit = True
    await task


async def churn(port: int, token: str, n: int) -> None:
    for i in range(n):
        async with connect(f"ws://127.0.0.1:{port}/ws",
                           subprotocols=["roomlog.v1.json"]) as ws:  # type: ignore[list-item]
            if i % 3:  # every third one never sends connect
                await ws.send(orjson.dumps({"type": "connect", "token": token}).decode())
                await ws.recv()
                await ws.send(orjson.dumps({"type": "subscribe",
                                            "room": f"chat:cycles-{i % 2}"}).decode())
                await ws.recv()


async def test_closed_connections_leave_no_cycles(hub: int) -> None:
    token = Tokens(SECRET).issue("churner", Role.GUEST)
    await churn(hub, token, 3)  # warm up: first-use caches, the rooms
    await asyncio.sleep(0.2)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await churn(hub, token, 15)
        await asyncio.sleep(0.5)  # the server's side of the last close
        gc.collect()
        left = Counter(type(o).__module__ + "." + type(o).__qualname__ for o in gc.garbage
                       if type(o).__module__.startswith(OURS))
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
        gc.enable()
    assert not left, left
