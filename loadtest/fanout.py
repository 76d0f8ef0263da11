"""Fan-out load test: one publisher, N subscribers in one room, over real WebSockets.

For each target -- the hub on SQLite, the hub on PostgreSQL, and a plain
``websockets`` server that coalesces the same way (loadtest/baseline_websockets.py)
-- it starts the server pinned to core 0 (``taskset -c 0``), pins itself (the
load generator) to core 1, opens ``--subscribers`` subscriber connections and
one publisher connection, and runs two phases:

throughput
    The publisher keeps ``--window`` publishes unacknowledged (each ack sends
    the next one) for ``--warmup`` + ``--duration`` seconds. Figures are taken
    over the last ``--duration`` seconds: deliveries/s (messages received,
    summed over subscribers), publishes/s (acks) and messages per WebSocket
    frame (the server coalesces a backlog into one JSON-array frame).
latency
    The publisher publishes ``--rate`` messages/s (``--rate`` x subscribers
    deliveries/s). Every message carries its send time (``time.perf_counter_ns``
    of this process, which also runs the subscribers); ``--sample`` subscribers
    parse every frame and record publish-to-receipt latency, reported as
    p50/p99/max over the deliveries of messages sent in the measured window.

After each phase the generator waits until every subscriber has every
acknowledged message (a lost or extra delivery is reported), and checks the
sampled subscribers saw gapless seqs.

CPU use of the server process, of this process and (PostgreSQL runs) of all
``postgres`` processes is measured over each measured window from
/proc/<pid>/stat (utime + stime) as % of one core, so the table shows which
side saturated.

The server's memory per connection (``KiB/conn``) is the growth of its
resident set (VmRSS in /proc/<pid>/status) from right before the subscribers
connect to when all of them have subscribed (before the publisher connects),
divided by ``--subscribers``. It includes what the server allocates once,
on its first connections (lazy imports, database connections of its pool),
so it overstates the cost of one more connection at small ``--subscribers``.

Keeping the generator cheaper than the server
---------------------------------------------
Subscribers use a minimal WebSocket client on ``asyncio.Protocol`` (loadtest/
common.py) and, except for the ``--sample`` ones (spread evenly over the
connection order), count the messages in a frame with
``bytearray.count(b'"type":"message"')`` instead of parsing JSON; the
generator runs on uvloop. How it was checked not to be the bottleneck
(2 cores, 1000 subscribers):

* ``gen-cpu`` (this process) stays well under 100% of core 1 -- about 45-55%
  in the throughput phase, about 35% in the latency phase -- while
  ``server-cpu`` is 85-98% of core 0; ``core0``/``core1`` add what no process
  is charged for (softirq: loopback TCP) and anything else running there;
* the generator's own ceiling was measured against the baseline in its
  ``--baseline-mode direct`` (synchronous fan-out): about 3.9 million
  deliveries/s with gen-cpu at 93% and that server at 53%, i.e. the generator
  was the limit there, at more than twice the hub's rate (a phase whose
  generator core passes 85% is marked GEN in the table);
* with ``--client websockets`` (the websockets library for subscribers) the
  generator spends about 1.5x (throughput) to 2x (latency phase) more CPU per
  delivery and the server gets less done, which is why the raw client is the
  default.

The throughput phase is closed-loop: the server coalesces the whole window
into one frame per subscriber (msgs/frame = --window) and acks it at once, so
server-cpu below 100% there is the round trip to the generator, not headroom.
Other work on the machine skews everything: before each target the script
waits (``--wait-quiet``) for both cores to be idle and says so if they are
not; ``--repeat`` interleaves runs and the ratios use medians.

Everything runs on 127.0.0.1 only; each run is bounded (``--max-time``) and
stops by itself; servers are stopped and the PostgreSQL database dropped on
exit, error or Ctrl-C.

Example: ``python loadtest/fanout.py --db both`` (about 2 minutes).
"""

from __future__ import annotations

import sys

# loadtest/queue.py shares its name with the standard library's ``queue``, which
# asyncio's thread pool imports: put this folder after the standard library.
sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import contextlib
import functools
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from common import MESSAGE_MARK, Buffer, PayloadHandler, RawClient, client_frame
from harness import (
    SUBPROTOCOL,
    Window,
    add_db_option,
    add_loop_option,
    add_machine_options,
    add_timing_options,
    check_timing,
    connect,
    core_figures,
    finish,
    latency_ms,
    listed,
    measure,
    open_many,
    paced,
    quiet,
    run_steps,
    run_tool,
    say,
    say_result,
    session,
    spread,
    start_meters,
    start_profiler,
    stop_profiler,
    write_json,
)
from report import GEN_BOUND, PhaseResult, describe, memory_line, summary, table
from servers import HOST, Server, baseline_argv, free_port, hub_argv, hub_token

ROOM = "chat:bench"

# ---------------------------------------------------------------------------
# Counters and recorders


@dataclass
class Stats:
    """Totals over all subscribers."""

    messages: int = 0
    frames: int = 0
    bytes: int = 0
    errors: list[Any] = field(default_factory=list)


@dataclass
class Recorder(Window):
    """Latencies of messages whose send time falls in [lo, hi), and seq gaps."""

    gaps: int = 0


def counting_handler(stats: Stats) -> PayloadHandler:
    """Most subscribers: count messages without parsing the frame."""
    count_mark = MESSAGE_MARK

    def handle(buf: Buffer, start: int, end: int) -> None:
        n = buf.count(count_mark, start, end)
        stats.messages += n
        stats.frames += 1
        stats.bytes += end - start
        if not n:  # not a message: maybe an error frame, worth seeing
            stats.errors.append(orjson.loads(memoryview(buf)[start:end]))

    return handle


def sampling_handler(stats: Stats, rec: Recorder) -> PayloadHandler:
    """Sampled subscribers: parse every frame, check seqs, record latencies."""
    last_seq = 0

    def handle(buf: Buffer, start: int, end: int) -> None:
        nonlocal last_seq
        now = time.perf_counter_ns()
        obj = orjson.loads(memoryview(buf)[start:end])
        n = 0
        lo, hi, lat = rec.lo, rec.hi, rec.values
        for item in obj if isinstance(obj, list) else (obj,):
            if item.get("type") != "message":
                stats.errors.append(item)
                continue
            n += 1
            seq = item["seq"]
            if last_seq and seq != last_seq + 1:
                rec.gaps += 1
            last_seq = seq
            sent = item["data"]["t"]
            if lo <= sent < hi:
                lat.append(now - sent)
        stats.messages += n
        stats.frames += 1
        stats.bytes += end - start

    return handle


# ---------------------------------------------------------------------------
# Subscribers: the raw client (default) or the websockets library


class Subscriber(Protocol):
    @property
    def lost(self) -> bool: ...

    def close_reason(self) -> str: ...

    async def close(self) -> None: ...


class RawSubscriber:
    def __init__(self, client: RawClient) -> None:
        self.client = client

    @classmethod
    async def open(cls, port: int, token: str, handler: PayloadHandler) -> RawSubscriber:
        client = await connect(port, token)
        try:
            client.send_json({"type": "subscribe", "room": ROOM, "id": "s1"})
            await client.expect("subscribed")
        except BaseException:
            await client.close()
            raise
        client.on_payload = handler
        return cls(client)

    @property
    def lost(self) -> bool:
        return self.client.closed.done()

    def close_reason(self) -> str:
        info = self.client.close_info
        return f"code={info.code} reason={info.reason!r}"

    async def close(self) -> None:
        await self.client.close()


class LibSubscriber:
    """A subscriber on ``websockets.asyncio.client`` (``--client websockets``)."""

    def __init__(self, ws: Any, handler: PayloadHandler) -> None:
        self.ws = ws
        self.handler = handler
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, port: int, token: str, handler: PayloadHandler) -> LibSubscriber:
        from websockets.asyncio.client import connect

        ws = await connect(f"ws://{HOST}:{port}/ws", subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                           compression=None, max_size=None, ping_interval=None,
                           open_timeout=30)
        try:
            await ws.send(orjson.dumps({"type": "connect", "token": token}), text=True)
            await _lib_expect(ws, "connected")
            await ws.send(orjson.dumps({"type": "subscribe", "room": ROOM, "id": "s1"}),
                          text=True)
            await _lib_expect(ws, "subscribed")
        except BaseException:
            await ws.close()
            raise
        return cls(ws, handler)

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        ws, handler = self.ws, self.handler
        with contextlib.suppress(ConnectionClosed):
            while True:
                data = await ws.recv(decode=False)
                handler(data, 0, len(data))

    @property
    def lost(self) -> bool:
        return bool(self.task.done())

    def close_reason(self) -> str:
        return f"code={self.ws.close_code} reason={self.ws.close_reason!r}"

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self.ws.close()


async def _lib_expect(ws: Any, kind: str) -> None:
    async with asyncio.timeout(30):
        while True:
            obj = orjson.loads(await ws.recv(decode=False))
            for item in obj if isinstance(obj, list) else [obj]:
                if item.get("type") == kind:
                    return
                if item.get("type") == "error":
                    raise RuntimeError(f"server error while waiting for {kind}: {item}")


# ---------------------------------------------------------------------------
# The publisher


class Publisher:
    """Sends publish frames; in window mode each ack (or error) sends the next one."""

    def __init__(self, client: RawClient, pad: str) -> None:
        self.client = client
        self._prefix = secrets.token_hex(4)  # ids never repeat across runs (idempotency)
        self._template = (b'{"type":"publish","room":"' + ROOM.encode() + b'","id":"'
                          + self._prefix.encode() + b'-%d","data":{"t":%d,"pad":"'
                          + pad.encode() + b'"}}')
        self.sent = 0
        self.acks = 0
        self.errors: list[dict[str, Any]] = []
        self.sent_at: dict[str, int] = {}  # id -> perf_counter_ns, until acknowledged
        self.ack_rec = Recorder()  # publish-to-ack latency: the commit's share
        self.refill = False
        self._idle = asyncio.Event()
        self._idle.set()
        client.on_payload = self._on_payload

    @property
    def outstanding(self) -> int:
        return self.sent - self.acks - len(self.errors)

    def publish(self, n: int = 1) -> None:
        frames = []
        sent_at = self.sent_at
        for _ in range(n):
            self.sent += 1
            now = time.perf_counter_ns()
            sent_at[f"{self._prefix}-{self.sent}"] = now
            frames.append(client_frame(self._template % (self.sent, now)))
        self._idle.clear()
        self.client.send_raw(b"".join(frames))

    def _on_payload(self, buf: Buffer, start: int, end: int) -> None:
        now = time.perf_counter_ns()
        obj = orjson.loads(memoryview(buf)[start:end])
        done = 0
        rec = self.ack_rec
        for item in obj if isinstance(obj, list) else (obj,):
            kind = item.get("type")
            if kind == "ack":
                self.acks += 1
                done += 1
                sent = self.sent_at.pop(item["id"], 0)
                if rec.lo <= sent < rec.hi:
                    rec.values.append(now - sent)
            elif kind == "error":
                self.errors.append(item)
                done += 1
        if self.refill and done:
            self.publish(done)
        if not self.outstanding:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


# ---------------------------------------------------------------------------
# Phases


@dataclass
class Bench:
    args: argparse.Namespace
    server: Server
    publisher: Publisher
    subscribers: list[Subscriber]
    stats: Stats
    rec: Recorder
    target: str
    db: str
    run: int

    async def phase(self, name: str, start_load: Callable[[], Awaitable[None] | None],
                    stop_load: Callable[[], Awaitable[None] | None]) -> PhaseResult:
        args, stats, pub = self.args, self.stats, self.publisher
        profiler = None
        load = start_load()
        task = asyncio.ensure_future(load) if load is not None else None
        try:
            await asyncio.sleep(args.warmup)
            profiler = start_profiler(args, self.server.pid, f"{self.target}-{self.db}-{name}")
            meters, cores = start_meters(self.server.pid, self.db)
            m0, f0, b0, a0 = stats.messages, stats.frames, stats.bytes, pub.acks
            self.rec.arm()
            pub.ack_rec.arm()
            elapsed = await measure(args, name, lambda t: (
                f"{(stats.messages - m0) / t:,.0f} deliveries/s, "
                f"{(pub.acks - a0) / t:,.0f} publishes/s so far"))
            m1, f1, b1, a1 = stats.messages, stats.frames, stats.bytes, pub.acks
            self.rec.disarm()
            pub.ack_rec.disarm()
            cpu = {key: meter.stop() for key, meter in meters.items()}
            cores.stop()
        finally:
            stopped = stop_load()
            if stopped is not None:
                await stopped
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await stop_profiler(profiler)  # it stops by itself after --duration
        result = PhaseResult(self.target, self.db, name, self.run)
        result.server_core, result.gen_core, result.softirq, result.steal = core_figures(
            args, cores)
        result.deliveries = (m1 - m0) / elapsed
        result.publishes = (a1 - a0) / elapsed
        result.per_frame = (m1 - m0) / max(1, f1 - f0)
        result.bytes_per_msg = (b1 - b0) / max(1, m1 - m0)
        result.server_cpu, result.gen_cpu = cpu["server"], cpu["gen"]
        result.server_sys, result.gen_sys = meters["server"].system, meters["gen"].system
        result.db_cpu = cpu.get("db")
        await self._drain(result)
        _, result.ack_p50, result.ack_p99, _ = latency_ms(pub.ack_rec.values)
        result.samples, result.p50, result.p99, result.max = latency_ms(self.rec.values)
        return result

    async def _drain(self, result: PhaseResult) -> None:
        """Wait for every ack, then for every subscriber to have every message."""
        pub, stats, n = self.publisher, self.stats, len(self.subscribers)
        try:
            async with asyncio.timeout(self.args.drain_timeout):
                await pub.wait_idle()
        except TimeoutError:
            result.problems.append(f"{pub.outstanding} publishes never acknowledged")
        expected = n * pub.acks
        deadline = time.monotonic() + self.args.drain_timeout
        # Polling: the counters are bumped on the hot path, which should not also set events.
        while stats.messages < expected and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # anything extra (duplicates) shows up now
        if stats.messages != expected:
            result.problems.append(f"delivered {stats.messages} of {expected} expected "
                                   f"({stats.messages - expected:+d})")
        lost = [s for s in self.subscribers if s.lost]
        if lost:
            result.problems.append(f"{len(lost)} subscribers disconnected, e.g. "
                                   f"{lost[0].close_reason()}")
        if pub.errors:
            result.problems.append(f"{len(pub.errors)} publish errors, e.g. {pub.errors[0]}")
            pub.errors.clear()
        if stats.errors:
            result.problems.append(f"{len(stats.errors)} unexpected frames, e.g. "
                                   f"{stats.errors[0]}")
            stats.errors.clear()
        if self.rec.gaps:
            result.problems.append(f"{self.rec.gaps} seq gaps seen by sampled subscribers")
            self.rec.gaps = 0

    async def throughput(self) -> PhaseResult:
        pub, window = self.publisher, self.args.window

        def start() -> None:
            pub.refill = True
            pub.publish(window)

        def stop() -> None:
            pub.refill = False

        return await self.phase("throughput", start, stop)

    async def latency(self, rate: int) -> PhaseResult:
        pub = self.publisher
        result = await self.phase("latency",
                                  lambda: paced(rate, functools.partial(pub.publish, 1)),
                                  lambda: None)
        result.offered = rate * len(self.subscribers)
        return result


async def open_subscribers(args: argparse.Namespace, port: int, token: str, stats: Stats,
                           rec: Recorder) -> list[Subscriber]:
    kind: Any = LibSubscriber if args.client == "websockets" else RawSubscriber
    counting = counting_handler(stats)
    # Spread the sampled ones over the connection order (see spread).
    sampled = spread(args.subscribers, args.sample)

    async def one(i: int) -> Subscriber:
        handler = sampling_handler(stats, rec) if i in sampled else counting
        sub: Subscriber = await kind.open(port, token, handler)
        return sub

    async def close(sub: Subscriber) -> None:
        await sub.close()

    return await open_many(args.subscribers, args.connect_concurrency, one, close)


async def run_target(args: argparse.Namespace, target: str, db: str, run: int,
                     workdir: Path) -> list[PhaseResult]:
    port = free_port()
    say(f"== {target} / {db}" + (f" (run {run})" if args.repeat > 1 else "")
        + f": starting on 127.0.0.1:{port} (core {args.server_core})")
    async with session(args, workdir) as s:
        await quiet(args)
        if target.startswith("baseline"):
            mode = target.partition("-")[2] or "coalesce"
            argv = baseline_argv(port, args.loop, mode)
            env: dict[str, str] = {}
            sub_token = pub_token = "anonymous"
        else:
            env = await s.hub_env(db, f"{target}-{db}-{run}")
            argv = hub_argv(port)
            if args.timeline:
                timeline = Path(args.timeline) / f"timeline-{db}-{run}.json"
                timeline.parent.mkdir(parents=True, exist_ok=True)
                argv = [argv[0], str(Path(__file__).parent / "traced_hub.py"), *argv[3:]]
                env["ROOMLOG_TIMELINE"] = str(timeline)
            sub_token, pub_token = hub_token("bench-sub"), hub_token("bench-pub")
        server = await s.start(f"{target}-{db}", argv, port, env)
        t0 = time.monotonic()
        stats, rec = Stats(), Recorder()
        rss_before = server.rss_kib()
        subscribers = await open_subscribers(args, port, sub_token, stats, rec)
        s.closers += [sub.close for sub in subscribers]
        rss_after = server.rss_kib()
        kib_per_conn = (rss_after - rss_before) / len(subscribers)
        publisher = Publisher(await s.connect(port, pub_token), "x" * args.payload)
        say(f"   {len(subscribers)} subscribers ({args.client} client) + 1 publisher connected "
            f"in {time.monotonic() - t0:.1f}s")
        say("   " + memory_line(rss_before, rss_after, len(subscribers)))
        s.settle()
        bench = Bench(args, server, publisher, subscribers, stats, rec, target, db, run)
        results = []
        for phase in args.phases:
            for rate in [0] if phase == "throughput" else args.rates:
                result = await (bench.throughput() if phase == "throughput"
                                else bench.latency(rate))
                result.kib_per_conn = kib_per_conn
                say_result(describe(result), result.problems)
                results.append(result)
    if args.timeline and not target.startswith("baseline"):
        say_timeline(timeline)
    return results


def say_timeline(path: Path) -> None:
    """Where a message's time went in the hub (loadtest/traced_hub.py), p50 and p99
    of each stage over every publish of the run."""
    if not path.exists():
        say(f"   !! no timeline at {path} (the server did not exit cleanly)")
        return
    from traced_hub import summary as timeline_summary

    marks = [tuple(m) for m in orjson.loads(path.read_bytes())["marks"]]
    rows = timeline_summary(marks)  # type: ignore[arg-type]
    say(f"   timeline of one write, {rows[0]['count'] if rows else 0} writes "
        f"({path}):")
    for row in rows:
        say(f"     {row['stage']:<42} p50 {row['p50']:7.3f} ms   p99 {row['p99']:7.3f} ms")


# ---------------------------------------------------------------------------
# The plot


def plot(path: str, args: argparse.Namespace, results: list[PhaseResult]) -> None:
    """Latency p50/p99 (medians over runs) and server CPU against offered deliveries/s,
    one line per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[float, list[PhaseResult]]] = {}
    for r in results:
        if r.phase == "latency" and r.offered is not None:
            label = r.target if r.db == "-" else f"{r.target}/{r.db}"
            series.setdefault(label, {}).setdefault(r.offered, []).append(r)
    fig, (lat, cpu) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    for label, by_rate in sorted(series.items()):
        xs = sorted(by_rate)

        def med(field: str, rs_of: dict[float, list[PhaseResult]] = by_rate,
                at: list[float] = xs) -> list[float]:
            return [statistics.median([getattr(r, field) or 0.0 for r in rs_of[x]])
                    for x in at]

        line, = lat.plot(xs, med("p99"), marker="o", label=f"{label} p99")
        lat.plot(xs, med("p50"), marker=".", linestyle="--", color=line.get_color(),
                 label=f"{label} p50")
        cpu.plot(xs, med("server_cpu"), marker="o", color=line.get_color(), label=label)
    lat.set_ylabel("publish to receipt (ms)")
    lat.set_yscale("log")
    lat.grid(True, which="both", alpha=0.3)
    lat.legend(fontsize="small")
    lat.set_title(f"{args.subscribers} subscribers of one room, server on one core")
    cpu.set_ylabel("server CPU (% of one core)")
    cpu.set_xlabel("offered deliveries/s (publishes/s x subscribers)")
    cpu.grid(True, alpha=0.3)
    cpu.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    say(f"plot written to {path}")


# ---------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_db_option(parser, "both")
    parser.add_argument("--target", choices=["hub", "baseline", "both"], default="both",
                        help="run the hub, the plain websockets baseline, or both (default)")
    parser.add_argument("--baseline-mode", default="coalesce",
                        help="comma-separated fan-out modes of the baseline server: coalesce "
                             "(the baseline, default), plain (websockets.broadcast of each "
                             "message, one frame each; listed as baseline-plain, and the "
                             "throughput ratio's reference when it runs) and/or direct "
                             "(synchronous writes of a per-iteration batch; baseline-direct)")
    parser.add_argument("--subscribers", type=int, default=1000,
                        help="subscriber connections (default 1000)")
    add_timing_options(parser)
    parser.add_argument("--window", type=int, default=200,
                        help="unacknowledged publishes in the throughput phase (default 200; "
                             "the hub pauses reading at max_inflight 256)")
    parser.add_argument("--rate", type=int, default=20,
                        help="publishes/s in the latency phase (default 20: 20,000 "
                             "deliveries/s at 1000 subscribers)")
    parser.add_argument("--rates",
                        help="comma-separated publishes/s: one latency phase per rate, "
                             "latency against offered rate (default: --rate)")
    parser.add_argument("--plot", metavar="PNG",
                        help="draw latency (p50, p99) and server CPU against offered "
                             "deliveries/s into this PNG (needs matplotlib: the loadtest extra)")
    parser.add_argument("--timeline", metavar="DIR",
                        help="run the hub under loadtest/traced_hub.py and print where a "
                             "publish's time goes, stage by stage (use with --phases latency "
                             "and one rate); the raw marks go to DIR")
    parser.add_argument("--payload", type=int, default=64,
                        help="padding characters in each message's data (default 64)")
    parser.add_argument("--sample", type=int, default=50,
                        help="subscribers that parse every frame for latency and seq checks "
                             "(default 50); the rest only count messages")
    parser.add_argument("--phases", default="throughput,latency",
                        help="comma-separated phases to run (default throughput,latency)")
    parser.add_argument("--client", choices=["raw", "websockets"], default="raw",
                        help="subscriber client: the lean asyncio.Protocol one (default) or "
                             "the websockets library")
    add_loop_option(parser, "event loop of the generator and the baseline (default uvloop; "
                            "uvicorn runs the hub on uvloop when it is installed)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every target this many times, interleaved; the ratios and "
                             "targets use medians (default 1)")
    add_machine_options(
        parser, connections="subscriber", each="target", per="target and run",
        drain="seconds to wait for outstanding deliveries after a phase",
        profile="collapsed stacks, one file per target and phase")
    args = parser.parse_args(argv)
    listed(parser, args, "baseline_mode", ("coalesce", "direct", "plain"))
    listed(parser, args, "phases", ("throughput", "latency"))
    for name in ("subscribers", "window", "rate", "sample", "repeat"):
        if getattr(args, name) < 1 and not (name == "sample" and getattr(args, name) == 0):
            parser.error(f"--{name} must be positive")
    check_timing(parser, args)
    try:
        args.rates = [int(r) for r in args.rates.split(",")] if args.rates else [args.rate]
    except ValueError:
        parser.error("--rates: comma-separated whole numbers")
    if any(r < 1 for r in args.rates):
        parser.error("--rates must be positive")
    return args


async def main(args: argparse.Namespace) -> int:
    plan: list[tuple[str, str]] = []
    if args.target in ("baseline", "both"):
        plan += [("baseline" if mode == "coalesce" else f"baseline-{mode}", "-")
                 for mode in args.baseline_mode]
    if args.target in ("hub", "both"):
        dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
        plan += [("hub", db) for db in dbs]
    plan *= args.repeat
    say(f"fanout: {args.subscribers} subscribers, 1 publisher, room {ROOM}; "
        f"throughput window {args.window}, latency rate {args.rate}/s; "
        f"{args.warmup:g}s warm-up + {args.duration:g}s per phase; payload {args.payload} chars; "
        f"server on core {args.server_core}, generator on core {args.gen_core} ({args.loop})")
    per_run = len(plan) // args.repeat
    results, failed = await run_steps(args, "rt-fanout-", [
        (f"{target}/{db}", functools.partial(run_target, args, target, db, i // per_run + 1))
        for i, (target, db) in enumerate(plan)])
    say("")
    say(table(results, args.repeat))
    for line in summary(args, results):
        say(line)
    write_json(args, "fanout", results, failed)
    if args.plot:
        plot(args.plot, args, results)
    return finish(results, failed, lambda r: f"{r.target}/{r.db}/{r.phase}",
                  "ok: yes = subscribers got exactly subscribers x acked messages and the "
                  "sampled ones saw gapless seqs; NO = see !!; GEN = the generator's core was "
                  f"over {GEN_BOUND:g}% busy")


def run() -> None:
    run_tool(parse_args(), main, "interrupted; servers stopped")


if __name__ == "__main__":
    run()
