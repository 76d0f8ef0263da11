"""Connection churn: does the hub give back what closed connections held?

Starts one hub (SQLite in a temporary folder unless ``--database-url``), then runs
``--rounds`` rounds. Each round opens ``--connections`` WebSockets (``--concurrency``
at a time): most send ``connect`` and subscribe to one of ``--rooms`` rooms, every
``--bare``-th one sends nothing at all; then closes them all (a normal close, or
every ``--abort``-th one drops its TCP connection), waits ``--settle`` seconds and
reads the hub's resident memory (VmRSS) and open file descriptors. A hub that leaks
grows each round; a healthy one plateaus after the first round or two.

Prints one line per round and a verdict (growth from round 2 to the last, per
connection); ``--json FILE`` (or ``-``) writes every figure. Settings go to the hub
with ``--set name=value`` (e.g. ``--set gc_tuning=true`` to compare).

Example: ``python loadtest/churn.py --rounds 5 --connections 3000 --json churn.json``.
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # loadtest/queue.py must not shadow the stdlib's queue

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common import RawClient
from servers import HOST, Server, free_port, hub_argv, hub_env, hub_token, kill_children

SUBPROTOCOL = "roomlog.v1.json"


@dataclass
class Round:
    round: int
    opened: int
    rss_mib: float
    open_fds: int
    seconds: float


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


async def one_connection(port: int, i: int, args: argparse.Namespace, token: str) -> RawClient:
    client = await RawClient.open(HOST, port, subprotocol=SUBPROTOCOL)
    if args.bare and i % args.bare == 0:
        return client  # never sends connect
    client.send_json({"type": "connect", "token": token})
    await client.expect("connected")
    client.send_json({"type": "subscribe", "room": f"chat:churn-{i % args.rooms}"})
    await client.expect("subscribed")
    return client


async def close_one(client: RawClient, i: int, args: argparse.Namespace) -> None:
    if args.abort and i % args.abort == 0 and client.transport is not None:
        client.transport.abort()
        return
    try:
        await asyncio.wait_for(client.close(), 10)
    except (TimeoutError, ConnectionError):
        if client.transport is not None:
            client.transport.abort()


async def run_round(srv: Server, n: int, args: argparse.Namespace) -> Round:
    t0 = time.perf_counter()
    limit = asyncio.Semaphore(args.concurrency)
    # one user per connection: the per-user connection cap is not what is measured
    tokens = [hub_token(f"churn-{i}", role="guest") for i in range(args.connections)]

    async def opened(i: int) -> RawClient:
        async with limit:
            return await one_connection(srv.port, i, args, tokens[i])

    clients = await asyncio.gather(*(opened(i) for i in range(args.connections)))
    await asyncio.gather(*(close_one(c, i, args) for i, c in enumerate(clients)))
    del clients
    await asyncio.sleep(args.settle)
    return Round(n, args.connections, round(srv.rss_kib() / 1024, 1), open_fds(srv.pid),
                 round(time.perf_counter() - t0, 2))


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="churn-") as tmp:
        workdir = Path(tmp)
        url = args.database_url or f"sqlite+aiosqlite:///{workdir}/churn.db"
        extra = {"ROOMLOG_" + k.upper(): v for k, v in (s.split("=", 1) for s in args.set)}
        extra.setdefault("ROOMLOG_MAX_CONNECTIONS_PER_ADDRESS", "0")
        port = free_port()
        srv = Server("hub", hub_argv(port), port, workdir, env=hub_env(url, **extra))
        try:
            await srv.ready()
            base = Round(0, 0, round(srv.rss_kib() / 1024, 1), open_fds(srv.pid), 0.0)
            rounds = [base]
            print(f"start      RSS {base.rss_mib:7.1f} MiB  fds {base.open_fds:5d}",
                  file=sys.stderr if args.json == "-" else sys.stdout, flush=True)
            for n in range(1, args.rounds + 1):
                r = await run_round(srv, n, args)
                rounds.append(r)
                print(f"round {n:3d}  RSS {r.rss_mib:7.1f} MiB  fds {r.open_fds:5d}  "
                      f"({r.opened} opened and closed in {r.seconds:.1f} s)",
                      file=sys.stderr if args.json == "-" else sys.stdout, flush=True)
        finally:
            await srv.stop()
    later = rounds[2:] if len(rounds) > 3 else rounds[1:]
    per_conn_kib = ((later[-1].rss_mib - later[0].rss_mib) * 1024
                    / max(1, args.connections * (len(later) - 1)))
    fds_growth = later[-1].open_fds - later[0].open_fds
    verdict = {"rss_growth_per_connection_kib": round(per_conn_kib, 2),
               "fd_growth": fds_growth,
               "flat": per_conn_kib < args.flat_kib and fds_growth <= args.connections * 0.01}
    out = sys.stderr if args.json == "-" else sys.stdout
    print(f"growth after round {later[0].round}: {per_conn_kib:.2f} KiB per connection, "
          f"{fds_growth:+d} fds: {'flat' if verdict['flat'] else 'GROWING'}", file=out)
    if args.json:
        document = {"tool": "churn", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                    "options": {k: v for k, v in vars(args).items() if k != "json"},
                    "rounds": [asdict(r) for r in rounds], "verdict": verdict}
        text = json.dumps(document, indent=2)
        if args.json == "-":
            print(text)
        else:
            await asyncio.to_thread(Path(args.json).write_text, text + "\n")
    return 0 if verdict["flat"] else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--connections", type=int, default=3000, help="per round (default 3000)")
    p.add_argument("--concurrency", type=int, default=200, help="opened at once")
    p.add_argument("--rooms", type=int, default=50, help="rooms the connections subscribe to")
    p.add_argument("--bare", type=int, default=4,
                   help="every n-th connection never sends connect (0: none)")
    p.add_argument("--abort", type=int, default=5,
                   help="every n-th connection drops its TCP connection (0: none)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds before RSS is read")
    p.add_argument("--flat-kib", type=float, default=1.0,
                   help="growth per connection below which the curve counts as flat")
    p.add_argument("--database-url", default="", help="default: SQLite in a temp folder")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a hub setting (ROOMLOG_NAME), repeatable")
    p.add_argument("--json", default="", help="write the figures to FILE ('-': stdout)")
    return p.parse_args(argv)


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(parse_args())))
    finally:
        kill_children()
