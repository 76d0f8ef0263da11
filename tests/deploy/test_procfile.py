"""The Procfile's commands, run as a Procfile platform runs them: ``release`` migrates
PostgreSQL, ``web`` serves on $PORT and drains on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import SECRET
from tests.e2e.support import ROOT, START_TIMEOUT, free_port


def processes() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_procfile_release_then_web(own_pg_url: str, tmp_path: Path) -> None:
    procs = processes()
    assert set(procs) == {"web", "release"}
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMLOG_")} | {
        "PORT": str(port), "ROOMLOG_DATABASE_URL": own_pg_url, "ROOMLOG_SECRET": SECRET}
    release = subprocess.run(["sh", "-c", procs["release"]], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert release.returncode == 0, release.stderr
    log = tmp_path / "web.log"
    with log.open("w") as out:
        web = subprocess.Popen(["sh", "-c", f"exec {procs['web']}"], cwd=tmp_path, env=env,
                               stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert web.poll() is None, log.read_text()
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        web.send_signal(signal.SIGTERM)
        code = web.wait(30)
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert "draining" in log.read_text() and "Traceback" not in log.read_text()
