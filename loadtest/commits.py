"""The write path alone: publishes through the publisher's group commit into the log.

In one process, without sockets: ``--publishes`` publishes to one room through
``Publisher`` and ``SqlLog`` (the hub's own classes, wired as ``build_services``
does with the in-process bus and no subscribers), ``--inflight`` of them at a
time. For each database and each in-flight count it prints:

* CPU per publish: this process's CPU time (every thread: aiosqlite runs SQLite
  in one) over the measured publishes. Other work on the machine barely moves
  it, unlike the rates, so it is the figure to compare two versions with on a
  shared machine;
* publishes/s and commits/s (a commit is one transaction: one group-committed
  batch), and publish latency p50/p99 (submit to acknowledgement).

Run it from the tree whose code you measure (``PYTHONPATH`` picks another one).
``--rooms N`` spreads the plain publishes over N rooms, committed in ``--lanes``
lanes (``commit_lanes``; 0: each room on its own, as before lanes).
``--kind new-rooms``: each publish is the first write of a room never written (what a
burst of new rooms costs). ``--kind repair``: ``note.add`` commands spread over
``--tickets`` repair tickets
instead, each of which also writes the admins' feed ``repairs:all`` and its
technician's feed (issue 13: tickets no longer queue one by one on the feed's lock).

Example: ``python loadtest/commits.py --db both --json``.
"""

from __future__ import annotations

import sys

# loadtest/queue.py shares its name with the standard library's ``queue``, which
# asyncio's thread pool imports: put this folder after the standard library.
sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import inspect
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from common import percentile
from servers import PgDatabase

from roomlog.bus.memory import MemoryBus
from roomlog.cluster import Cluster
from roomlog.hub import Hub
from roomlog.log import Append
from roomlog.log.sql import SqlLog
from roomlog.publisher import Publisher
from roomlog.stats import Stats

WARMUP = 200  # publishes before the measurement: connections made, caches warm


async def measure(url: str, publishes: int, inflight: int, rooms: int = 1,
                  lanes: int = 1, fresh: bool = False) -> dict[str, Any]:
    log = SqlLog(url, migrate=True)
    await log.open()
    stats = Stats()
    cluster = Cluster(log, Hub(log), MemoryBus(), stats)
    await cluster.start()
    options = ({"lanes": lanes}  # a tree before has no such option
               if "lanes" in inspect.signature(Publisher).parameters else {})
    publisher = Publisher(log, cluster, stats, clock_ms=lambda: int(time.time() * 1000),
                          **options)  # type: ignore[arg-type]
    names = [f"chat:commits-{secrets.token_hex(4)}" for _ in range(rooms)]
    run_id = secrets.token_hex(4)
    gate = asyncio.Semaphore(inflight)
    latencies: list[int] = []

    async def publish(n: int) -> None:
        # --kind new-rooms: every publish is the first write of a room of its own
        room = f"chat:new-{run_id}-{n}" if fresh else names[n % rooms]
        async with gate:
            started = time.perf_counter_ns()
            await publisher.publish(room, Append("bench", b'{"n":1}', f"p{n}"))
            latencies.append(time.perf_counter_ns() - started)

    try:
        await asyncio.gather(*(publish(-n) for n in range(1, WARMUP + 1)))
        latencies.clear()
        commits = publisher.commits
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(publish(n) for n in range(publishes)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        commits = publisher.commits - commits
    finally:
        await publisher.close()
        await cluster.close()
        await log.close()
    latencies.sort()
    return {"db": url.split("+")[0], "inflight": inflight, "publishes": publishes,
            "rooms": publishes if fresh else rooms, "lanes": lanes,
            "kind": "new-rooms" if fresh else "plain",
            "cpu_us_per_publish": round(cpu / publishes * 1e6, 1),
            "publishes_per_s": round(publishes / wall), "commits_per_s": round(commits / wall),
            "p50_ms": round(percentile(latencies, 0.50) / 1e6, 2),
            "p99_ms": round(percentile(latencies, 0.99) / 1e6, 2)}


async def measure_repairs(url: str, commands: int, inflight: int, tickets: int
                          ) -> dict[str, Any]:
    """``commands`` ``note.add`` commands spread over ``tickets`` repair tickets (each
    writes the ticket, repairs:all and its technician's feed), ``inflight`` at a time."""
    from roomlog.commands import Call, CommandRunner
    from roomlog.identity import Principal, Role
    from roomlog.rooms.domain import Command
    from roomlog.rooms.repair import RepairDomain

    log = SqlLog(url, migrate=True)
    await log.open()
    stats = Stats()
    cluster = Cluster(log, Hub(log), MemoryBus(), stats)
    await cluster.start()
    try:  # a tree from before issue 13 has no cross-room commits
        runner = CommandRunner(RepairDomain(), across_rooms=True)  # type: ignore[call-arg]
    except TypeError:
        runner = CommandRunner(RepairDomain())
    publisher = Publisher(log, cluster, stats, clock_ms=lambda: int(time.time() * 1000),
                          runners={"repair": runner})
    admin = Principal("admin-bench", Role.ADMIN)
    run_id = secrets.token_hex(3)
    rooms = [f"repair:commits-{run_id}-{i}" for i in range(tickets)]
    for i, room in enumerate(rooms):
        await publisher.command(room, Call(admin, Command("ticket.create", {
            "customer_id": f"c{i}", "device": "Phone", "problem": "Screen",
            "technicians": [f"tech-{i % 10}"]}), f"create-{i}"))
    gate = asyncio.Semaphore(inflight)
    latencies: list[int] = []

    async def command(n: int) -> None:
        async with gate:
            started = time.perf_counter_ns()
            await publisher.command(rooms[n % tickets], Call(admin, Command(
                "note.add", {"text": f"note {n}", "visibility": "internal"}), f"n{n}"))
            latencies.append(time.perf_counter_ns() - started)

    try:
        await asyncio.gather(*(command(-n) for n in range(1, WARMUP + 1)))
        latencies.clear()
        commits = publisher.commits
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(command(n) for n in range(commands)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        commits = publisher.commits - commits
    finally:
        await publisher.close()
        await cluster.close()
        await log.close()
    latencies.sort()
    return {"db": url.split("+")[0], "kind": "repair", "tickets": tickets,
            "inflight": inflight, "publishes": commands,
            "cpu_us_per_publish": round(cpu / commands * 1e6, 1),
            "publishes_per_s": round(commands / wall), "commits_per_s": round(commits / wall),
            "p50_ms": round(percentile(latencies, 0.50) / 1e6, 2),
            "p99_ms": round(percentile(latencies, 0.99) / 1e6, 2)}


async def run(db: str, args: argparse.Namespace, inflight: int) -> dict[str, Any]:
    """One measurement on a database of its own."""
    def one(url: str) -> Any:
        if args.kind == "repair":
            return measure_repairs(url, args.publishes, inflight, args.tickets)
        return measure(url, args.publishes, inflight, args.rooms, args.lanes,
                       fresh=args.kind == "new-rooms")

    if db == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            result: dict[str, Any] = await one(f"sqlite+aiosqlite:///{Path(tmp) / 'commits.db'}")
            return result
    database = PgDatabase(args.pg_dsn)
    await database.create()
    try:
        result = await one(database.url)
        return result
    finally:
        await database.drop()


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for db in (["sqlite", "postgres"] if args.db == "both" else [args.db]):
        for inflight in args.inflight:
            results.append(await run(db, args, inflight))
            if not args.json:
                print(_row(results[-1]), flush=True)
    return results


def _row(r: dict[str, Any]) -> str:
    what = "command" if r.get("kind") == "repair" else "publish"
    rooms = f" over {r['rooms']} rooms in {r['lanes']} lanes" if r.get("rooms", 1) > 1 else ""
    if r.get("kind") == "new-rooms":
        rooms = f", each to a new room, in {r['lanes']} lanes"
    return (f"{r['db']:<10} inflight {r['inflight']:>4}{rooms}: "
            f"{r['cpu_us_per_publish']:>7.1f} us CPU"
            f"/{what}, {r['publishes_per_s']:>7,} publishes/s, {r['commits_per_s']:>6,} "
            f"commits/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--publishes", type=int, default=10_000,
                        help="measured publishes per run (default 10000)")
    parser.add_argument("--inflight", type=int, nargs="+", default=[1, 50],
                        help="publishes in flight at a time; one run each (default 1 50)")
    parser.add_argument("--kind", choices=["plain", "repair", "new-rooms"], default="plain",
                        help="plain: publishes to one chat room (default); repair: note.add "
                             "commands spread over --tickets repair tickets (each also writes "
                             "repairs:all and a technician's feed); new-rooms: each publish "
                             "is the first write of a room of its own (rooms made in bursts)")
    parser.add_argument("--tickets", type=int, default=100,
                        help="repair tickets for --kind repair (default 100)")
    parser.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL admin DSN (loopback only); a fresh database is "
                             "created and dropped per run")
    parser.add_argument("--rooms", type=int, default=1,
                        help="plain publishes spread round-robin over this many rooms "
                             "(default 1)")
    parser.add_argument("--lanes", type=int, default=1,
                        help="commit lanes of plain rooms (default 1; 0: each room on its "
                             "own)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    options = parser.parse_args()
    rows = asyncio.run(main(options))
    if options.json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
