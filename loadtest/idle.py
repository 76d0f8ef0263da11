"""Idle connections: what one costs the server in memory, on the hub and on the plain
``websockets`` baseline in the same run.

For each target: ``--warm`` subscribers opened (the start-up's one-off costs),
then connections are opened in steps up to each of ``--steps`` (10,000 and
19,500: a process may hold 20,000 files on the development machine), every one
subscribed to one room. At each step, after ``--settle``
seconds (so the heartbeats run: the hub pings every ``ping_interval``), it
records the server's resident memory (every process of it), and the kernel's
TCP socket count and buffer memory (/proc/net/sockstat, the whole machine:
client and server ends). Figures: RSS growth per connection from the warm
state to each step, and between steps; kernel socket memory per connection.

At the largest step one message is published to the room and every connection
must receive it (fan-out still exact with all of them held).

Example: ``python loadtest/idle.py --json idle.json`` (the generator raises its
file-descriptor limit; the hub inherits it). ``--plot PNG`` draws memory per
connection against connections, one line per target, from more steps:
``python loadtest/idle.py --steps 1000,2500,5000,10000,19500 --plot idle.png``.
``--ws-engine asgi`` measures the hub with ``/ws`` on the ASGI engine (uvicorn's
WebSocket protocol, as before issue #13) instead of its own protocol class.
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # loadtest/queue.py must not shadow the stdlib's queue

import argparse
import asyncio
import itertools
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from common import MESSAGE_MARK, Buffer, RawClient
from procs import socket_memory_kib, tree_rss_kib
from servers import hub_token
from targets import open_all, raise_fd_limit, start, subscriber

TARGETS = ("baseline", "hub-sqlite", "hub-postgres")
ROOM = "chat:idle"


async def fanout_exact(port: int, clients: list[RawClient]) -> int:
    """Publish one message; how many clients got it (within 60 s)."""
    got = 0
    done = asyncio.Event()

    def counter(buf: Buffer, start: int, end: int) -> None:
        nonlocal got
        if buf.count(MESSAGE_MARK, start, end):
            got += 1
            if got == len(clients):
                done.set()

    for c in clients:
        c.on_payload = counter
    publisher = await subscriber(port, hub_token("idle-publisher", role="admin"), ROOM)
    publisher.send_json({"type": "publish", "room": ROOM, "data": {"text": "hello"},
                         "id": "idle-1"})
    try:
        async with asyncio.timeout(60):
            await done.wait()
    except TimeoutError:
        pass
    await publisher.close()
    return got


async def measure(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    target = await start(name, workdir, pg_dsn=args.pg_dsn, core=args.server_core,
                         env={"ROOMLOG_WS_ENGINE": args.ws_engine})
    clients: list[RawClient] = []
    steps: list[dict[str, Any]] = []
    delivered = 0
    try:
        clients += await open_all(target.port, args.warm, args.concurrency,
                                  lambda i: hub_token(f"u{i}", role="guest"), ROOM)
        await asyncio.sleep(args.settle)
        rss0, sock0 = tree_rss_kib(target.server.pid), socket_memory_kib()
        for step in args.steps:
            more = step - (len(clients) - args.warm)
            clients += await open_all(target.port, more, args.concurrency,
                                      lambda i: hub_token(f"u{i}", role="guest"), ROOM,
                                      first=len(clients))
            await asyncio.sleep(args.settle)
            rss, sock = tree_rss_kib(target.server.pid), socket_memory_kib()
            steps.append({"connections": step, "rss_kib": rss,
                          "kib_per_conn": round((rss - rss0) / step, 2),
                          "socket_mem_kib": sock["mem_kib"] - sock0["mem_kib"],
                          "socket_kib_per_conn": round(
                              (sock["mem_kib"] - sock0["mem_kib"]) / step, 2)})
            print(f"   {name}: {step:,} idle connections, RSS +{(rss - rss0) / 1024:.0f} MiB "
                  f"= {steps[-1]['kib_per_conn']:.1f} KiB each; kernel socket buffers "
                  f"{steps[-1]['socket_kib_per_conn']:.2f} KiB each", flush=True)
        delivered = await fanout_exact(target.port, clients[:])
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        await target.stop()
    between = []
    for a, b in itertools.pairwise(steps):
        between.append({"from": a["connections"], "to": b["connections"],
                        "kib_per_conn": round((b["rss_kib"] - a["rss_kib"])
                                              / (b["connections"] - a["connections"]), 2)})
    return {"target": name, "rss_warm_kib": rss0, "steps": steps, "between": between,
            "fanout_delivered": delivered, "fanout_expected": len(clients),
            "load_average": round(os.getloadavg()[0], 1)}


def plot(path: str, results: list[dict[str, Any]]) -> None:
    """RSS growth per connection, and the kernel's socket memory per connection,
    against connections held: one line per target (matplotlib: the loadtest extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rss, kernel) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for r in results:
        xs = [s["connections"] for s in r["steps"]]
        rss.plot(xs, [s["kib_per_conn"] for s in r["steps"]], marker="o", label=r["target"])
        kernel.plot(xs, [s["socket_kib_per_conn"] for s in r["steps"]], marker="o",
                    label=r["target"])
    rss.set_ylabel("server RSS growth per connection (KiB)")
    rss.set_ylim(bottom=0)
    rss.grid(True, alpha=0.3)
    rss.legend(fontsize="small")
    rss.set_title("idle WebSocket connections, each subscribed to one room")
    kernel.set_ylabel("kernel socket memory per connection (KiB)")
    kernel.set_xlabel("idle connections held")
    kernel.grid(True, alpha=0.3)
    kernel.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot written to {path}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="baseline,hub-sqlite",
                        help=f"comma-separated, of {', '.join(TARGETS)} (default: "
                             "baseline,hub-sqlite)")
    parser.add_argument("--steps", type=lambda t: [int(x) for x in t.split(",")],
                        default=[10_000, 19_500],
                        help="connection counts (10000,19500: 20,000 is the file-descriptor "
                             "limit of a process on the development machine, and each side "
                             "needs a few more than its connections)")
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds held at each step before measuring (20: heartbeats run)")
    parser.add_argument("--server-core", default="0", help="core(s) for the server (0)")
    parser.add_argument("--gen-core", type=int, default=1, help="core for this generator (1)")
    parser.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--ws-engine", choices=("native", "asgi"), default="native",
                        help="who serves the hub's /ws (ROOMLOG_WS_ENGINE): its own protocol "
                             "class (native, the default) or the ASGI endpoint on uvicorn's "
                             "WebSocket protocol (asgi, the engine before issue #13)")
    parser.add_argument("--json", metavar="PATH", help="write the options and figures as JSON")
    parser.add_argument("--plot", metavar="PNG",
                        help="draw memory per connection against connections into this PNG "
                             "(needs matplotlib: the loadtest extra)")
    args = parser.parse_args()
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    if not names or set(names) - set(TARGETS):
        parser.error(f"--targets takes {', '.join(TARGETS)}")
    os.sched_setaffinity(0, {args.gen_core})
    limit = raise_fd_limit(max(args.steps) + args.warm + 300)
    if limit < max(args.steps) + args.warm + 100:
        parser.error(f"the file-descriptor limit ({limit}) is too low for {max(args.steps)} "
                     "connections")
    results = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="idle-") as tmp:
            r = asyncio.run(measure(name, args, Path(tmp)))
        results.append(r)
        last = r["steps"][-1]
        each = ", ".join(f"{s['kib_per_conn']:.1f} at {s['connections']:,}" for s in r["steps"])
        print(f"{name:<13} {last['connections']:,} idle: {last['kib_per_conn']:.1f} KiB RSS per "
              f"connection ({each}), kernel {last['socket_kib_per_conn']:.2f} KiB; fan-out "
              f"{r['fanout_delivered']:,}/{r['fanout_expected']:,}", flush=True)
    if args.json:
        document = {"tool": "idle", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "options": {k: v for k, v in vars(args).items() if k != "json"},
                    "results": results}
        Path(args.json).write_text(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    if args.plot:
        plot(args.plot, results)
    return 0 if all(r["fanout_delivered"] == r["fanout_expected"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
