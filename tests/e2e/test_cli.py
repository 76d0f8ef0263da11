"""``roomlog`` as a person runs it in a terminal: Ctrl-C, --help."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import SECRET
from tests.e2e.support import START_TIMEOUT, TIMEOUT, Server, free_port


async def test_ctrl_c_stops_quietly(tmp_path: Path) -> None:
    srv = await Server(tmp_path / "hub", log_level="info").astart()
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGINT)
    code = await asyncio.to_thread(srv.proc.wait, 30)
    output = srv.output()
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert code == 130, output
    assert output.rstrip().splitlines()[-1].startswith("roomlog: interrupted"), output


def test_reload_serves_and_stops_quietly(tmp_path: Path) -> None:
    """``roomlog serve --reload``: a worker process under uvicorn's reloader, logging in
    the format asked for (JSON here, set by the environment)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMLOG_")} | {
        "ROOMLOG_SECRET": SECRET, "ROOMLOG_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "reload.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "roomlog", "serve", "--reload",
                                 "--port", str(port)], cwd=tmp_path, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=TIMEOUT) as http:
            while True:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                with contextlib.suppress(httpx.TransportError):
                    if http.get(f"http://127.0.0.1:{port}/health/ready").is_success:
                        break
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    output = log.read_text()
    assert code in (0, 130) and "Traceback" not in output, output
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert any("reloader" in str(entry["msg"]) for entry in lines), output
    assert any(entry["logger"] == "roomlog.app" for entry in lines), output  # the worker's
