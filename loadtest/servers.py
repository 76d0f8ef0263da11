"""Server processes and databases for the load tools.

:class:`Server` starts one server subprocess (the hub, the baseline, anything
that answers a readiness URL), optionally pinned to a core with ``taskset``,
its output in a log file; start several on different ports for a cluster
(:meth:`Server.metrics` reads a hub's ``/metrics`` counters).
:class:`PgDatabase` is a fresh PostgreSQL database, dropped afterwards;
:class:`RedisProcess` a private ``redis-server`` (no persistence) for a
cluster's bus, never the machine's own Redis.
:func:`hub_env`, :func:`hub_argv`, :func:`hub_token` and :func:`migrate`
configure and prepare the hub; :func:`baseline_argv` runs
loadtest/baseline_websockets.py.

Every child process is tracked so that even an abrupt exit stops it
(:func:`kill_children`, also registered with :mod:`atexit`). Only loopback
addresses are used.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from common import check_loopback, proc_rss_kib, wait_ready

__all__ = [
    "HOST",
    "SECRET",
    "PgDatabase",
    "RedisProcess",
    "Server",
    "baseline_argv",
    "free_port",
    "http_get",
    "hub_argv",
    "hub_env",
    "hub_token",
    "kill_children",
    "migrate",
    "parse_metrics",
    "run_command",
    "track",
    "untrack",
]

HOST = "127.0.0.1"
SECRET = "loadtest-secret-" + "x" * 24  # ROOMLOG_SECRET of the hubs, signs the test tokens
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
START_TIMEOUT = 60.0  # seconds for a server to answer its readiness URL
STOP_TIMEOUT = 15.0  # seconds for a server to exit after SIGINT before SIGKILL
MIGRATE_TIMEOUT = 120.0  # seconds for ``roomlog migrate``
HTTP_TIMEOUT = 10.0  # seconds for an HTTP GET (e.g. /metrics) to complete

# Every child process we start, so that even an abrupt exit stops them.
_children: dict[int, subprocess.Popen[bytes]] = {}


def track(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """Have :func:`kill_children` stop this process if it is still running at exit."""
    _children[proc.pid] = proc
    return proc


def untrack(proc: subprocess.Popen[bytes]) -> None:
    """Forget a process that has ended."""
    _children.pop(proc.pid, None)


@atexit.register
def kill_children() -> None:
    """SIGKILL every tracked child still running."""
    for proc in list(_children.values()):
        if proc.poll() is None:
            proc.kill()


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess, pinned to one core if ``core`` is given, its output in a log file.

    ``argv`` is the command line; ``env`` holds variables added to (or
    replacing) this process's environment. The log is ``workdir/<name>.log``,
    so give every instance its own name. :meth:`ready` waits until
    ``GET ready_path`` answers 200 on ``host:port``.
    """

    def __init__(self, name: str, argv: list[str], port: int, workdir: Path, *,
                 env: Mapping[str, str] | None = None, core: int | None = None,
                 host: str = HOST, ready_path: str = "/health/ready") -> None:
        self.name = name
        self.host = check_loopback(host)
        self.port = port
        self.ready_path = ready_path
        self.log_path = workdir / f"{name}.log"
        if core is not None:
            argv = ["taskset", "-c", str(core), *argv]
        with open(self.log_path, "wb") as log:
            self.proc = track(subprocess.Popen(
                argv, env={**os.environ, **(env or {})}, cwd=workdir,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        self.pid = self.proc.pid  # taskset execs the server: same pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    async def ready(self) -> None:
        """Wait until the server answers (START_TIMEOUT); raise with its log if it does not."""
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await wait_ready(self.host, self.port, self.ready_path, self.alive)
        except TimeoutError:
            raise RuntimeError(f"{self.name}: not ready within {START_TIMEOUT:g}s\n"
                               f"{self.log_tail()}") from None
        except RuntimeError as exc:
            raise RuntimeError(f"{self.name}: {exc}\n{self.log_tail()}") from None

    def rss_kib(self) -> int:
        """Resident memory of the server process in KiB (VmRSS; 0 if it is gone)."""
        return proc_rss_kib(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("  | " + line for line in text[-lines:])

    async def metrics(self, path: str = "/metrics") -> dict[str, float]:
        """The server's Prometheus samples, ``{'name{labels}': value}`` (e.g. a hub's
        ``roomlog_gap_fills_total``); raises RuntimeError if it does not answer 200."""
        return parse_metrics(await http_get(self.host, self.port, path))

    async def stop(self) -> None:
        """SIGINT (graceful for uvicorn and the baseline), SIGKILL after STOP_TIMEOUT."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(self.proc.wait, STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        untrack(self.proc)


async def http_get(host: str, port: int, path: str) -> bytes:
    """The body of a plain HTTP/1.1 GET that must answer 200 within HTTP_TIMEOUT
    (RuntimeError otherwise)."""
    async with asyncio.timeout(HTTP_TIMEOUT):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                         "Connection: close\r\n\r\n".encode())
            response = await reader.read()
        finally:
            writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if status.split()[1:2] != [b"200"]:
        raise RuntimeError(f"GET {path} on {host}:{port}: {status.decode(errors='replace')}")
    if b"transfer-encoding: chunked" in head.lower():
        raise RuntimeError(f"GET {path} on {host}:{port}: chunked answers are not supported")
    return body


def parse_metrics(text: bytes) -> dict[str, float]:
    """Prometheus text format to ``{'name{labels}': value}`` (comments skipped)."""
    samples = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def run_command(argv: list[str], env: Mapping[str, str] | None = None) -> None:
    """Run a command in the repository to completion (wrap in asyncio.timeout); raise if it
    fails. ``env`` is added to this process's environment."""
    proc = await asyncio.create_subprocess_exec(*argv, env={**os.environ, **(env or {})},
                                                cwd=REPO, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await proc.communicate()
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{out.decode()}")


class PgDatabase:
    """A fresh PostgreSQL database, dropped by :meth:`drop`.

    ``url`` is its SQLAlchemy URL (``postgresql+asyncpg://``), for
    ``ROOMLOG_DATABASE_URL``; several hubs may share it.
    """

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.name = f"rt_bench_{secrets.token_hex(6)}"
        parts = urlsplit(admin_dsn)
        check_loopback(parts.hostname or "")
        base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        self.url = f"{base}/{self.name}"
        self.created = False

    async def _admin(self, sql: str) -> None:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(self.admin_dsn, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create(self) -> None:
        await self._admin(f'CREATE DATABASE "{self.name}"')
        self.created = True

    async def drop(self) -> None:
        if self.created:
            await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False


class RedisProcess:
    """A private ``redis-server`` on a free loopback port for a cluster's bus: no
    persistence (``--save ""``, no AOF), its files and log in ``workdir``, pinned to
    ``core`` if given. :meth:`ready` waits for PONG; :meth:`stop` ends it."""

    def __init__(self, workdir: Path, *, core: int | None = None, name: str = "redis") -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.log_path = workdir / f"{name}.log"
        argv = [binary, "--port", str(self.port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", str(workdir)]
        if core is not None:
            argv = ["taskset", "-c", str(core), *argv]
        with open(self.log_path, "wb") as log:
            self.proc = track(subprocess.Popen(
                argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True))
        self.pid = self.proc.pid  # taskset execs redis-server: same pid

    @property
    def url(self) -> str:
        """For ``ROOMLOG_REDIS_URL``."""
        return f"redis://{HOST}:{self.port}/0"

    async def command(self, *args: str) -> object:
        """One command on a new connection (redis-py), its decoded answer."""
        import redis.asyncio as aioredis

        client = aioredis.Redis(host=HOST, port=self.port, socket_timeout=5,
                                decode_responses=True)
        try:
            answer: object = await client.execute_command(*args)  # type: ignore[no-untyped-call]
            return answer
        finally:
            await client.aclose()

    async def ready(self) -> None:
        """Wait until it answers PING (START_TIMEOUT); raise with its log if it does not."""
        try:
            async with asyncio.timeout(START_TIMEOUT):
                while True:
                    if self.proc.poll() is not None:
                        raise RuntimeError("redis-server exited during start-up")
                    try:
                        reader, writer = await asyncio.open_connection(HOST, self.port)
                        try:
                            writer.write(b"PING\r\n")
                            if (await reader.readline()).startswith(b"+PONG"):
                                return
                        finally:
                            writer.close()
                    except OSError:
                        pass
                    await asyncio.sleep(0.05)
        except (TimeoutError, RuntimeError) as exc:
            log = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"redis-server on port {self.port}: {exc!r}\n{log}") from None

    async def stop(self) -> None:
        """SIGTERM (nothing to save), SIGKILL after STOP_TIMEOUT."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        untrack(self.proc)


# ---------------------------------------------------------------------------
# The hub and the baseline


def hub_env(database_url: str, **extra: str) -> dict[str, str]:
    """The hub's settings for a load test (no rate or connection limit, quiet log), plus ``extra``
    settings (e.g. a cluster's); pass to :class:`Server` or :func:`run_command`."""
    return {
        "ROOMLOG_DATABASE_URL": database_url,
        "ROOMLOG_SECRET": SECRET,
        "ROOMLOG_PUBLISH_RATE": "1000000",
        "ROOMLOG_PUBLISH_BURST": "1000000",
        # thousands of connections of a few users from one address, subscribing at once
        "ROOMLOG_MAX_CONNECTIONS_PER_USER": "0",
        "ROOMLOG_SUBSCRIBE_RATE": "1000000",
        "ROOMLOG_SUBSCRIBE_BURST": "1000000",
        "ROOMLOG_READ_RATE": "1000000",
        "ROOMLOG_READ_BURST": "1000000",
        "ROOMLOG_LOG_LEVEL": "warning",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def hub_argv(port: int, host: str = HOST) -> list[str]:
    """Command line of one hub instance (uvicorn) on ``host:port``."""
    return [sys.executable, "-m", "roomlog", "serve", "--host", host, "--port", str(port)]


def baseline_argv(port: int, loop: str = "uvloop", mode: str = "coalesce") -> list[str]:
    """Command line of the plain websockets server (loadtest/baseline_websockets.py)."""
    return [sys.executable, str(HERE / "baseline_websockets.py"), "--port", str(port),
            "--loop", loop, "--mode", mode]


async def migrate(env: Mapping[str, str]) -> None:
    """Create the hub's schema in ``env``'s ROOMLOG_DATABASE_URL (``roomlog migrate``)."""
    async with asyncio.timeout(MIGRATE_TIMEOUT):
        await run_command([sys.executable, "-m", "roomlog", "migrate"], env)


def hub_token(user: str, ttl: float = 3600.0, role: str = "admin") -> str:
    """A token for hubs started with :func:`hub_env` (imports the roomlog package); an
    admin's unless ``role`` names another (``guest``, ``dj``, ...)."""
    from roomlog.auth import Tokens
    from roomlog.identity import Role

    return Tokens(SECRET).issue(user, Role(role), ttl=ttl)
