"""``roomlog serve --workers N``: N server processes on one port, and their supervisor.

One Python process uses one core. The supervisor starts N worker processes
(``python -m roomlog serve`` with ``ROOMLOG_WORKERS=1`` and the hidden flag
``--reuse-port``); each binds its own listening socket with ``SO_REUSEPORT``
and the kernel spreads new connections across them. The workers share the
PostgreSQL log and a bus (LISTEN/NOTIFY on that database unless Redis is
configured): a message committed by one reaches the subscribers of every other
through the bus, exactly as between instances on several hosts.

The supervisor holds no connection and runs no event loop. It

* refuses SQLite (one writer per file: several processes would queue on its
  lock and could not see each other's commits live) with a clear message;
* restarts a worker that dies (``kill -9``, out of memory) after a short
  backoff; a worker that exits within ``_EARLY`` seconds of its start failed to
  start (bad settings, database unreachable): everything stops with its
  status instead of restarting in a loop;
* passes SIGTERM on to every worker (each drains: ``roomlog.drain``) and
  waits for them; Ctrl-C reaches the workers from the terminal itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from roomlog.settings import Settings

__all__ = ["check_workers", "reuse_port_socket", "supervise"]

logger = logging.getLogger(__name__)

_EARLY = 10.0  # seconds: a worker that exits sooner after its start failed to start
_BACKOFF = 1.0  # seconds before a dead worker is started again
_POLL = 0.2  # seconds between checks of the workers
_PR_SET_PDEATHSIG = 1  # prctl option: the signal a child gets when its parent dies
_KILL_GRACE = 10.0  # seconds past drain_timeout before SIGKILL at shutdown


def check_workers(settings: Settings, workers: int, *, reload: bool = False) -> None:
    """SystemExit with advice when ``workers`` processes cannot serve ``settings``."""
    if workers < 1:
        raise SystemExit(f"--workers {workers}: at least 1")
    if workers == 1:
        return
    if reload:
        raise SystemExit("--reload runs one worker: drop --workers or --reload")
    if settings.is_sqlite:
        raise SystemExit(
            f"--workers {workers} needs PostgreSQL: SQLite has one writer per file, so "
            "several server processes would queue on its lock and could not hand each "
            "other their messages. Set ROOMLOG_DATABASE_URL=postgresql+asyncpg://... "
            "(run `roomlog migrate` first), or serve SQLite with one worker.")
    if not hasattr(socket, "SO_REUSEPORT"):
        raise SystemExit(f"--workers {workers} needs SO_REUSEPORT, which this system lacks")


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT, not yet listening
    (uvicorn listens on it): several processes may bind the same port this way."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class _Supervisor:
    def __init__(self, argv: Sequence[str], env: dict[str, str], workers: int,
                 stop_timeout: float) -> None:
        self._argv = list(argv)
        self._env = env
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * workers
        self._started = [0.0] * workers
        self._stopping = False
        self._stop_timeout = stop_timeout
        self.status = 0

    def _start(self, index: int) -> None:
        proc = self._procs[index] = subprocess.Popen(self._argv, env=self._env,
                                                     preexec_fn=_die_with_parent)
        self._started[index] = time.monotonic()
        logger.info("worker %d started (pid %d)", index, proc.pid)

    def _on_term(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stopping:
            logger.info("SIGTERM: draining %d workers", len(self._procs))
        self._stopping = True
        for proc in self._procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        try:
            for index in range(len(self._procs)):
                self._start(index)
            while not self._stopping:
                time.sleep(_POLL)
                self._check()
        except KeyboardInterrupt:  # the terminal sent SIGINT to the workers as well
            self._stopping = True
            self._wait()
            raise
        self._wait()
        return self.status

    def _check(self) -> None:
        for index, proc in enumerate(self._procs):
            if proc is None or proc.poll() is None or self._stopping:
                continue
            code = proc.returncode
            if time.monotonic() - self._started[index] < _EARLY:
                logger.error("worker %d exited with status %s within %g s of its start; "
                             "stopping the others", index, code, _EARLY)
                self.status = code if code and code > 0 else 1
                self._on_term(signal.SIGTERM, None)
                return
            logger.warning("worker %d (pid %d) exited with status %s; starting it again",
                           index, proc.pid, code)
            time.sleep(_BACKOFF)
            self._start(index)

    def _wait(self) -> None:
        deadline = time.monotonic() + self._stop_timeout
        for proc in self._procs:
            if proc is None:
                continue
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("worker pid %d did not stop in time: killed", proc.pid)
                proc.kill()
                proc.wait()


def supervise(settings: Settings, workers: int, argv: Sequence[str], host: str,
              port: int) -> int:
    """Run ``workers`` copies of ``roomlog serve`` on one port until SIGTERM or Ctrl-C;
    return the exit status. ``argv`` is this command's own flags (``--workers`` and
    ``--port`` dropped: they are set here)."""
    reserved = None
    if port == 0:  # every worker must bind the same port: choose it here, keep it held
        reserved = reuse_port_socket(host, 0)
        port = reserved.getsockname()[1]
    env = dict(os.environ) | {"ROOMLOG_WORKERS": "1", "ROOMLOG_BUS": _bus_for(settings)}
    command = [sys.executable, "-m", "roomlog", "serve", *argv, "--host", host,
               "--port", str(port), "--reuse-port"]
    logger.info("roomlog: %d workers on %s:%d, bus %s", workers, host, port,
                env["ROOMLOG_BUS"])
    try:
        return _Supervisor(command, env, workers,
                           settings.drain_timeout + _KILL_GRACE).run()
    finally:
        if reserved is not None:
            reserved.close()


def _die_with_parent() -> None:
    """In a worker before it runs: SIGTERM it when the supervisor dies (Linux), so a
    supervisor killed with SIGKILL leaves no worker holding the port."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _bus_for(settings: Settings) -> str:
    """The bus the workers share ('auto' resolved as for several workers)."""
    from roomlog.app import bus_kind  # the same rule the app applies

    return bus_kind(settings)
