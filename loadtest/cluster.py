"""Cluster fan-out benchmark: N hub instances sharing PostgreSQL and a Redis bus.

One fresh PostgreSQL database (migrated) serves two set-ups in turn, measured
the same way, over real WebSockets from this process (the load generator):

single
    One hub without Redis (the in-process bus), every subscriber on it: the
    single-instance figure of loadtest/fanout.py (hub on PostgreSQL).
cluster
    ``--instances`` hubs with ``ROOMLOG_REDIS_URL`` pointing at a private
    ``redis-server`` started on a free loopback port (never the machine's
    own Redis); subscriber i connects to instance i mod N, the publisher to
    instance 1. Subscribers on instance 1 get messages over the **local** path
    (commit, then hand-off to the local hub); the others over the
    **remote** (cross-instance) path: instance 1 publishes the committed
    messages to Redis, each other instance receives them on its pub/sub
    connection, orders them and delivers. Publishing starts once every
    instance is subscribed to the room's channel (``PUBSUB NUMSUB``).

``--subscribers`` subscribers in room ``chat:bench``, one publisher. In each
set-up the phases (``--phases``) are those of loadtest/fanout.py, on its own
code (its publisher, subscriber, counting and sampling handlers):

latency
    ``--rate`` publishes/s (``--rate`` x ``--subscribers`` deliveries/s; by
    default 20 x 1000 = 20,000/s), each carrying its send time
    (``time.perf_counter_ns`` of this process, which also runs the
    subscribers); ``--sample`` subscribers (spread over the instances and over
    each one's connection order) parse every frame and record
    publish-to-receipt latency, reported as p50/p99/p99.9/max per path: the
    single instance, the cluster's local path (instance 1) and its remote
    path (instances 2..N).
saturated
    the publisher keeps ``--window`` publishes unacknowledged (each ack sends
    the next): deliveries/s at the most the set-up takes (closed loop).

Each phase has ``--warmup`` unmeasured seconds, then ``--duration`` measured
ones. After it, the generator waits for every acknowledgement and checks that
**every** subscriber got every acknowledged message exactly once and in order:
each subscriber reads the seq of the first and last message of every frame
(as loadtest/queue.py does) and counts its messages; a frame must continue
where the previous one ended and hold last - first + 1 messages, and at the end
each subscriber must be at the head it subscribed at plus the acknowledged
publishes. The sampled ones also check every seq (fanout.py's check).

To show where the remote path's time goes, the cluster set-up also has a **bus
tap**: a raw Redis subscriber of the room's channel in this process, timing
each bus message from the publish of the messages it carries to its arrival
(commit + instance 1's work until its PUBLISH left + the Redis hop; the row
``bus (Redis tap)``).

From each instance's ``/metrics`` it reads, per phase and at the end,
``roomlog_gap_fills_total`` (log reads that filled a gap the bus left) and
``roomlog_bus_dropped_total`` (publishes dropped while Redis failed): both
should stay 0 in a healthy run. It also shows the server-side view of the
path, per instance over the phase: the mean of
``roomlog_deliver_latency_seconds`` (commit start to hand-off to the local
subscribers' outboxes) and of ``roomlog_bus_lag_seconds`` (commit start to
arrival from the bus).

Cores (``--cores``, default auto, from the cores this process may use): with
at least N + 2 cores every instance gets its own core, the generator the next
one and Redis the one after; with fewer, the generator and Redis share the
last core and the instances share the others (on 2 cores: every instance on
core 0, generator and Redis on core 1 -- the single instance then runs where
fanout.py runs it, on core 0, and the cluster's instances split that core).
PostgreSQL is the machine's server: not pinned. The run prints the layout.
CPU use of each process (% of one core, /proc/<pid>/stat) and how busy each
core was are measured over every measured window.

The final table puts single instance, cluster local and cluster remote side
by side: deliveries/s, p50, p99, p99.9, max and the p50 added over the single
instance; then the issue's target: the cross-instance path adds at most
2 ms to p50 at 20,000 deliveries/s.

Everything runs on 127.0.0.1 only; the run is bounded (``--max-time``) and
stops by itself; the hubs and Redis are stopped and the PostgreSQL database
dropped on exit, error or Ctrl-C.

Example: ``python loadtest/cluster.py`` (2 instances, about 1.5 minutes).
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
import gc
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import msgpack
import orjson
from common import MESSAGE_MARK, Buffer, CpuMeter, PayloadHandler, percentile, wait_quiet
from fanout import ROOM, Publisher, RawSubscriber, Recorder, Stats, sampling_handler
from harness import (
    QUIET_BUSY,
    add_loop_option,
    add_machine_options,
    check_timing,
    connect,
    finish,
    latency_ms,
    listed,
    measure,
    open_many,
    paced,
    run_steps,
    run_tool,
    say,
    spread,
    start_meters,
    start_profiler,
    stop_profiler,
    write_json,
)
from report import GEN_BOUND, render_table, verdict
from servers import (
    PgDatabase,
    RedisProcess,
    Server,
    free_port,
    hub_argv,
    hub_env,
    hub_token,
    migrate,
)

TARGET_ADDED_P50_MS = 2.0  # the issue: the cross-instance path adds at most this to p50 ...
TARGET_DELIVERIES = 20_000  # ... at this many deliveries/s
REDIS_CHANNEL = "roomlog:room:" + ROOM  # its channel (roomlog/bus/redis.py, default prefix)
SUBSCRIBE_TIMEOUT = 10.0  # seconds for every instance to subscribe to the room's channel
OTHER_LOAD = 20.0  # % of a core: above this, other work on our cores made a phase noisy

# How a message of the room starts, up to its seq (orjson keeps the key order, no spaces).
SEQ_PREFIX = MESSAGE_MARK + b',"room":"' + ROOM.encode() + b'","seq":'

# Counters read from every instance's /metrics (the Prometheus names of roomlog/metrics.py).
GAP_FILLS = "roomlog_gap_fills_total"
BUS_DROPPED = "roomlog_bus_dropped_total"
END_COUNTERS = {
    GAP_FILLS: "gap fills",
    BUS_DROPPED: "bus dropped",
    "roomlog_bus_reconnects_total": "bus reconnects",
    "roomlog_slow_disconnects_total": "slow disconnects",
    "roomlog_messages_in_total": "messages committed",
    "roomlog_bus_messages_in_total": "messages from the bus",
    "roomlog_messages_out_total": "copies delivered",
}
DELIVER = "roomlog_deliver_latency_seconds"  # commit start -> hand-off, histogram
BUS_LAG = "roomlog_bus_lag_seconds"  # commit start -> arrival from the bus, histogram


# ---------------------------------------------------------------------------
# Cores


@dataclass
class Layout:
    hubs: list[int]  # core of instance i+1 (the single instance runs on hubs[0])
    gen: int
    redis: int
    note: str
    available: int  # cores this process could use before pinning itself


def plan_cores(args: argparse.Namespace) -> Layout:
    n = args.instances
    if args.cores != "auto":
        cores = [int(c) for c in args.cores.split(",")]
        if len(cores) != n + 2:
            raise SystemExit(f"--cores takes {n + 2} cores: instances 1..{n}, generator, Redis")
        return Layout(cores[:n], cores[n], cores[n + 1], "as given (--cores)",
                      len(os.sched_getaffinity(0)))
    avail = sorted(os.sched_getaffinity(0))
    if len(avail) >= n + 2:
        return Layout(avail[:n], avail[n], avail[n + 1], "each on its own core", len(avail))
    if len(avail) >= 2:
        hub_cores = avail[:-1]
        hubs = [hub_cores[i % len(hub_cores)] for i in range(n)]
        return Layout(hubs, avail[-1], avail[-1],
                      f"only {len(avail)} cores for {n} instances + generator + Redis: "
                      "the instances share cores, the generator shares its core with Redis",
                      len(avail))
    return Layout([avail[0]] * n, avail[0], avail[0], "one core: everything shares it", 1)


def describe_layout(layout: Layout) -> str:
    hubs = ", ".join(f"instance {i + 1} on core {c}" for i, c in enumerate(layout.hubs))
    return (f"cores ({layout.available} available; {layout.note}): single instance "
            f"on core {layout.hubs[0]}; cluster: {hubs}; generator on core {layout.gen}; "
            f"Redis on core {layout.redis}; PostgreSQL not pinned")


# ---------------------------------------------------------------------------
# Subscribers: per-subscriber exact checks on top of fanout.py's handlers


class Tracked:
    """One subscriber's account: where it subscribed, what it got, frames out of order."""

    __slots__ = ("disorder", "head", "instance", "last", "messages", "sub")

    def __init__(self, instance: int) -> None:
        self.instance = instance
        self.head = 0  # the room's head when it subscribed
        self.last = 0  # seq of the last message received
        self.messages = 0
        self.disorder = 0  # frames not continuing the previous one, or miscounted
        self.sub: RawSubscriber | None = None

    def wrong(self, acked: int) -> str | None:
        """What is wrong with this subscriber once ``acked`` publishes were acknowledged."""
        if self.messages == acked and self.last == self.head + acked and not self.disorder:
            return None
        return (f"got {self.messages} of {acked} messages, last seq {self.last} (expected "
                f"{self.head + acked}), {self.disorder} frames out of order")


def tracked_handler(t: Tracked, stats: Stats, rec: Recorder | None) -> PayloadHandler:
    """Check the seqs of every frame (first and last, and the count between); count into
    ``stats``; with ``rec``, also parse the frame with fanout.py's sampling handler."""
    sample = sampling_handler(stats, rec) if rec is not None else None
    prefix, skip, mark = SEQ_PREFIX, len(SEQ_PREFIX), MESSAGE_MARK

    def handle(buf: Buffer, start: int, end: int) -> None:
        first = buf.find(prefix, start, end)
        if first < 0:  # not a message: worth seeing
            stats.errors.append(orjson.loads(memoryview(buf)[start:end]))
            return
        i = first + skip
        seq0 = seq1 = int(buf[i : buf.find(b",", i, end)])
        last = buf.rfind(prefix, first, end)
        if last != first:
            i = last + skip
            seq1 = int(buf[i : buf.find(b",", i, end)])
        n = buf.count(mark, start, end)
        if seq0 != t.last + 1 or seq1 - seq0 + 1 != n:
            t.disorder += 1
        t.last = seq1
        t.messages += n
        if sample is not None:
            sample(buf, start, end)
        else:
            stats.messages += n
            stats.frames += 1
            stats.bytes += end - start

    return handle


async def open_tracked(port: int, token: str, t: Tracked, stats: Stats,
                       rec: Recorder | None) -> RawSubscriber:
    client = await connect(port, token)
    try:
        client.send_json({"type": "subscribe", "room": ROOM, "id": "s1"})
        frame = await client.expect("subscribed")
    except BaseException:
        await client.close()
        raise
    t.head = t.last = int(frame["head"])
    client.on_payload = tracked_handler(t, stats, rec)
    t.sub = RawSubscriber(client)
    return t.sub


# ---------------------------------------------------------------------------
# A tap on the bus: when did Redis forward what instance 1 published?


def _resp(buf: bytearray, pos: int) -> tuple[object, int] | None:
    """One RESP2 value (array, bulk or simple string, integer) at ``pos`` and the position
    after it; None if the buffer does not hold all of it yet."""
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        return None
    kind, line = buf[pos], bytes(buf[pos + 1 : eol])
    pos = eol + 2
    if kind == 0x2A:  # '*': array
        items = []
        for _ in range(int(line)):
            got = _resp(buf, pos)
            if got is None:
                return None
            item, pos = got
            items.append(item)
        return items, pos
    if kind == 0x24:  # '$': bulk string
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            return None
        return bytes(buf[pos : pos + n]), pos + n + 2
    return line, pos  # '+', '-', ':'


class BusTap(asyncio.Protocol):
    """A raw Redis subscriber of the room's channel in this process: for every message
    instance 1 publishes, the time from its publish (its ``t``) to Redis forwarding it,
    i.e. commit + instance 1's work until its PUBLISH left + the Redis hop. Cheap: one
    bus message per commit. Runs on the generator's core, so it waits for the generator's
    loop like the subscribers do."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.buf = bytearray()
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    @classmethod
    async def open(cls, redis: RedisProcess, rec: Recorder) -> BusTap:
        loop = asyncio.get_running_loop()
        _, tap = await loop.create_connection(lambda: cls(rec), "127.0.0.1", redis.port)
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
            await tap.subscribed
        return tap

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's: no subclass
        channel = REDIS_CHANNEL.encode()
        transport.write(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        buf = self.buf
        buf += data
        pos = 0
        while pos < len(buf):
            got = _resp(buf, pos)
            if got is None:
                break
            value, pos = got
            if not isinstance(value, list) or len(value) != 3:
                continue
            if value[0] == b"subscribe" and not self.subscribed.done():
                self.subscribed.set_result(None)
            elif value[0] == b"message":
                _, what, body = msgpack.unpackb(value[2], raw=False)
                if what == "m":
                    for row in body[1]:
                        self.rec.add(orjson.loads(row[4])["t"], now)
        del buf[:pos]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# ---------------------------------------------------------------------------
# Results


@dataclass
class PathFigures:
    """Deliveries and publish-to-receipt latency of one group of subscribers."""

    label: str
    subscribers: int
    deliveries: float = 0.0  # per second
    samples: int = 0
    p50: float | None = None  # milliseconds
    p99: float | None = None
    p999: float | None = None
    max: float | None = None


@dataclass
class ClusterResult:
    setup: str  # "single" or "cluster"
    phase: str  # "latency" or "saturated"
    instances: int
    publishes: float = 0.0  # per second (acks)
    per_frame: float = 0.0
    bytes_per_msg: float = 0.0
    ack_p50: float | None = None
    ack_p99: float | None = None
    paths: dict[str, PathFigures] = field(default_factory=dict)  # all, local, remote
    cpu: dict[str, float] = field(default_factory=dict)  # hub1.., redis, postgres, gen
    busy: dict[int, float] = field(default_factory=dict)  # core -> % busy
    softirq: dict[int, float] = field(default_factory=dict)
    steal: float = 0.0
    other: float = 0.0  # % of a core busy on our cores with work that is none of ours
    server: list[dict[str, float]] = field(default_factory=list)  # per instance, see deltas
    gen_core: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def deliveries(self) -> float:
        return self.paths["all"].deliveries


def ms(value: float | None) -> str:
    """Milliseconds with two decimals (differences of a millisecond matter here)."""
    return "-" if value is None else f"{value:.2f}ms"


def latency_figures(label: str, subscribers: int, deliveries: float,
                    values_ns: list[int]) -> PathFigures:
    count, p50, p99, top = latency_ms(values_ns)
    values = sorted(values_ns)
    p999 = percentile(values, 0.999) / 1e6 if values else None
    return PathFigures(label, subscribers, deliveries, count, p50, p99, p999, top)


def describe_path(p: PathFigures) -> str:
    return (f"{p.label} ({p.subscribers} subscribers): {p.deliveries:,.0f} deliveries/s; "
            f"latency p50 {ms(p.p50)} p99 {ms(p.p99)} p99.9 {ms(p.p999)} max {ms(p.max)} "
            f"({p.samples:,} samples)")


def describe_cpu(r: ClusterResult) -> str:
    cpu = " ".join(f"{name} {value:.0f}%" for name, value in r.cpu.items())
    cores = ", ".join(f"{core} {busy:.0f}% (softirq {r.softirq.get(core, 0.0):.0f}%)"
                      for core, busy in sorted(r.busy.items()))
    text = f"cpu (% of a core): {cpu}; cores busy: {cores}; steal {r.steal:.1f}%"
    if r.other > OTHER_LOAD:
        text += (f"; !! about {r.other:.0f}% of a core went to other work on the machine: "
                 "figures are noisy")
    return text


def describe_server(r: ClusterResult) -> str:
    parts = []
    for i, s in enumerate(r.server):
        text = f"instance {i + 1}: commit-to-hand-off mean {ms(s.get('deliver_ms'))}"
        if "bus_lag_ms" in s:
            text += f" (commit-to-bus-arrival {ms(s['bus_lag_ms'])})"
        parts.append(text + f", gap fills {s.get('gap_fills', 0):.0f}, "
                            f"bus dropped {s.get('dropped', 0):.0f}")
    return "server side (/metrics, over the phase): " + "; ".join(parts)


# ---------------------------------------------------------------------------
# One set-up: its hubs, subscribers and publisher, its phases


def metric_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    out = {"gap_fills": delta(GAP_FILLS), "dropped": delta(BUS_DROPPED)}
    for key, metric in (("deliver_ms", DELIVER), ("bus_lag_ms", BUS_LAG)):
        count = delta(metric + "_count")
        if count:
            out[key] = 1000 * delta(metric + "_sum") / count
    return out


@dataclass
class SetUp:
    args: argparse.Namespace
    name: str  # single / cluster
    servers: list[Server]
    cores: list[int]  # every core used (for the core meter and --wait-quiet)
    pg: PgDatabase
    redis: RedisProcess | None
    tracked: list[Tracked]
    stats: list[Stats]  # per instance
    recs: list[Recorder]  # per instance
    publisher: Publisher
    tap: BusTap | None = None

    async def scrape(self) -> list[dict[str, float]]:
        return list(await asyncio.gather(*(s.metrics() for s in self.servers)))

    async def phase(self, phase: str) -> ClusterResult:
        args, pub, stats, recs = self.args, self.publisher, self.stats, self.recs
        n = len(self.servers)
        result = ClusterResult(self.name, phase, n)
        before = await self.scrape()
        profilers = []
        task: asyncio.Future[None] | None = None
        if phase == "latency":
            task = asyncio.ensure_future(paced(args.rate, functools.partial(pub.publish, 1)))
        else:
            pub.refill = True
            pub.publish(args.window)
        try:
            await asyncio.sleep(args.warmup)
            profilers = [start_profiler(args, s.pid, f"{self.name}-hub{i + 1}-{phase}")
                         for i, s in enumerate(self.servers)]
            meters, cores = start_meters(self.servers[0].pid, "postgres", self.pg.name)
            meters.pop("server")
            for i, s in enumerate(self.servers):
                meters[f"hub{i + 1}"] = CpuMeter([s.pid])
            if self.redis is not None:
                meters["redis"] = CpuMeter([self.redis.pid])
            for meter in meters.values():
                meter.start()
            m0 = [(st.messages, st.frames, st.bytes) for st in stats]
            a0 = pub.acks
            for rec in recs:
                rec.arm()
            pub.ack_rec.arm()
            if self.tap is not None:
                self.tap.rec.arm()
            elapsed = await measure(args, f"{self.name}/{phase}", lambda t: (
                f"{(sum(st.messages for st in stats) - sum(m[0] for m in m0)) / t:,.0f} "
                f"deliveries/s, {(pub.acks - a0) / t:,.0f} publishes/s so far"))
            m1 = [(st.messages, st.frames, st.bytes) for st in stats]
            a1 = pub.acks
            for rec in recs:
                rec.disarm()
            pub.ack_rec.disarm()
            if self.tap is not None:
                self.tap.rec.disarm()
            cpu = {key: meter.stop() for key, meter in meters.items()}
            cores.stop()
        finally:
            pub.refill = False
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for profiler in profilers:
            await stop_profiler(profiler)

        order = [f"hub{i + 1}" for i in range(n)] + ["redis", "db", "gen"]
        names = {"db": "postgres", "gen": "generator"}
        result.cpu = {names.get(k, k): cpu[k] for k in order if k in cpu}
        result.busy = {c: cores.busy.get(c, 0.0) for c in self.cores}
        result.softirq = {c: cores.softirq.get(c, 0.0) for c in self.cores}
        result.steal = sum(cores.steal.get(c, 0.0) for c in self.cores) / len(self.cores)
        # What kept our cores busy besides our processes (and loopback softirq): another
        # program. PostgreSQL is counted wherever it ran, so this may undercount.
        result.other = max(0.0, sum(result.busy.values()) - sum(result.softirq.values())
                           - sum(result.cpu.values()))
        result.gen_core = cores.busy.get(args.gen_core, 0.0)
        result.publishes = (a1 - a0) / elapsed
        messages = [b[0] - a[0] for a, b in zip(m0, m1, strict=True)]
        frames = sum(b[1] - a[1] for a, b in zip(m0, m1, strict=True))
        nbytes = sum(b[2] - a[2] for a, b in zip(m0, m1, strict=True))
        result.per_frame = sum(messages) / max(1, frames)
        result.bytes_per_msg = nbytes / max(1, sum(messages))
        await self.drain(result)
        _, result.ack_p50, result.ack_p99, _ = latency_ms(pub.ack_rec.values)

        per_instance = [sum(1 for t in self.tracked if t.instance == i) for i in range(n)]
        if n == 1:
            result.paths["all"] = latency_figures("single instance", per_instance[0],
                                                  messages[0] / elapsed, recs[0].values)
        else:
            result.paths["local"] = latency_figures(
                "local path, instance 1", per_instance[0], messages[0] / elapsed,
                recs[0].values)
            others = "instance 2" if n == 2 else f"instances 2-{n}"
            result.paths["remote"] = latency_figures(
                f"remote path, {others}", sum(per_instance[1:]),
                sum(messages[1:]) / elapsed, [v for rec in recs[1:] for v in rec.values])
            result.paths["all"] = latency_figures(
                "all", sum(per_instance), sum(messages) / elapsed,
                [v for rec in recs for v in rec.values])
        if self.tap is not None:
            result.paths["tap"] = latency_figures("bus tap", 0, 0.0, self.tap.rec.values)
        after = await self.scrape()
        result.server = [metric_deltas(b, a) for b, a in zip(before, after, strict=True)]
        return result

    async def drain(self, result: ClusterResult) -> None:
        """Wait for every ack, then for every subscriber to have every message; check them."""
        args, pub = self.args, self.publisher
        try:
            async with asyncio.timeout(args.drain_timeout):
                await pub.wait_idle()
        except TimeoutError:
            result.problems.append(f"{pub.outstanding} publishes never acknowledged")
        acked = pub.acks
        deadline = time.monotonic() + args.drain_timeout
        # Polling: the counters are bumped on the hot path, which should not also set events.
        while (any(t.messages < acked for t in self.tracked)  # noqa: ASYNC110
               and time.monotonic() < deadline):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # anything extra (duplicates) shows up now
        wrong = [(t, why) for t in self.tracked if (why := t.wrong(acked)) is not None]
        if wrong:
            per: dict[int, int] = {}
            for t, _ in wrong:
                per[t.instance + 1] = per.get(t.instance + 1, 0) + 1
            t, why = wrong[0]
            result.problems.append(
                f"{len(wrong)} of {len(self.tracked)} subscribers did not get every message "
                f"exactly once in order (per instance: "
                + ", ".join(f"{k}: {v}" for k, v in sorted(per.items()))
                + f"), e.g. one on instance {t.instance + 1}: {why}")
        lost = [t for t in self.tracked if t.sub is not None and t.sub.lost]
        if lost:
            sub = lost[0].sub
            assert sub is not None
            result.problems.append(f"{len(lost)} subscribers disconnected, e.g. "
                                   f"{sub.close_reason()}")
        if pub.errors:
            result.problems.append(f"{len(pub.errors)} publish errors, e.g. {pub.errors[0]}")
            pub.errors.clear()
        for i, st in enumerate(self.stats):
            if st.errors:
                result.problems.append(f"{len(st.errors)} unexpected frames on instance "
                                       f"{i + 1}, e.g. {st.errors[0]}")
                st.errors.clear()
        for i, rec in enumerate(self.recs):
            if rec.gaps:
                result.problems.append(f"{rec.gaps} seq gaps seen by sampled subscribers "
                                       f"of instance {i + 1}")
                rec.gaps = 0


async def run_setup(args: argparse.Namespace, name: str, layout: Layout, pg: PgDatabase,
                    redis: RedisProcess | None, workdir: Path) -> list[ClusterResult]:
    n = 1 if redis is None else args.instances
    cores = sorted({*layout.hubs[:n], layout.gen} | ({layout.redis} if redis else set()))
    extra = {} if redis is None else {"ROOMLOG_REDIS_URL": redis.url}
    env = hub_env(pg.url, **extra)
    ports = [free_port() for _ in range(n)]
    say("")
    say(f"== {name}: " + ", ".join(f"instance {i + 1} on 127.0.0.1:{p} (core {layout.hubs[i]})"
                                   for i, p in enumerate(ports))
        + (f"; Redis on {redis.url} (core {layout.redis})" if redis else "; no Redis"))
    busy = await wait_quiet(cores, args.wait_quiet, QUIET_BUSY)
    if busy:
        say("   !! the machine is busy with other work (" + ", ".join(
            f"core {c} {b:.0f}%" for c, b in busy.items()) + "): figures will be noisy")
    servers: list[Server] = []
    subs: list[RawSubscriber] = []
    pub_client = None
    tap: BusTap | None = None
    try:
        for i, port in enumerate(ports):
            servers.append(Server(f"{name}-hub{i + 1}", hub_argv(port), port, workdir, env=env,
                                  core=layout.hubs[i]))
        await asyncio.gather(*(s.ready() for s in servers))
        t0 = time.monotonic()
        stats = [Stats() for _ in range(n)]
        recs = [Recorder() for _ in range(n)]
        tracked = [Tracked(i % n) for i in range(args.subscribers)]
        sampled: set[int] = set()
        per = max(1, args.sample // n) if args.sample else 0
        for k in range(n):  # spread over each instance's connection order (see spread)
            mine = [i for i, t in enumerate(tracked) if t.instance == k]
            sampled |= {mine[j] for j in spread(len(mine), per)} if per else set()
        token = hub_token("bench-sub")

        async def one(i: int) -> RawSubscriber:
            t = tracked[i]
            return await open_tracked(servers[t.instance].port, token, t, stats[t.instance],
                                      recs[t.instance] if i in sampled else None)

        async def close(sub: RawSubscriber) -> None:
            await sub.close()

        subs = await open_many(args.subscribers, args.connect_concurrency, one, close)
        if redis is not None:  # publish only once every instance listens to the room
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                while True:
                    answer = await redis.command("PUBSUB", "NUMSUB", REDIS_CHANNEL)
                    assert isinstance(answer, list)
                    if int(answer[1]) >= n:
                        break
                    await asyncio.sleep(0.05)
        if redis is not None:
            tap = await BusTap.open(redis, Recorder())
        pub_client = await connect(servers[0].port, hub_token("bench-pub"))
        publisher = Publisher(pub_client, "x" * args.payload)
        split = ", ".join(f"{sum(1 for t in tracked if t.instance == k)} on instance {k + 1}"
                          for k in range(n))
        say(f"   {len(subs)} subscribers ({split}; {len(sampled)} sampled) + 1 publisher "
            f"(instance 1) connected in {time.monotonic() - t0:.1f}s")
        gc.collect()
        gc.freeze()  # the connections are long-lived: keep them out of GC passes
        setup = SetUp(args, name, servers, cores, pg, redis, tracked, stats, recs, publisher,
                      tap)
        results = []
        for phase in args.phases:
            r = await setup.phase(phase)
            say(f"   {phase}: {r.deliveries:,.0f} deliveries/s, {r.publishes:,.0f} pub/s, "
                f"{r.per_frame:.1f} msgs/frame, {r.bytes_per_msg:.0f} B/msg; "
                f"ack p50 {ms(r.ack_p50)} p99 {ms(r.ack_p99)}")
            for key in ("all", "local", "remote") if n == 1 else ("local", "remote", "all"):
                if key in r.paths:
                    say(f"     {describe_path(r.paths[key])}")
            if "tap" in r.paths:
                t = r.paths["tap"]
                say(f"     bus tap (a Redis subscriber in the generator): publish to Redis "
                    f"forwarding p50 {ms(t.p50)} p99 {ms(t.p99)} max {ms(t.max)} "
                    f"({t.samples:,} messages)")
            say(f"     {describe_cpu(r)}")
            say(f"     {describe_server(r)}")
            for problem in r.problems:
                say(f"   !! {problem}")
            results.append(r)
        end = await setup.scrape()
        say("   /metrics at the end:")
        for i, sample in enumerate(end):
            say(f"     instance {i + 1}: " + ", ".join(
                f"{label} {sample.get(metric, 0):,.0f}" for metric, label in END_COUNTERS.items()))
        for i, sample in enumerate(end):
            bad = [f"{END_COUNTERS[m]} {sample.get(m, 0):,.0f}" for m in (GAP_FILLS, BUS_DROPPED)
                   if sample.get(m, 0)]
            if bad and results:
                results[-1].problems.append(f"instance {i + 1}: " + ", ".join(bad)
                                            + " (0 expected in a healthy run)")
        return results
    finally:
        closers = [s.close() for s in subs]
        if tap is not None:
            tap.close()
        if pub_client is not None:
            closers.append(pub_client.close())
        await asyncio.gather(*closers, return_exceptions=True)
        gc.unfreeze()
        await asyncio.gather(*(s.stop() for s in servers), return_exceptions=True)


async def run_all(args: argparse.Namespace, layout: Layout, workdir: Path) -> list[ClusterResult]:
    results: list[ClusterResult] = []
    pg = PgDatabase(args.pg_dsn)
    redis = None
    try:
        await pg.create()
        await migrate(hub_env(pg.url))
        say(f"PostgreSQL database {pg.name} (migrated), shared by every instance")
        for name in args.setups:
            if name == "cluster":
                redis = RedisProcess(workdir, core=layout.redis)
                await redis.ready()
                info = await redis.command("INFO", "server")
                version = info.get("redis_version", "?") if isinstance(info, dict) else "?"
                say(f"redis-server {version} on {redis.url} (private, no persistence)")
            try:
                results += await run_setup(args, name, layout, pg,
                                           redis if name == "cluster" else None, workdir)
            except (RuntimeError, OSError, TimeoutError) as exc:
                say(f"!! {name} failed: {exc!r}")
                failed = ClusterResult(name, "set-up", 1)
                failed.problems.append(f"failed: {exc!r}")
                results.append(failed)
    finally:
        if redis is not None:
            await redis.stop()
        await pg.drop()
    return results


# ---------------------------------------------------------------------------
# The final table


def final_table(results: list[ClusterResult]) -> str:
    single = {r.phase: r for r in results if r.setup == "single" and r.paths}
    rows = [["set-up", "phase", "path", "subs", "deliveries/s", "pub/s", "p50", "p99",
             "p99.9", "max", "+p50 vs single", "hub cpu", "redis", "pg", "gen", "other",
             "ok"]]
    for r in results:
        if not r.paths:
            rows.append([r.setup, r.phase, "-", *["-"] * 13, verdict(r)])
            continue
        base = single.get(r.phase)
        keys = ["all"] if r.setup == "single" else ["local", "remote", "all", "tap"]
        hub_cpu = "+".join(f"{v:.0f}" for k, v in r.cpu.items() if k.startswith("hub")) + "%"
        for key in keys:
            p = r.paths[key]
            added = "-"
            if base is not None and r is not base and key != "tap" and p.p50 is not None \
                    and base.paths["all"].p50 is not None:
                added = f"{p.p50 - base.paths['all'].p50:+.2f}ms"
            if key not in r.paths:
                continue
            label = ("single instance" if r.setup == "single" else "all" if key == "all"
                     else "bus (Redis tap)" if key == "tap"
                     else f"{key} ({p.label.partition(', ')[2]})")
            tap = key == "tap"
            rows.append([r.setup, r.phase, label, "-" if tap else str(p.subscribers),
                         "-" if tap else f"{p.deliveries:,.0f}",
                         f"{r.publishes:,.0f}", ms(p.p50), ms(p.p99), ms(p.p999), ms(p.max),
                         added, hub_cpu, f"{r.cpu.get('redis', 0):.0f}%" if "redis" in r.cpu
                         else "-", f"{r.cpu.get('postgres', 0):.0f}%",
                         f"{r.cpu.get('generator', 0):.0f}%", f"{r.other:.0f}%",
                         verdict(r)])
    return render_table(rows, left=3)


def target_lines(args: argparse.Namespace, results: list[ClusterResult]) -> list[str]:
    def pick(setup: str) -> ClusterResult | None:
        return next((r for r in results if (r.setup, r.phase) == (setup, "latency")
                     and r.paths), None)

    single, cluster = pick("single"), pick("cluster")
    if single is None or cluster is None:
        return []
    base = single.paths["all"].p50
    remote, local = cluster.paths["remote"].p50, cluster.paths["local"].p50
    if base is None or remote is None or local is None:
        return []
    rate = args.rate * args.subscribers
    added = remote - base
    ok = added <= TARGET_ADDED_P50_MS and not cluster.problems and not single.problems
    lines = [f"cross-instance path: remote p50 {ms(remote)} vs single instance {ms(base)}: "
             f"{added:+.2f} ms (local path {local - base:+.2f} ms; remote minus local "
             f"{remote - local:+.2f} ms) at {rate:,} deliveries/s"]
    noisy = [f"{r.setup}/{r.phase}" for r in (single, cluster) if r.other > OTHER_LOAD]
    if noisy:
        lines.append(f"!! other work on the machine took over {OTHER_LOAD:g}% of a core during "
                     f"{', '.join(noisy)} (column 'other'): the comparison is unreliable; "
                     "run again on a quiet machine")
    if rate == TARGET_DELIVERIES:
        lines.append(f"target: the cross-instance path adds at most {TARGET_ADDED_P50_MS:g} ms "
                     f"to p50 at {TARGET_DELIVERIES:,} deliveries/s: "
                     f"{'MET' if ok else 'NOT MET'} ({added:+.2f} ms)")
    else:
        lines.append(f"(the issue's target is judged at {TARGET_DELIVERIES:,} deliveries/s; "
                     f"this run offered {rate:,}/s)")
    return lines


# ---------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=2,
                        help="hub instances in the cluster set-up (default 2)")
    parser.add_argument("--subscribers", type=int, default=1000,
                        help="subscriber connections, split evenly over the instances "
                             "(default 1000)")
    parser.add_argument("--rate", type=int, default=20,
                        help="publishes/s in the latency phase (default 20: 20,000 "
                             "deliveries/s at 1000 subscribers)")
    parser.add_argument("--duration", type=float, default=15.0,
                        help="measured seconds per phase (default 15)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="unmeasured seconds before each phase's measurement (default 3)")
    parser.add_argument("--phases", default="latency,saturated",
                        help="comma-separated phases of each set-up: latency and/or saturated "
                             "(default both)")
    parser.add_argument("--setups", default="single,cluster",
                        help="comma-separated set-ups: single and/or cluster (default both)")
    parser.add_argument("--window", type=int, default=200,
                        help="unacknowledged publishes in the saturated phase (default 200; "
                             "the hub pauses reading at max_inflight 256)")
    parser.add_argument("--payload", type=int, default=64,
                        help="padding characters in each message's data (default 64)")
    parser.add_argument("--sample", type=int, default=100,
                        help="subscribers (in all, split over the instances) that parse every "
                             "frame for latency (default 100); every subscriber checks seqs")
    parser.add_argument("--cores", default="auto",
                        help="'auto' (default; see above) or instances+2 comma-separated "
                             "cores: instance 1..N, the generator, Redis; it sets "
                             "--server-core and --gen-core")
    add_loop_option(parser, "event loop of the generator (default uvloop)")
    add_machine_options(
        parser, connections="subscriber", each="set-up", per="run",
        drain="seconds to wait for outstanding deliveries after a phase",
        profile="collapsed stacks, one file per instance, set-up and phase")
    args = parser.parse_args(argv)
    listed(parser, args, "phases", ("latency", "saturated"))
    listed(parser, args, "setups", ("single", "cluster"))
    if args.instances < 2:
        parser.error("--instances must be at least 2")
    for name in ("subscribers", "window", "rate"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be positive")
    if args.sample < 0:
        parser.error("--sample must not be negative")
    if args.subscribers < args.instances:
        parser.error("--subscribers must be at least --instances")
    check_timing(parser, args)
    layout = plan_cores(args)
    args.layout = layout
    args.server_core, args.gen_core = layout.hubs[0], layout.gen
    if args.max_time is None:
        args.max_time = 300.0
    return args


async def main(args: argparse.Namespace) -> int:
    layout: Layout = args.layout
    say(f"cluster: {args.instances} instances + Redis vs a single instance, "
        f"{args.subscribers} subscribers in {ROOM}, 1 publisher (on instance 1); latency phase "
        f"{args.rate}/s = {args.rate * args.subscribers:,} deliveries/s, saturated window "
        f"{args.window}; {args.warmup:g}s warm-up + {args.duration:g}s per phase; payload "
        f"{args.payload} chars; generator on {args.loop}")
    say(describe_layout(layout))
    results, failed = await run_steps(args, "rt-cluster-", [
        ("cluster", functools.partial(run_all, args, layout))])
    say("")
    say(final_table(results))
    for line in target_lines(args, results):
        say(line)
    write_json(args, "cluster", results, failed)
    return finish(results, failed, lambda r: f"{r.setup}/{r.phase}",
                  "ok: yes = every subscriber got every acknowledged message exactly once, in "
                  "order; NO = see !!; GEN = the generator's core was over "
                  f"{GEN_BOUND:g}% busy; +p50 vs single = p50 minus the single instance's p50 in "
                  "the same phase; other = % of a core that other programs took on the cores "
                  "used (noise)")


def run() -> None:
    run_tool(parse_args(), main, "interrupted; servers stopped")


if __name__ == "__main__":
    run()
