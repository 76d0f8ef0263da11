"""The scaffolding the load tools share: options, the run, one target's session.

* :func:`add_db_option`, :func:`add_timing_options`, :func:`add_loop_option`,
  :func:`add_machine_options` and :func:`check_timing` declare and check the
  options every tool has (``--db``, ``--duration``, ``--warmup``, ``--loop``,
  ``--pg-dsn``, ``--server-core``, ``--gen-core``, ``--wait-quiet``,
  ``--max-time``, ``--profile``, ...);
* :func:`run_tool` pins the generator to its core, picks the event loop and
  stops every child process however the run ends; :func:`run_steps` runs the
  targets (one per database, ...) in a temporary folder under ``--max-time``
  and SIGTERM; :func:`measure` is a phase's measured window, saying how it goes
  every ``--progress`` seconds; :func:`write_json` writes the results for
  machines (``--json``), :func:`finish` prints the problems and gives the exit code;
* :class:`Session` holds what one target uses -- its PostgreSQL database, its
  server, the client connections -- and releases them in order;
  :func:`quiet` waits for idle cores (``--wait-quiet``), :func:`connect` and
  :func:`open_many` open client connections, :func:`paced` sends at a fixed
  rate, :func:`start_meters`, :func:`core_figures`, :func:`start_profiler` and
  :func:`stop_profiler` measure a window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from common import CoreMeter, CpuMeter, RawClient, percentile, wait_quiet
from report import GEN_BOUND, Outcome
from servers import (
    HOST,
    PgDatabase,
    Server,
    hub_env,
    kill_children,
    migrate,
    track,
    untrack,
)

__all__ = [
    "QUIET_BUSY",
    "SUBPROTOCOL",
    "Session",
    "Window",
    "add_db_option",
    "add_loop_option",
    "add_machine_options",
    "add_timing_options",
    "check_timing",
    "connect",
    "core_figures",
    "finish",
    "latency_ms",
    "measure",
    "open_many",
    "paced",
    "quiet",
    "run_steps",
    "run_tool",
    "say",
    "say_result",
    "session",
    "spread",
    "start_meters",
    "start_profiler",
    "stop_profiler",
    "write_json",
]

SUBPROTOCOL = "roomlog.v1.json"
QUIET_BUSY = 15.0  # % of a core: above this before a target, something else is running

T = TypeVar("T")
R = TypeVar("R", bound=Outcome)


_human = sys.stdout  # where people's lines go: stderr while --json - takes stdout


def say(text: str) -> None:
    print(text, file=_human, flush=True)


def say_result(line: str | None, problems: list[str]) -> None:
    """A phase's one-line account (if any), then its problems."""
    if line is not None:
        say("   " + line)
    for problem in problems:
        say(f"   !! {problem}")


# ---------------------------------------------------------------------------
# Options


def add_db_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default=default,
                        help=f"the hub's log database (default: {default})")


def add_timing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=10.0,
                        help="measured seconds per phase (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="unmeasured seconds before each phase's measurement (default 2)")


def add_loop_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop", help=help)


def add_machine_options(parser: argparse.ArgumentParser, *, connections: str, drain: str,
                        each: str, per: str, profile: str) -> None:
    """--pg-dsn, the cores, --connect-concurrency (of ``connections``), --drain-timeout
    (help ``drain``), --wait-quiet (before ``each``: target, database), --max-time (180 s
    ``per``) and --profile (``profile``: what py-spy writes)."""
    parser.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL admin DSN (loopback only); a fresh database is "
                             "created and dropped")
    parser.add_argument("--server-core", type=int, default=0, help="core for the server (0)")
    parser.add_argument("--gen-core", type=int, default=1,
                        help="core for this load generator (1)")
    parser.add_argument("--connect-concurrency", type=int, default=50,
                        help=f"{connections} connections opened at once (default 50)")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help=drain)
    parser.add_argument("--wait-quiet", type=float, default=60.0,
                        help=f"before each {each}, wait up to this many seconds for both cores "
                             f"to be under {QUIET_BUSY:g}%% busy (default 60)")
    parser.add_argument("--max-time", type=float,
                        help=f"hard limit on the whole run in seconds (default: 180 per {per})")
    parser.add_argument("--profile", metavar="DIR",
                        help=f"record the server with py-spy ({profile}) during each measured "
                             "window into DIR")
    parser.add_argument("--json", metavar="PATH",
                        help="also write the options and every result as JSON to PATH ('-': "
                             "stdout, and the lines for people go to stderr)")
    parser.add_argument("--progress", type=float, default=2.0, metavar="SECONDS",
                        help="say how a measured window goes every SECONDS (default 2; 0: "
                             "quiet)")


def listed(parser: argparse.ArgumentParser, args: argparse.Namespace, name: str,
           allowed: Sequence[str]) -> None:
    """Turn the comma-separated option ``name`` into a list of ``allowed`` values
    (at least one), or stop with an error naming them."""
    values = [v.strip() for v in getattr(args, name).split(",") if v.strip()]
    if not values or set(values) - set(allowed):
        parser.error(f"--{name.replace('_', '-')} takes {' and/or '.join(allowed)}")
    setattr(args, name, values)


def check_timing(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    global _human
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be positive and --warmup not negative")
    if args.progress < 0:
        parser.error("--progress must not be negative")
    if args.json == "-":
        _human = sys.stderr


# ---------------------------------------------------------------------------
# The run


def run_tool(args: argparse.Namespace, main: Callable[[argparse.Namespace],
                                                      Coroutine[Any, Any, int]],
             interrupted: str) -> None:
    """Pin this process to --gen-core, run ``main(args)`` on --loop, exit with its code;
    every child process is stopped however it ends (``interrupted`` after Ctrl-C)."""
    try:
        os.sched_setaffinity(0, {args.gen_core})
    except OSError as exc:
        raise SystemExit(f"cannot pin the generator to core {args.gen_core}: {exc}") from None
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            code = runner.run(main(args))
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        code = 130
    finally:
        kill_children()
    sys.exit(code)


async def run_steps(args: argparse.Namespace, prefix: str,
                    steps: Sequence[tuple[str, Callable[[Path], Awaitable[list[R]]]]]
                    ) -> tuple[list[R], bool]:
    """Run each (label, step(workdir)) in turn in one temporary folder, within --max-time
    (default 180 s a step) and until SIGTERM; a failed step is reported and the next one
    runs. Returns every step's results and whether any failed."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    if args.max_time is None:
        args.max_time = 180.0 * len(steps)
    results: list[R] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        try:
            async with asyncio.timeout(args.max_time):
                for label, step in steps:
                    try:
                        results += await step(Path(tmp))
                    except (RuntimeError, OSError, TimeoutError) as exc:
                        failed = True
                        say(f"!! {label} failed: {exc!r}")
        except TimeoutError:
            failed = True
            say(f"!! stopped: --max-time {args.max_time:g}s reached")
    return results, failed


async def measure(args: argparse.Namespace, phase: str,
                  progress: Callable[[float], str]) -> float:
    """The measured window of a phase: ``--duration`` seconds, with a line every
    ``--progress`` seconds saying ``progress(elapsed)`` (its figures so far). Returns
    the seconds it took."""
    t0 = time.perf_counter()
    end = t0 + args.duration
    step = args.progress if args.progress > 0 else args.duration
    while (left := end - time.perf_counter()) > 0:
        await asyncio.sleep(min(step, left))
        elapsed = time.perf_counter() - t0
        if args.progress > 0 and end - time.perf_counter() > 0.1 * step:
            say(f"   .. {phase} {elapsed:4.0f}/{args.duration:g}s: {progress(elapsed)}")
    return time.perf_counter() - t0


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def write_json(args: argparse.Namespace, tool: str, results: Sequence[Any],
               failed: bool) -> None:
    """``--json``: the tool, when, where, the options and every result, as one object."""
    if not args.json:
        return
    document = {
        "tool": tool,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "options": _plain({k: v for k, v in vars(args).items() if k != "json"}),
        "failed": failed or any(getattr(r, "problems", None) for r in results),
        "results": _plain(list(results)),
    }
    text = json.dumps(document, indent=2)
    if args.json == "-":
        print(text, flush=True)
    else:
        Path(args.json).write_text(text + "\n")
        say(f"results written to {args.json}")


def finish(results: Sequence[R], failed: bool, label: Callable[[R], str], legend: str) -> int:
    """Print every problem and generator-bound phase, then ``legend``; the exit code."""
    for r in results:
        for problem in r.problems:
            say(f"!! {label(r)}: {problem}")
        if r.gen_core > GEN_BOUND:
            say(f"!! {label(r)}: the generator's core was {r.gen_core:.0f}% busy: the figure "
                "is a lower bound of the server's capacity")
    say(legend)
    return 1 if failed or any(r.problems for r in results) else 0


# ---------------------------------------------------------------------------
# One target


async def quiet(args: argparse.Namespace) -> None:
    """Wait (up to --wait-quiet s) until both cores are idle: other load skews the figures."""
    busy = await wait_quiet([args.server_core, args.gen_core], args.wait_quiet, QUIET_BUSY)
    if busy:
        say("   !! the machine is busy with other work (" + ", ".join(
            f"core {c} {b:.0f}%" for c, b in busy.items()) + "): figures will be noisy")


@dataclass
class Session:
    """What one target uses: its database, its server, its connections (:func:`session`)."""

    args: argparse.Namespace
    workdir: Path
    pg: PgDatabase | None = None
    server: Server | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def hub_env(self, db: str, name: str) -> dict[str, str]:
        """The hub's environment on a fresh, migrated PostgreSQL database or on SQLite
        (``workdir/<name>.db``)."""
        if db != "postgres":
            return hub_env(f"sqlite+aiosqlite:///{self.workdir}/{name}.db")
        self.pg = PgDatabase(self.args.pg_dsn)
        await self.pg.create()
        env = hub_env(self.pg.url)
        await migrate(env)
        return env

    async def start(self, name: str, argv: list[str], port: int,
                    env: dict[str, str]) -> Server:
        """Start the server on --server-core and wait until it is ready."""
        self.server = Server(name, argv, port, self.workdir, env=env,
                             core=self.args.server_core)
        await self.server.ready()
        return self.server

    async def connect(self, port: int, token: str) -> RawClient:
        """A connected client, closed with the session."""
        client = await connect(port, token)
        self.closers.append(client.close)
        return client

    @staticmethod
    def settle() -> None:
        gc.collect()
        gc.freeze()  # the connections are long-lived: keep them out of GC passes

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.gather(*(close() for close in self.closers), return_exceptions=True)
        gc.unfreeze()
        if self.server is not None:
            await self.server.stop()
        if self.pg is not None:
            await self.pg.drop()


@contextlib.asynccontextmanager
async def session(args: argparse.Namespace, workdir: Path) -> AsyncIterator[Session]:
    s = Session(args, workdir)
    try:
        yield s
    finally:
        await s.close()


async def connect(port: int, token: str) -> RawClient:
    """A raw client on the hub at ``port``, past its ``connect``."""
    client = await RawClient.open(HOST, port, subprotocol=SUBPROTOCOL)
    try:
        client.send_json({"type": "connect", "token": token})
        await client.expect("connected")
    except BaseException:
        await client.close()
        raise
    return client


def spread(count: int, sample: int) -> set[int]:
    """``sample`` indexes spread evenly over ``range(count)``: servers keep connections in
    sets whose order follows allocation, so the first ones connected may be served first."""
    sample = min(sample, count)
    return {i * count // sample for i in range(sample)}


async def open_many(count: int, concurrency: int, open_one: Callable[[int], Awaitable[T]],
                    close: Callable[[T], Awaitable[None]]) -> list[T]:
    """``open_one(i)`` for i in range(count), ``concurrency`` at once; if one fails, the
    others are cancelled or closed."""
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int) -> T:
        async with limit:
            return await open_one(i)

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(close(x) for x in done if not isinstance(x, BaseException)))
        raise


async def paced(rate: float, fire: Callable[[], object]) -> None:
    """Call ``fire()`` ``rate`` times a second on the event loop's clock until cancelled;
    calls that fall behind the clock are made at once (catching up), not skipped."""
    loop = asyncio.get_running_loop()
    begin, i = loop.time(), 0
    while True:
        delay = begin + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        fire()
        i += 1


# ---------------------------------------------------------------------------
# Measuring a window


@dataclass
class Window:
    """Latencies (ns) of what was sent in [lo, hi) (perf_counter_ns)."""

    lo: int = 1 << 62
    hi: int = 1 << 62
    values: list[int] = field(default_factory=list)

    def arm(self) -> None:
        self.lo, self.hi, self.values = time.perf_counter_ns(), 1 << 62, []

    def disarm(self) -> None:
        self.hi = time.perf_counter_ns()

    def add(self, sent: int, now: int) -> None:
        if self.lo <= sent < self.hi:
            self.values.append(now - sent)


def latency_ms(values_ns: list[int]) -> tuple[int, float | None, float | None, float | None]:
    """(count, p50, p99, max) in milliseconds; None when there are no values."""
    values = sorted(values_ns)
    if not values:
        return 0, None, None, None
    return (len(values), percentile(values, 0.50) / 1e6, percentile(values, 0.99) / 1e6,
            values[-1] / 1e6)


def start_meters(server_pid: int, db: str, pg_name: str | None = None
                 ) -> tuple[dict[str, CpuMeter], CoreMeter]:
    """Started CPU meters of the server, this generator and (``db`` postgres) PostgreSQL:
    with ``pg_name``, its backends and the shared processes only; and a core meter."""
    meters = {"server": CpuMeter([server_pid]), "gen": CpuMeter([os.getpid()])}
    if pg_name is not None:
        # Our database's backends and the shared processes, not other databases' clients.
        name = pg_name.encode()
        meters["db"] = CpuMeter(name=b"postgres",
                                keep=lambda cmd: name in cmd or b"127.0.0.1(" not in cmd)
    elif db == "postgres":
        meters["db"] = CpuMeter(name=b"postgres")
    for meter in meters.values():
        meter.start()
    cores = CoreMeter()
    cores.start()
    return meters, cores


def core_figures(args: argparse.Namespace, cores: CoreMeter
                 ) -> tuple[float, float, float, float]:
    """(server's core busy, generator's core busy, softirq on the server's core, mean
    steal of both), % of a core, from a stopped core meter."""
    sc, gc_ = args.server_core, args.gen_core
    return (cores.busy.get(sc, 0.0), cores.busy.get(gc_, 0.0), cores.softirq.get(sc, 0.0),
            (cores.steal.get(sc, 0.0) + cores.steal.get(gc_, 0.0)) / 2)


def start_profiler(args: argparse.Namespace, pid: int, name: str,
                   seconds: float | None = None) -> subprocess.Popen[bytes] | None:
    """py-spy on ``pid`` for ``seconds`` (default --duration) into
    ``--profile/<name>.txt`` (None without --profile); it stops by itself."""
    if not args.profile:
        return None
    out = Path(args.profile) / f"{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return track(subprocess.Popen(
        ["taskset", "-c", str(args.gen_core), py_spy, "record", "--pid", str(pid),
         "--duration", str(max(1, round(seconds or args.duration))), "--rate", "200",
         "--nonblocking", "--format",
         "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


async def stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
    """Wait (up to 30 s) for a profiler to finish; kill it if it does not."""
    if profiler is None:
        return
    try:
        await asyncio.wait_for(asyncio.to_thread(profiler.wait), 30)
    except TimeoutError:
        profiler.kill()
    untrack(profiler)
