"""No unauthenticated stall (issue #10, section 5): a request head is bounded in
size (``max_header_bytes``: 431) and in time (``header_timeout``: 408), before any
token is read, and a healthy subscriber beside the hostile sockets loses nothing.

The test runs 300 slow sockets to stay within seconds; ``loadtest/soak.py
--slow-headers 1000`` shows the full scale.
"""

from __future__ import annotations

import asyncio
import contextlib

from roomlog.identity import Role
from tests.e2e.conftest import MakeServer
from tests.e2e.support import TIMEOUT, Server, open_client, unique_room

SLOW_SOCKETS = 300


async def status_of(reader: asyncio.StreamReader) -> int | None:
    """The status of the response on ``reader``, None if the connection just ended."""
    with contextlib.suppress(ConnectionError):
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        if line.startswith(b"HTTP/1.1 "):
            return int(line.split()[1])
    return None


async def healthy_beside(srv: Server, attack: asyncio.Task[list[int | None]]) -> None:
    """A subscriber gets every one of 200 messages while ``attack`` runs."""
    room = unique_room()
    sub = await open_client(srv.ws_url, user="healthy")
    await sub.subscribe(room)
    pub = await open_client(srv.ws_url, user="backend", role=Role.SERVICE)
    for n in range(20):
        await pub.publish_many(room, [{"n": n * 10 + i} for i in range(10)])
        await asyncio.sleep(0.05)
    got = await sub.messages(room, 200)
    assert [m["data"]["n"] for m in got] == list(range(200))
    await sub.ping()
    assert not [f for f in sub.frames if f["type"] == "message"]
    for client in (sub, pub):
        await client.close()


async def test_a_huge_header_is_refused_with_431(make_server: MakeServer) -> None:
    srv = await make_server()

    async def huge() -> list[int | None]:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 1_048_576
        with contextlib.suppress(ConnectionError):
            for _ in range(96):  # 96 MiB
                writer.write(chunk)
                await writer.drain()
        status = await status_of(reader)
        writer.close()
        return [status]

    attack = asyncio.create_task(huge())
    await healthy_beside(srv, attack)
    assert await attack == [431]


async def test_slow_headers_are_cut_off_with_408(make_server: MakeServer) -> None:
    srv = await make_server(header_timeout=1)

    async def slow_one() -> int | None:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        head = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        status: int | None = None
        try:
            for byte in head:  # one byte every half second: never done in time
                writer.write(bytes([byte]))
                await writer.drain()
                if reader.at_eof() or await _answered(reader):
                    break
                await asyncio.sleep(0.5)
            status = await status_of(reader)
        except ConnectionError:
            pass
        writer.close()
        return status

    async def slow_many() -> list[int | None]:
        return list(await asyncio.gather(*(slow_one() for _ in range(SLOW_SOCKETS))))

    attack = asyncio.create_task(slow_many())
    await healthy_beside(srv, attack)
    statuses = await asyncio.wait_for(attack, 60)
    assert set(statuses) <= {408, None} and statuses.count(408) >= SLOW_SOCKETS * 0.9


async def _answered(reader: asyncio.StreamReader) -> bool:
    """Whether the server has answered (bytes waiting), without consuming them."""
    return len(reader._buffer) > 0
