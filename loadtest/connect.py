"""Connect cost: connect + authenticate + subscribe per second, and the server's CPU
per connection, on the hub (SQLite, PostgreSQL) and the plain ``websockets``
baseline in the same run.

For each target: ``--warm`` connections opened and closed (caches, pools), then
``--connections`` (2,000) opened ``--concurrency`` at a time, each through the
WebSocket handshake, ``connect`` (a signed token, each for a user of its own)
and ``subscribe`` to one of ``--rooms`` rooms, up to its ``subscribed`` frame.
Figures: connections per second over the window, the server's CPU time per
connection (user + system, every process of the target), the per-connection time
p50 / p99, and handshakes refused with 503 by a saturated hub (each tried again
after 1 s, inside the figures). The connections stay open until the window ends (a reconnect
storm keeps them), then close.

Example: ``python loadtest/connect.py --json connect.json``; ``--ws-engine asgi``
measures the hub with ``/ws`` on the ASGI engine (as before issue #13).
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
from common import RawClient, percentile
from procs import tree_cpu, tree_pids
from servers import hub_token
from targets import Refusals, raise_fd_limit, start, subscriber

TARGETS = ("baseline", "hub-sqlite", "hub-postgres")


async def measure(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    target = await start(name, workdir, pg_dsn=args.pg_dsn, core=args.server_core,
                         env={"ROOMLOG_WS_ENGINE": args.ws_engine},
                         workers=args.workers)
    tokens = [hub_token(f"u{i}", role="guest") for i in range(args.connections + args.warm)]
    clients: list[RawClient] = []
    took: list[int] = []
    try:
        warm = [await subscriber(target.port, tokens[-1 - i], f"chat:c-{i % args.rooms}")
                for i in range(args.warm)]
        await asyncio.gather(*(c.close() for c in warm))
        await asyncio.sleep(0.5)
        pids = tree_pids(target.server.pid)
        gate = asyncio.Semaphore(args.concurrency)

        async def one(i: int) -> None:
            async with gate:
                t0 = time.perf_counter_ns()
                clients.append(await subscriber(target.port, tokens[i],
                                                f"chat:c-{i % args.rooms}"))
                took.append(time.perf_counter_ns() - t0)

        refused0 = Refusals.count
        cpu0, wall0 = tree_cpu(pids), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(args.connections)))
        wall = time.perf_counter() - wall0
        cpu = tree_cpu(pids) - cpu0
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        await target.stop()
    took.sort()
    return {"target": name, "workers": args.workers if name != "baseline" else 1,
            "connections": args.connections, "concurrency": args.concurrency,
            "per_s": round(args.connections / wall), "cpu_ms_per_connect":
            round(cpu * 1000 / args.connections, 3),
            "server_cpu_pct": round(100 * cpu / wall),
            "refused_503": Refusals.count - refused0,
            "p50_ms": percentile(took, 0.5) / 1e6, "p99_ms": percentile(took, 0.99) / 1e6,
            "load_average": round(os.getloadavg()[0], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma-separated, of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50,
                        help="connections being opened at once (default 50)")
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--warm", type=int, default=100,
                        help="connections opened and closed before the window (100)")
    parser.add_argument("--workers", type=int, default=1, help="hub processes (default 1)")
    parser.add_argument("--server-core", default="0", help="core(s) for the server (0)")
    parser.add_argument("--gen-core", type=int, default=1, help="core for this generator (1)")
    parser.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--ws-engine", choices=("native", "asgi"), default="native",
                        help="who serves the hub's /ws (ROOMLOG_WS_ENGINE): its own protocol "
                             "class (native, the default) or the ASGI endpoint on uvicorn's "
                             "WebSocket protocol (asgi, the engine before issue #13)")
    parser.add_argument("--json", metavar="PATH", help="write the options and figures as JSON")
    args = parser.parse_args()
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    if not names or set(names) - set(TARGETS):
        parser.error(f"--targets takes {', '.join(TARGETS)}")
    os.sched_setaffinity(0, {args.gen_core})
    raise_fd_limit(args.connections * 2 + 1000)
    results = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="connect-") as tmp:
            r = asyncio.run(measure(name, args, Path(tmp)))
        results.append(r)
        print(f"{name:<13} {r['per_s']:>6,} connect+auth+subscribe/s, server CPU "
              f"{r['cpu_ms_per_connect']:.2f} ms each ({r['server_cpu_pct']}% of a core), "
              f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {r['refused_503']} refused "
              f"(503, retried after 1 s) (load average "
              f"{r['load_average']})", flush=True)
    if args.json:
        document = {"tool": "connect", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "options": {k: v for k, v in vars(args).items() if k != "json"},
                    "results": results}
        Path(args.json).write_text(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
