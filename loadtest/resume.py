"""Resume: a client that missed ``--missed`` messages (1,000) subscribes again with
``since={epoch, seq}``. How long until it has them all?

For each of ``--runs`` rooms: a client subscribes (learns the epoch) and leaves,
``--missed`` messages are published (pipelined over one WebSocket), then
``--clients`` connected clients (1 by default; more: that many resuming the same
room and position at once, as after a restart) send ``subscribe`` with the old
position. The figure is the time from sending ``subscribe`` to the last missed
message, per client (p50 / p99 / max over every client of every run), and the
server's CPU time per resumed client. A resumed stream is checked: seqs 1..N,
in order, no gap. ``--json PATH`` writes the options and figures.

Example: ``python loadtest/resume.py --db postgres --clients 1 --json resume.json``.
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
from common import Buffer, RawClient, percentile
from harness import connect
from procs import tree_cpu, tree_pids
from servers import PgDatabase, Server, free_port, hub_argv, hub_env, hub_token, migrate


class Resumer:
    """A connected client resuming one room; ``done`` is set with the last message."""

    def __init__(self, client: RawClient, room: str, missed: int) -> None:
        self.client = client
        self.room = room
        self.missed = missed
        self.seqs: list[int] = []
        self.done = asyncio.Event()
        self.sent = 0.0
        self.took = 0.0
        self.problems: list[str] = []
        client.on_payload = self._payload

    def _payload(self, buf: Buffer, start: int, end: int) -> None:
        obj = orjson.loads(memoryview(buf)[start:end])
        for frame in obj if isinstance(obj, list) else [obj]:
            kind = frame.get("type")
            if kind == "message":
                self.seqs.append(frame["seq"])
                if len(self.seqs) == self.missed:
                    self.took = time.perf_counter() - self.sent
                    self.done.set()
            elif kind in ("error", "reset"):
                self.problems.append(str(frame)[:200])
                self.done.set()

    def resume(self, epoch: str) -> None:
        self.sent = time.perf_counter()
        self.client.send_json({"type": "subscribe", "room": self.room,
                               "since": {"epoch": epoch, "seq": 0}})


async def one_run(port: int, index: int, args: argparse.Namespace, pids: list[int]
                  ) -> tuple[list[float], float, list[str]]:
    room = f"chat:resume-{index}-{os.getpid()}"
    token = hub_token("resumer", role="admin")
    first = await connect(port, token)
    first.send_json({"type": "subscribe", "room": room, "id": "s"})
    epoch = (await first.expect("subscribed"))["epoch"]
    for start in range(0, args.missed, 250):  # pipelined, acknowledged in chunks
        count = min(250, args.missed - start)
        for n in range(start, start + count):
            first.send_json({"type": "publish", "room": room, "data": {"n": n, "text": "x" * 150},
                             "id": f"p{n}"})
        for _ in range(count):
            await first.expect("ack")
    await first.close()
    clients = [await connect(port, hub_token(f"r{i}", role="guest"))
               for i in range(args.clients)]
    resumers = [Resumer(c, room, args.missed) for c in clients]
    await asyncio.sleep(0.2)  # set-up done: the server is idle again
    cpu = tree_cpu(pids)
    for r in resumers:
        r.resume(epoch)
    async with asyncio.timeout(60):
        for r in resumers:
            await r.done.wait()
    cpu = tree_cpu(pids) - cpu
    problems = [p for r in resumers for p in r.problems]
    for r in resumers:
        if r.seqs != list(range(1, args.missed + 1)):
            problems.append(f"client got {len(r.seqs)} messages, not 1..{args.missed} in order")
        await r.client.close()
    return [r.took for r in resumers], cpu, problems


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    pg = None
    if args.db == "postgres":
        pg = PgDatabase(args.pg_dsn)
        await pg.create()
        env = hub_env(pg.url)
        try:
            await migrate(env)
        except BaseException:
            await pg.drop()  # nothing else holds it yet
            raise
    else:
        env = hub_env(f"sqlite+aiosqlite:///{workdir}/resume.db")
    port = free_port()
    server = Server("hub", hub_argv(port), port, workdir, env=env, core=args.server_core)
    times: list[float] = []
    cpu = 0.0
    problems: list[str] = []
    try:
        await server.ready()
        pids = tree_pids(server.pid)
        for index in range(args.runs):
            took, used, found = await one_run(port, index, args, pids)
            times += took
            cpu += used
            problems += found
    finally:
        await server.stop()
        if pg is not None:
            await pg.drop()
    ms = sorted(int(t * 1e6) for t in times)  # microseconds
    return {"db": args.db, "missed": args.missed, "clients": args.clients, "runs": args.runs,
            "p50_ms": percentile(ms, 0.5) / 1000, "p99_ms": percentile(ms, 0.99) / 1000,
            "max_ms": ms[-1] / 1000 if ms else None,
            "server_cpu_ms_per_client": round(cpu * 1000 / max(1, len(times)), 2),
            "problems": problems[:5]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="postgres")
    parser.add_argument("--missed", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=1,
                        help="clients resuming the same room and position at once (default 1)")
    parser.add_argument("--runs", type=int, default=20, help="rooms, one resume each (20)")
    parser.add_argument("--server-core", default="0", help="core(s) for the hub (0)")
    parser.add_argument("--gen-core", type=int, default=1, help="core for this generator (1)")
    parser.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", metavar="PATH", help="write the options and figures as JSON")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.gen_core})
    results = []
    for db in (["sqlite", "postgres"] if args.db == "both" else [args.db]):
        args.db = db
        with tempfile.TemporaryDirectory(prefix="resume-") as tmp:
            r = asyncio.run(run(args, Path(tmp)))
        results.append(r)
        print(f"resume {r['missed']:,} missed messages, {r['clients']} client(s) at once, "
              f"{db}: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max "
              f"{r['max_ms']:.1f} ms over {r['runs']} runs; server CPU "
              f"{r['server_cpu_ms_per_client']:.2f} ms per resumed client", flush=True)
        for problem in r["problems"]:
            print(f"   !! {problem}")
    if args.json:
        document = {"tool": "resume", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "options": {k: v for k, v in vars(args).items() if k != "json"},
                    "results": results}
        Path(args.json).write_text(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
