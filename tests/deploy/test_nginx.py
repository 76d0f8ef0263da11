"""deploy/nginx/roomlog.conf: valid for ``nginx -t``, and a real hub works through it
(WebSocket upgrade, SSE without buffering, long-polling), with no token in nginx's log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from roomlog.identity import Role
from tests.deploy.nginx import Nginx, check, write_config
from tests.e2e.support import (
    TIMEOUT,
    Server,
    bearer,
    free_port,
    issue_token,
    open_client,
    unique_room,
)


def test_nginx_accepts_the_example(tmp_path: Path) -> None:
    done = check(write_config(tmp_path, free_port(), [8001, 8002]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test is successful" in done.stderr


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "hub", log_level="info", sse_keepalive=1).start()
    try:
        yield srv
    finally:
        srv.stop()
    srv.assert_clean_log()


@pytest.fixture
async def proxy(tmp_path: Path, hub: Server) -> AsyncIterator[str]:
    """nginx in front of ``hub``; its base URL."""
    port = free_port()
    nginx = Nginx(write_config(tmp_path / "nginx", port, [hub.port]))
    try:
        await asyncio.to_thread(nginx.wait_listening, port)
        yield f"127.0.0.1:{port}"
    finally:
        await asyncio.to_thread(nginx.stop)
    assert "[emerg]" not in nginx.output() and "[crit]" not in nginx.output(), nginx.output()


async def test_websocket_sse_and_long_poll_through_nginx(proxy: str, hub: Server,
                                                         tmp_path: Path) -> None:
    room = unique_room()
    token = issue_token("sam", Role.GUEST)
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        # SSE through the proxy with ?token= (as EventSource sends it); events must
        # arrive while the stream is open: nothing buffered.
        async with http.stream("GET", f"http://{proxy}/v1/rooms/{room}/events",
                               params={"token": token}) as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            async for line in lines:
                if line.startswith("data:") and '"subscribed"' in line:
                    break
            # a WebSocket through the proxy publishes; the SSE stream gets it live
            ws = await open_client(f"ws://{proxy}/ws")
            await ws.subscribe(room)
            ack = await ws.publish(room, {"text": "through nginx"})
            assert ack["seq"] == 1
            assert (await ws.messages(room, 1))[0]["data"] == {"text": "through nginx"}
            async for line in lines:
                if line.startswith("data:"):
                    assert "through nginx" in line, line
                    break
            # a keep-alive comment (1 s here) passes too: the stream stays open
            async for line in lines:
                if line.startswith(":"):
                    break

            # a long-poll waits at the hub, through the proxy, until a message comes
            async def later() -> None:
                await asyncio.sleep(0.3)
                await ws.publish(room, {"text": "second"})

            poll, _ = await asyncio.gather(
                http.get(f"http://{proxy}/v1/rooms/{room}/messages",
                         params={"after": 1, "wait": 20}, headers=bearer("sam", Role.GUEST)),
                later())
            assert poll.status_code == 200, poll.text
            assert [f["data"] for f in poll.json()["frames"]] == [{"text": "second"}]
            await ws.close()
        given = await http.get(f"http://{proxy}/health/ready")
        assert given.status_code == 200 and len(given.headers["x-request-id"]) == 32
    await asyncio.sleep(0.2)  # nginx writes its access line when a request ends
    access = (tmp_path / "nginx" / "logs" / "roomlog.access.log").read_text()
    assert "/v1/rooms/" in access and "GET /ws" in access
    assert token.split(".")[2] not in access and "token=" not in access, access
    # the hub logged the same request id nginx made
    assert f"req={given.headers['x-request-id']}" in hub.output()
