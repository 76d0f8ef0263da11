"""The Python client's first minutes, as a new user meets them, against real server
processes: ``await sub.next()``; ``fail_fast=True`` makes a wrong URL, a port nobody
listens on or a refused token an exception at ``start()`` instead of an endless silent
wait; without it the first failure is logged as a warning; and the README's example
runs exactly as written."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from roomlog_client import (
    Client,
    ClientStopped,
    ConnectFailed,
    Message,
    Reset,
    SubscriptionClosed,
)

from roomlog.identity import Role
from tests.clients.conftest import MakeServer
from tests.e2e.support import ROOT, free_port, issue_token, unique_room

TIMEOUT = 30.0
README = ROOT / "clients" / "python" / "README.md"


async def test_next_takes_one_event_at_a_time(make_server: MakeServer) -> None:
    srv = await make_server()
    room = unique_room("queue")
    async with Client(srv.ws_url, token=issue_token("gina")) as client:
        sub = client.subscribe(room)
        first = await asyncio.wait_for(sub.next(), TIMEOUT)
        assert isinstance(first, Reset) and first.state is not None  # the room's state
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sub.next(), 0.2)  # nothing new; a cancelled wait ...
        await client.command(room, "request.submit", {"song_id": "s:1", "title": "Waterloo",
                                                      "artist": "ABBA"})
        event = await asyncio.wait_for(sub.next(), TIMEOUT)  # ... lost nothing
        assert isinstance(event, Message) and event.data["event"] == "request.submitted"
        sub.close()
        with pytest.raises(SubscriptionClosed):
            await asyncio.wait_for(sub.next(), TIMEOUT)


@pytest.mark.parametrize("where", ["port", "path"])
async def test_fail_fast_on_a_wrong_url(make_server: MakeServer, where: str) -> None:
    if where == "port":
        url = f"ws://127.0.0.1:{free_port()}/ws"  # nobody listens there
    else:
        srv = await make_server()
        url = srv.ws_url.replace("/ws", "/wss")  # no such route on the hub
    client = Client(url, token=issue_token("gina"), fail_fast=True)
    with pytest.raises(ConnectFailed) as failed:
        await asyncio.wait_for(client.start(), TIMEOUT)
    assert url in str(failed.value)
    assert ("HTTP 403" in str(failed.value)) == (where == "path")  # no WebSocket route there
    assert client.stop_reason is failed.value
    with pytest.raises(ClientStopped):
        await client.command(unique_room("queue"), "request.submit", {})
    await client.close()


async def test_fail_fast_on_a_refused_token(make_server: MakeServer) -> None:
    srv = await make_server()
    forged = issue_token("gina", secret="not-the-secret-of-this-hub-at-all-0123456789")
    client = Client(srv.ws_url, token=forged, fail_fast=True)
    with pytest.raises(ClientStopped) as stopped:
        await asyncio.wait_for(client.start(), TIMEOUT)
    assert stopped.value.close_code == 4001
    await client.close()


async def test_fail_fast_only_for_the_first_connection(make_server: MakeServer) -> None:
    srv = await make_server()
    room = unique_room()
    async with Client(srv.ws_url, token=issue_token("gina"), fail_fast=True,
                      backoff=(0.05, 0.1)) as client:
        assert client.state.value == "connected"  # start() waited for it
        sub = client.subscribe(room)
        await asyncio.wait_for(sub.ready(), TIMEOUT)
        await srv.akill()
        await srv.astart()  # later outages are waited out, as always
        await client.publish(room, {"n": 1})
        event = await asyncio.wait_for(sub.next(), TIMEOUT)
        assert isinstance(event, Message) and event.data == {"n": 1}


async def test_a_wrong_url_is_not_silent(caplog: pytest.LogCaptureFixture) -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    caplog.set_level(logging.INFO, logger="roomlog_client")
    async with Client(url, token=issue_token("gina"), backoff=(0.05,)) as client:
        for _ in range(200):
            if any(r.levelno >= logging.WARNING for r in caplog.records):
                break
            await asyncio.sleep(0.05)
        assert client.state.value in ("connecting", "offline")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings and url in warnings[0], warnings


def readme_example() -> str:
    """The README's example: the first ```python block."""
    match = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert match, "no python example in clients/python/README.md"
    return match.group(1)


async def test_the_readme_example_runs_as_written(make_server: MakeServer,
                                                 tmp_path: Path) -> None:
    srv = await make_server()
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    env = {**os.environ, "ROOMLOG_URL": srv.ws_url,
           "ROOMLOG_TOKEN": issue_token("gina", Role.GUEST),
           "PYTHONPATH": str(ROOT / "clients" / "python")}
    done = await asyncio.to_thread(subprocess.run, [sys.executable, str(script)], env=env,
                                   capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "link: connected" in out
    assert re.search(r"requested r\d+", out), out
    assert "submitted: Dancing Queen" in out, out
    assert "refused: DUPLICATE_REQUEST" in out, out


async def test_a_saturated_server_is_waited_out_as_it_asks(make_server: MakeServer) -> None:
    """A 503 with Retry-After (``roomlog/admission.py``) is no failure, not even for
    ``fail_fast``: the client comes back after the time the server named."""
    srv = await make_server(admission_max_lag=0.2, admission_retry_after=1)
    assert srv.proc is not None
    client = Client(srv.ws_url, token=issue_token("gina"), fail_fast=True)
    os.kill(srv.proc.pid, signal.SIGSTOP)  # its event loop falls far behind
    try:
        starting = asyncio.create_task(client.start())
        await asyncio.sleep(1.0)
    finally:
        os.kill(srv.proc.pid, signal.SIGCONT)
    await asyncio.wait_for(starting, TIMEOUT)
    assert client.state.value == "connected"
    await client.close()
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(srv.base + "/metrics")).text
    refused = re.search(r'roomlog_connections_refused_total\{reason="saturated"\} (\S+)', metrics)
    assert refused is not None and float(refused[1]) >= 1
