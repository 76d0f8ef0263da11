"""A private PostgreSQL server for tests that stop, restart or block the database.

Each :class:`PgServer` runs ``initdb`` into its own temp directory and starts
``postgres`` on a free port (trust auth, fsync off), so tests never touch the
machine's server. It can be stopped and started again on the same port and
data (a database restart as clients see it), and paused with SIGSTOP (a hung
database: connections stay open, nothing answers). As root, the server runs as
the ``postgres`` user, which initdb requires; its directory is then a fresh one
under the system's temp dir (pytest's are private to root), removed by
:meth:`cleanup`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.ports import free_port

START_TIMEOUT = 30.0


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    assert initdb is not None, "PostgreSQL's initdb is not installed (CI installs it)"
    return Path(initdb).parent


class PgServer:
    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="roomlog-pg-"))
        self.data = self.workdir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._bin = _bindir()
        self._as_postgres = os.geteuid() == 0

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its ``postgres`` database."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run_as(self) -> dict[str, object]:
        if not self._as_postgres:
            return {}
        user = pwd.getpwnam("postgres")
        return {"user": user.pw_uid, "group": user.pw_gid}

    def _own(self) -> None:
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            for path in [self.workdir, *self.workdir.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)

    def start(self) -> PgServer:
        if not self.data.exists():
            self._own()
            subprocess.run(
                [str(self._bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                 "--auth=trust", "--no-sync", "-E", "UTF8"],
                check=True, capture_output=True, **self._run_as())  # type: ignore[call-overload]
        log = (self.workdir / "postgres.log").open("ab")
        self.proc = subprocess.Popen(  # type: ignore[call-overload]
            [str(self._bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.workdir), "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, **self._run_as())
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            assert self.proc.poll() is None, f"postgres exited: {self.proc.returncode}"
            assert time.monotonic() < deadline, "postgres did not start"
            time.sleep(0.05)
        return self

    def answers(self) -> bool:
        result = subprocess.run(
            [str(self._bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False)
        return result.returncode == 0

    def stop(self) -> None:
        """A fast shutdown (SIGINT): clients' connections are cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP the postmaster and its backends: nothing answers."""
        assert self.proc is not None
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        pids = [self.proc.pid]
        with contextlib.suppress(FileNotFoundError, subprocess.CalledProcessError):
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], check=True,
                                 capture_output=True, text=True).stdout
            pids += [int(p) for p in out.split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
