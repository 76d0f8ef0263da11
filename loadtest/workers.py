"""Every core: ``roomlog serve --workers N`` on PostgreSQL (the PostgreSQL bus between
the workers), with 1 and 2 workers in the same run.

For each worker count:

* **deliveries/s**: ``--subscribers`` clients (1,000) subscribe to one room (the
  kernel spreads them over the workers); ``--publishers`` clients publish in a
  closed loop, ``--inflight`` unacknowledged each, for ``--duration`` seconds;
  every subscriber counts the messages it receives. Figures: deliveries/s and
  messages/s committed, and the server's CPU (every process) in % of a core;
* **connections held**: ``--hold`` idle subscribers (10,000) opened
  ``--concurrency`` at a time: how many were held, how fast they were opened,
  the server's memory (every process) per connection.

The generator runs on ``--gen-core``; the hub is not pinned (its workers need
the cores), so on a small machine the generator competes with it: the figures
then understate what the workers serve.

Example: ``python loadtest/workers.py --json workers.json``.
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # loadtest/queue.py must not shadow the stdlib's queue

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from common import MESSAGE_MARK, Buffer, RawClient
from procs import tree_cpu, tree_pids, tree_rss_kib
from servers import hub_token
from targets import open_all, raise_fd_limit, start, subscriber

ROOM = "chat:workers"


async def deliveries(port: int, args: argparse.Namespace, pids: list[int]) -> dict[str, Any]:
    subs = await open_all(port, args.subscribers, 100,
                          lambda i: hub_token(f"s{i}", role="guest"), ROOM)
    count = 0

    def counter(buf: Buffer, start: int, end: int) -> None:
        nonlocal count
        count += buf.count(MESSAGE_MARK, start, end)

    for s in subs:
        s.on_payload = counter
    pubs = [await subscriber(port, hub_token(f"p{i}", role="admin"), ROOM + "-acks")
            for i in range(args.publishers)]
    acked = 0
    stop = asyncio.Event()

    async def pump(client: RawClient, index: int) -> None:
        nonlocal acked
        window = asyncio.Semaphore(args.inflight)
        n = 0

        def on_ack(buf: Buffer, start: int, end: int) -> None:
            nonlocal acked
            got = buf.count(b'"type":"ack"', start, end)
            acked += got
            for _ in range(got):
                window.release()

        client.on_payload = on_ack
        while not stop.is_set():
            await window.acquire()
            n += 1
            client.send_json({"type": "publish", "room": ROOM,
                              "data": {"text": "x" * 150, "n": n}, "id": f"{index}-{n}"})

    tasks = [asyncio.create_task(pump(p, i)) for i, p in enumerate(pubs)]
    await asyncio.sleep(args.warmup)
    count0, acked0, cpu0, t0 = count, acked, tree_cpu(pids), time.perf_counter()
    await asyncio.sleep(args.duration)
    elapsed = time.perf_counter() - t0
    result = {"deliveries_per_s": round((count - count0) / elapsed),
              "messages_per_s": round((acked - acked0) / elapsed),
              "server_cpu_pct": round(100 * (tree_cpu(pids) - cpu0) / elapsed)}
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(c.close() for c in subs + pubs), return_exceptions=True)
    return result


async def held(port: int, args: argparse.Namespace, pid: int) -> dict[str, Any]:
    rss0 = tree_rss_kib(pid)
    clients: list[RawClient] = []
    failures = 0
    gate = asyncio.Semaphore(args.concurrency)

    async def one(i: int) -> None:
        nonlocal failures
        async with gate:
            try:
                clients.append(await subscriber(port, hub_token(f"h{i}", role="guest"),
                                                ROOM + "-idle"))
            except (OSError, ConnectionError, TimeoutError, RuntimeError):
                failures += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(args.hold)))
    elapsed = time.perf_counter() - t0
    await asyncio.sleep(2)
    rss = tree_rss_kib(pid)
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return {"held": len(clients), "failed": failures,
            "opened_per_s": round(len(clients) / elapsed),
            "kib_per_conn": round((rss - rss0) / max(1, len(clients)), 1)}


async def measure(workers: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    pool = {"ROOMLOG_DB_POOL_SIZE": str(args.pool), "ROOMLOG_DB_POOL_OVERFLOW": str(args.pool)}
    target = await start("hub-postgres", workdir, pg_dsn=args.pg_dsn, core=None,
                         workers=workers, env=pool)
    try:
        await asyncio.sleep(1.0)
        pids = tree_pids(target.server.pid)
        flow = await deliveries(target.port, args, pids)
        hold = await held(target.port, args, target.server.pid)
    finally:
        await target.stop()
    return {"workers": workers, **flow, **hold, "load_average": round(os.getloadavg()[0], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=lambda t: [int(x) for x in t.split(",")],
                        default=[1, 2], help="worker counts to compare (1,2)")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--inflight", type=int, default=128,
                        help="unacknowledged publishes per publisher (128)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--hold", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--pool", type=int, default=5,
                        help="database pool size and overflow per worker (5: a shared "
                             "PostgreSQL with max_connections 100 holds 2 workers' pools)")
    parser.add_argument("--gen-core", type=int, default=1, help="core for this generator (1)")
    parser.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", metavar="PATH", help="write the options and figures as JSON")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.gen_core})
    raise_fd_limit(2 * args.hold + 2 * args.subscribers + 1000)
    results = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix="workers-") as tmp:
            r = asyncio.run(measure(workers, args, Path(tmp)))
        results.append(r)
        print(f"{workers} worker(s): {r['deliveries_per_s']:,} deliveries/s "
              f"({r['messages_per_s']:,} messages/s to {args.subscribers:,} subscribers, "
              f"server CPU {r['server_cpu_pct']}% of a core); held {r['held']:,} of "
              f"{args.hold:,} connections ({r['failed']} failed, {r['opened_per_s']:,}/s, "
              f"{r['kib_per_conn']} KiB each); load average {r['load_average']}", flush=True)
    if args.json:
        document = {"tool": "workers", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "options": {k: v for k, v in vars(args).items() if k != "json"},
                    "results": results}
        Path(args.json).write_text(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
