"""Heartbeats: silent sockets are closed, app-level ping is answered.

* A socket that never sends ``connect`` gets UNAUTHORIZED and close 4001.
* ``ping`` gets ``pong`` (with the client's id).
* A client that completes the WebSocket handshake but never answers the
  server's WebSocket pings is closed by the server; one that answers stays.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import MakeServer
from tests.e2e.support import RawWs, Server, issue_token, open_client


@pytest.fixture
async def srv(make_server: MakeServer) -> Server:
    return await make_server(connect_timeout=0.5, ping_interval=0.3, ping_timeout=0.5)


async def test_no_connect_in_time_is_closed_with_4001(srv: Server) -> None:
    silent = await open_client(srv.ws_url, connect_frame=False, ping_interval=None)
    error = await silent.expect("error")
    assert error["code"] == "UNAUTHORIZED" and "connect" in error["message"]
    assert await silent.closed() == 4001
    # The same server accepts a client that does connect.
    client = await open_client(srv.ws_url, ping_interval=None)
    assert (await client.ping())["type"] == "pong"
    await client.close()


async def test_ping_gets_pong(server: Server) -> None:
    client = await open_client(server.ws_url)
    for _ in range(3):
        pong = await client.ping()
        assert set(pong) == {"type", "id"}
    await client.send({"type": "ping"})
    assert await client.next() == {"type": "pong"}
    await client.close()


async def test_a_client_that_never_answers_pings_is_closed(srv: Server) -> None:
    # A well-behaved client (the library answers pings), connected first.
    alive = await open_client(srv.ws_url, ping_interval=None)

    dead = await RawWs.open(srv.port)
    await dead.send_text({"type": "connect", "token": issue_token("dead")})
    assert (await dead.expect("connected"))["user"] == "dead"
    assert not dead.answer_pings  # it reads, but never sends a pong
    frames, code = await dead.until_closed()
    assert code == 1011  # "keepalive ping timeout"
    assert dead.pings >= 1
    assert not [f for f in frames if f["type"] == "error"]
    dead.close()

    # The one that answered lived through the same pings and is still served.
    assert alive.close_code is None
    assert (await alive.ping())["type"] == "pong"
    await alive.close()
