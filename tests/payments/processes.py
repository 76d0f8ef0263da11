"""The test payment provider and the operator's backend as processes of their own.

``Proc`` starts ``python -m tests.payments.<name> --port N ...``, waits for its
``/health``, and can be killed (SIGKILL: the backend is down) and started again on
the same port. Waits are upper bounds for a broken process, never assertions.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.ports import free_port

START_TIMEOUT = 20.0
ROOT = Path(__file__).resolve().parents[2]


class Proc:
    def __init__(self, module: str, workdir: Path, *args: str, **env: str) -> None:
        self.module = module
        self.args = args
        self.env = env
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{module.rsplit('.', 1)[-1]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Proc:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, "--port", str(self.port), *self.args],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.module} exited:\n{self.output()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(self.url + "/health").status_code == 200:
                        return self
                if time.monotonic() > deadline:
                    self.kill()
                    raise AssertionError(f"{self.module} did not start:\n{self.output()}")
                time.sleep(0.05)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def assert_clean_log(self) -> None:
        output = self.output()
        assert "Traceback" not in output and "ERROR" not in output, output[-4000:]


def provider(workdir: Path) -> Proc:
    return Proc("tests.payments.provider", workdir)


def backend(workdir: Path, provider_url: str, *, secret: str, token: str,
            provider_timeout: float = 1.0, webhook_secret: str | None = None,
            hub: str | None = None) -> Proc:
    """``webhook_secret`` and ``hub``: it takes the hub's webhooks and reports refunds to
    ``hub`` (an instance's base URL)."""
    extra = {"SONGAPP_WEBHOOK_SECRET": webhook_secret} if webhook_secret else {}
    if hub:
        extra["SONGAPP_HUB"] = hub
    return Proc("tests.payments.backend", workdir, "--provider", provider_url,
                "--provider-timeout", str(provider_timeout),
                SONGAPP_HOOK_SECRET=secret, SONGAPP_TOKEN=token, **extra)
