"""The ``--workers`` supervisor (``roomlog/workers.py``) with stand-in workers: real
processes that sleep or fail, so restarts, early failures and SIGTERM are checked
without starting servers (tests/e2e/test_workers.py runs real ones)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from roomlog.settings import Settings
from roomlog.workers import check_workers

BOUND = 30.0  # upper bound of every wait: only a broken supervisor reaches it

SUPERVISOR = """
import sys
import roomlog.workers as w
w._EARLY = {early}
w._BACKOFF = 0.1
sup = w._Supervisor([sys.executable, "-c", {worker!r}], dict(__import__("os").environ),
                    2, stop_timeout=10)
sys.exit(sup.run())
"""


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _supervisor(worker: str, early: float) -> subprocess.Popen[bytes]:
    code = SUPERVISOR.format(early=early, worker=worker)
    return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)


def test_a_dead_worker_is_started_again_and_sigterm_stops_them_all() -> None:
    sup = _supervisor("import time; time.sleep(120)", early=0.2)
    try:
        _until(lambda: len(_children(sup.pid)) == 2, "two workers")
        first = _children(sup.pid)
        time.sleep(0.3)  # past the early-failure window
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        _until(lambda: len(_children(sup.pid)) == 2 and victim not in _children(sup.pid),
               "the dead worker replaced")
        workers = _children(sup.pid)
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(BOUND) == 0
        for pid in workers:  # every worker got SIGTERM and is gone
            _until(lambda p=pid: not Path(f"/proc/{p}").exists()
                   or "Z" in Path(f"/proc/{p}/stat").read_text().split()[2], "worker gone")
        assert b"starting it again" in sup.stderr.read()  # type: ignore[union-attr]
    finally:
        sup.kill()
        sup.wait()


def test_a_worker_that_fails_at_start_stops_everything_with_its_status() -> None:
    sup = _supervisor("raise SystemExit(3)", early=30.0)
    try:
        assert sup.wait(BOUND) == 3
        assert b"within 30 s of its start" in sup.stderr.read()  # type: ignore[union-attr]
    finally:
        sup.kill()
        sup.wait()


def test_check_workers_refuses_what_cannot_work() -> None:
    pg = Settings(database_url="postgresql+asyncpg://u@h/db")
    check_workers(pg, 4)  # fine
    check_workers(Settings(), 1)  # SQLite with one worker: fine
    for settings, workers, reload, words in [
            (Settings(), 2, False, "needs PostgreSQL"),
            (pg, 0, False, "at least 1"),
            (pg, 2, True, "--reload runs one worker")]:
        try:
            check_workers(settings, workers, reload=reload)
        except SystemExit as exc:
            assert words in str(exc)
        else:
            raise AssertionError(f"{workers} workers accepted")
