"""Command benchmark of repair rooms: technicians post to many tickets at once.

It starts the hub pinned to core 0 (``taskset -c 0``) on PostgreSQL (or SQLite,
or both: ``--db``), pins itself (the load generator) to core 1, and sets up
``--tickets`` tickets (``repair:bench-<n>``, created by an admin), each assigned
to one of ``--technicians`` technicians and owned by its own customer. Every
ticket gets one technician connection that sends its commands; an admin
connection is subscribed to the admins' feed ``repairs:all`` (every event of
every ticket is an entry there), and each ticket's customer to the ticket.

Each command is a ``note.add`` to a random ticket: internal, or (one in four)
for the customer, every tenth of those urgent (a notice to ``user:<customer>``
too). So every command stores an event in the ticket, an entry in
``repairs:all`` and one in its technician's feed ``repairs:<technician>``:
the three rooms commit in one transaction, and every ticket shares the feeds.

throughput
    Closed loop: ``--window`` commands are kept in flight (each answer sends
    the next) for ``--warmup`` + ``--duration`` seconds.
rate
    Open loop: ``--rate`` commands/s sent on a clock whatever the answers do.

Figures over each measured window: commands/s answered and how many were ok
or rejected; round trip (send to ack, of the commands sent in the window)
p50/p99/max; entries/s the feed subscriber received; CPU of the server, of
the generator and of the ``postgres`` processes, as in ``loadtest/queue.py``.
After each phase the generator waits for every answer and checks that the feed
subscriber has every entry, gaplessly, and each customer every event of its
ticket.

The target (issue 13): at least 1,000 commands/s across 100 tickets with a
round-trip p99 under 50 ms on PostgreSQL, judged on the ``rate`` phase.

Example: ``python loadtest/repairs.py --db both --json out.json`` (about a minute).
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
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from common import RawClient
from harness import (
    Window,
    add_db_option,
    add_loop_option,
    add_machine_options,
    add_timing_options,
    check_timing,
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
    start_meters,
    start_profiler,
    stop_profiler,
    write_json,
)
from report import GEN_BOUND, fmt_ms, render_table
from servers import free_port, hub_argv, hub_token

TARGET_RATE = 1000.0
TARGET_P99_MS = 50.0
ANSWER_TIMEOUT = 30.0
FEED = "repairs:all"


@dataclass
class RepairResult:
    db: str
    phase: str
    tickets: int = 0
    elapsed: float = 0.0
    sent: float = 0.0  # commands/s sent
    answered: float = 0.0  # commands/s answered
    ok: int = 0
    rejected: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    p50: float | None = None  # ms
    p99: float | None = None
    max: float | None = None
    feed: float = 0.0  # feed entries/s received by the admin
    cpu_per_command: float = 0.0  # server CPU ms per answered command (what a busy
    # machine moves least)
    server_cpu: float = 0.0
    server_sys: float = 0.0
    gen_cpu: float = 0.0
    db_cpu: float | None = None
    server_core: float = 0.0
    gen_core: float = 0.0
    softirq: float = 0.0
    steal: float = 0.0
    offered: float | None = None
    window: int = 0
    problems: list[str] = field(default_factory=list)


class Reader:
    """A subscriber: counts the messages of one room, checks their seqs are gapless."""

    def __init__(self, client: RawClient, room: str) -> None:
        self.client = client
        self.room = room
        self.prefix = b'"room":"' + room.encode() + b'","seq":'
        self.last = -1
        self.messages = 0
        self.positions = 0  # seqs received, as messages or skipped
        self.gaps = 0
        self.subscribed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        client.on_payload = self.on_payload

    def on_payload(self, buf: Any, start: int, end: int) -> None:
        obj = orjson.loads(memoryview(buf)[start:end])
        for item in obj if isinstance(obj, list) else (obj,):
            kind = item.get("type")
            if kind in ("message", "skip") and item.get("room") == self.room:
                # a skip: an event this reader may not see (a customer, an internal note)
                first = item.get("from", item["seq"])
                if first != self.last + 1:
                    self.gaps += 1
                self.last = item["seq"]
                self.messages += kind == "message"
                self.positions += item["seq"] - first + 1
            elif kind == "subscribed" and not self.subscribed.done():
                self.last = int(item.get("seq", item["head"]))
                self.subscribed.set_result(self.last)
            elif kind == "error" and not self.subscribed.done():
                self.subscribed.set_exception(RuntimeError(f"subscribe failed: {item}"))

    async def subscribe(self) -> None:
        self.client.send_json({"type": "subscribe", "room": self.room, "id": "s"})
        async with asyncio.timeout(ANSWER_TIMEOUT):
            await self.subscribed


class Worker:
    """One connection that sends commands (several in flight) and times their answers."""

    def __init__(self, client: RawClient, load: Load) -> None:
        self.client = client
        self.load = load
        self.waiting: dict[str, tuple[int, asyncio.Future[dict[str, Any]] | None]] = {}
        client.on_payload = self.on_payload

    def on_payload(self, buf: Any, start: int, end: int) -> None:
        now = time.perf_counter_ns()
        obj = orjson.loads(memoryview(buf)[start:end])
        for item in obj if isinstance(obj, list) else (obj,):
            if item.get("type") not in ("ack", "error"):
                continue
            sent, waiter = self.waiting.pop(item.get("id", ""), (0, None))
            if waiter is not None:
                if not waiter.done():
                    waiter.set_result(item)
            elif sent:
                self.load.answered_one(item, sent, now)

    async def ask(self, room: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """A set-up command: its answer."""
        ident = secrets.token_hex(6)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[ident] = (time.perf_counter_ns(), waiter)
        self.client.send_json({"type": "command", "room": room, "name": name, "args": args,
                               "id": ident})
        async with asyncio.timeout(ANSWER_TIMEOUT):
            return await waiter


class Load:
    def __init__(self, args: argparse.Namespace, tickets: list[str]) -> None:
        self.args = args
        self.tickets = tickets
        self.workers: list[Worker] = []
        self.prefix = secrets.token_hex(4)
        self.count = 0
        self.sent = 0
        self.answered = 0
        self.ok = 0
        self.rejected: Counter[str] = Counter()
        self.rtt = Window()
        self.refill = False

    def fire(self) -> None:
        i = random.randrange(len(self.tickets))
        self.count += 1
        ident = f"{self.prefix}-{self.count}"
        k = self.count % 40
        args: dict[str, Any] = {"text": f"note {self.count}",
                                "visibility": "customer" if k % 4 == 0 else "internal"}
        if k == 0:
            args["priority"] = "urgent"
        worker = self.workers[i]
        worker.waiting[ident] = (time.perf_counter_ns(), None)
        worker.client.send_json({"type": "command", "room": self.tickets[i], "name": "note.add",
                                 "args": args, "id": ident})
        self.sent += 1

    def answered_one(self, item: dict[str, Any], sent: int, now: int) -> None:
        self.answered += 1
        self.rtt.add(sent, now)
        if item.get("type") == "ack":
            self.ok += 1
        else:
            self.rejected[str(item.get("code"))] += 1
        if self.refill:
            self.fire()


async def run_db(args: argparse.Namespace, db: str, workdir: Path) -> list[RepairResult]:
    port = free_port()
    say(f"== hub / {db}: starting on 127.0.0.1:{port} (core {args.server_core})")
    async with session(args, workdir) as s:
        await quiet(args)
        env = await s.hub_env(db, f"repairs-{db}")
        server = await s.start(f"repairs-{db}", hub_argv(port), port, env)
        run = secrets.token_hex(3)
        tickets = [f"repair:bench-{run}-{i}" for i in range(args.tickets)]
        techs = [f"tech-{i % args.technicians}" for i in range(args.tickets)]
        load = Load(args, tickets)
        admin = Worker(await s.connect(port, hub_token("admin-bench")), load)
        for i, room in enumerate(tickets):
            answer = await admin.ask(room, "ticket.create", {
                "customer_id": f"cust-{run}-{i}", "device": "Phone", "problem": "Cracked screen",
                "technicians": [techs[i]]})
            if answer.get("type") != "ack":
                raise RuntimeError(f"ticket.create failed: {answer}")
        clients = await open_many(
            args.tickets, args.connect_concurrency,
            lambda i: s.connect(port, hub_token(techs[i], role="technician")),
            lambda c: c.close())
        s.closers += [c.close for c in clients]
        load.workers = [Worker(c, load) for c in clients]
        feed = Reader(await s.connect(port, hub_token("admin-feed")), FEED)
        await feed.subscribe()
        customers: list[Reader] = []
        if args.customers:
            cust = await open_many(
                args.tickets, args.connect_concurrency,
                lambda i: s.connect(port, hub_token(f"cust-{run}-{i}", role="customer")),
                lambda c: c.close())
            s.closers += [c.close for c in cust]
            customers = [Reader(c, room) for c, room in zip(cust, tickets, strict=True)]
            await asyncio.gather(*(r.subscribe() for r in customers))
        say(f"   {args.tickets} tickets created; {args.tickets} technician connections, "
            f"{len(customers)} customers and the {FEED} feed subscribed")
        s.settle()
        results = []
        pg_name = s.pg.name if s.pg is not None else None
        for phase in args.phases:
            result = await run_phase(args, phase, db, server.pid, pg_name, load, feed)
            await check(args, load, feed, customers, result)
            say_result(describe(result), result.problems)
            results.append(result)
        return results


async def run_phase(args: argparse.Namespace, phase: str, db: str, pid: int,
                    pg_name: str | None, load: Load, feed: Reader) -> RepairResult:
    r = RepairResult(db, phase, tickets=args.tickets)
    pacer: asyncio.Task[None] | None = None
    if phase == "throughput":
        load.refill = True
        for _ in range(args.window):
            load.fire()
        r.window = args.window
    else:
        pacer = asyncio.create_task(paced(args.rate, load.fire))
        r.offered = args.rate
    try:
        await asyncio.sleep(args.warmup)
        profiler = start_profiler(args, pid, f"repairs-{db}-{phase}")
        meters, cores = start_meters(pid, db, pg_name)
        t0 = time.perf_counter()
        sent0, answered0, ok0, rejected0 = load.sent, load.answered, load.ok, load.rejected.copy()
        feed0 = feed.messages
        load.rtt.arm()
        await measure(args, phase, lambda t: (
            f"{(load.answered - answered0) / t:,.0f} commands/s answered"))
        load.rtt.disarm()
        elapsed = r.elapsed = time.perf_counter() - t0
        cpu = {key: meter.stop() for key, meter in meters.items()}
        cores.stop()
        r.sent = (load.sent - sent0) / elapsed
        r.answered = (load.answered - answered0) / elapsed
        r.ok = load.ok - ok0
        rejected = load.rejected - rejected0
        r.rejected, r.rejections = sum(rejected.values()), dict(rejected)
        r.feed = (feed.messages - feed0) / elapsed
        r.server_cpu, r.gen_cpu = cpu["server"], cpu["gen"]
        r.server_sys = meters["server"].system
        r.db_cpu = cpu.get("db")
        r.cpu_per_command = r.server_cpu * 10 / r.answered if r.answered else 0.0
        r.server_core, r.gen_core, r.softirq, r.steal = core_figures(args, cores)
        r.samples, r.p50, r.p99, r.max = latency_ms(load.rtt.values)
        await stop_profiler(profiler)
    finally:
        load.refill = False
        if pacer is not None:
            pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pacer
    return r


async def check(args: argparse.Namespace, load: Load, feed: Reader, customers: list[Reader],
                r: RepairResult) -> None:
    """Every answer came; the feed and every customer have every message, gaplessly."""
    deadline = time.monotonic() + args.drain_timeout
    while load.answered < load.sent and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if load.answered < load.sent:
        r.problems.append(f"{load.sent - load.answered} commands never answered")
    if load.rejected:
        r.problems.append(f"rejected: {dict(load.rejected)}")
    # every ok note is one entry of the feed, after the tickets' creation
    while feed.messages < load.ok and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    if feed.messages != load.ok:
        r.problems.append(f"the feed got {feed.messages} entries for {load.ok} notes")
    gaps = feed.gaps + sum(c.gaps for c in customers)
    if gaps:
        r.problems.append(f"{gaps} messages did not follow their room's last seq")
    if customers and sum(c.positions for c in customers) != load.ok:
        r.problems.append(f"customers got {sum(c.positions for c in customers)} events "
                          f"or skips for {load.ok} notes")
    lost = [w for w in load.workers if w.client.closed.done()]
    if lost or feed.client.closed.done():
        r.problems.append(f"{len(lost)} technician connections (and the feed: "
                          f"{feed.client.closed.done()}) closed")


def describe(r: RepairResult) -> str:
    return (f"{r.phase}: {r.answered:,.0f} commands/s answered ({r.sent:,.0f}/s sent; "
            f"{r.ok:,} ok, {r.rejected} rejected) across {r.tickets} tickets; round trip "
            f"p50 {fmt_ms(r.p50)} p99 {fmt_ms(r.p99)} max {fmt_ms(r.max)}; feed "
            f"{r.feed:,.0f} entries/s; cpu server {r.server_cpu:.0f}% gen {r.gen_cpu:.0f}%"
            + (f" postgres {r.db_cpu:.0f}%" if r.db_cpu is not None else ""))


def table(results: list[RepairResult]) -> str:
    rows = [["db", "phase", "cmds/s", "ok", "rejected", "rtt-p50", "rtt-p99", "rtt-max",
             "feed/s", "server-cpu", "cpu/cmd", "gen-cpu", "pg-cpu", "core0", "core1", "ok?"]]
    for r in results:
        verdict = "NO" if r.problems else "GEN" if r.gen_core > GEN_BOUND else "yes"
        rows.append([r.db, r.phase, f"{r.answered:,.0f}", f"{r.ok:,}", str(r.rejected),
                     fmt_ms(r.p50), fmt_ms(r.p99), fmt_ms(r.max), f"{r.feed:,.0f}",
                     f"{r.server_cpu:.0f}%", f"{r.cpu_per_command:.2f}ms", f"{r.gen_cpu:.0f}%",
                     "-" if r.db_cpu is None else f"{r.db_cpu:.0f}%",
                     f"{r.server_core:.0f}%", f"{r.gen_core:.0f}%", verdict])
    return render_table(rows, 2)


def targets(results: list[RepairResult]) -> list[str]:
    lines = []
    for r in results:
        if r.phase != "rate" or r.db != "postgres":
            continue
        met = (r.answered >= 0.98 * TARGET_RATE and r.p99 is not None
               and r.p99 < TARGET_P99_MS and not r.problems)
        lines.append(f"target >= {TARGET_RATE:,.0f} commands/s across {r.tickets} tickets with "
                     f"p99 < {TARGET_P99_MS:g} ms on PostgreSQL: {'MET' if met else 'NOT MET'} "
                     f"({r.answered:,.0f}/s answered of {r.offered or 0:,.0f}/s offered, "
                     f"p99 {fmt_ms(r.p99)})")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_db_option(parser, "postgres")
    parser.add_argument("--tickets", type=int, default=100, help="tickets (default 100)")
    parser.add_argument("--technicians", type=int, default=10,
                        help="technicians the tickets are spread over (default 10)")
    parser.add_argument("--window", type=int, default=100,
                        help="commands in flight in the throughput phase (default 100)")
    parser.add_argument("--rate", type=float, default=TARGET_RATE,
                        help=f"commands/s in the rate phase (default {TARGET_RATE:,.0f})")
    parser.add_argument("--no-customers", dest="customers", action="store_false",
                        help="no customer subscribed to each ticket")
    add_timing_options(parser)
    parser.add_argument("--phases", default="throughput,rate",
                        help="comma-separated phases (default throughput,rate)")
    add_loop_option(parser, "event loop of the generator (default uvloop)")
    add_machine_options(
        parser, connections="technician", each="database", per="database",
        drain="seconds to wait for answers and deliveries after a phase (default 30)",
        profile="raw collapsed stacks, one file per database and phase")
    args = parser.parse_args(argv)
    listed(parser, args, "phases", ("throughput", "rate"))
    if not 1 <= args.tickets <= 10_000 or not 1 <= args.technicians <= args.tickets:
        parser.error("--tickets must be 1..10000 and --technicians 1..--tickets")
    if args.window < 1 or args.rate <= 0:
        parser.error("--window and --rate must be positive")
    check_timing(parser, args)
    return args


async def main(args: argparse.Namespace) -> int:
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    say(f"repairs: {args.tickets} tickets, {args.technicians} technicians; window "
        f"{args.window}, rate {args.rate:,.0f}/s; {args.warmup:g}s warm-up + "
        f"{args.duration:g}s per phase; server on core {args.server_core}, generator on "
        f"core {args.gen_core} ({args.loop})")
    results, failed = await run_steps(args, "rt-repairs-", [
        (f"hub/{db}", functools.partial(run_db, args, db)) for db in dbs])
    say("")
    say(table(results))
    for line in targets(results):
        say(line)
    write_json(args, "repairs", results, failed)
    return finish(results, failed, lambda r: f"{r.db}/{r.phase}",
                  "ok?: yes = every answer came, the feed and every customer got every "
                  "message, gaplessly; NO = see !!; GEN = the generator's core was over "
                  f"{GEN_BOUND:g}% busy")


def run() -> None:
    run_tool(parse_args(), main, "interrupted; server stopped")


if __name__ == "__main__":
    run()
