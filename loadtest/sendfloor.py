"""The floor under fan-out latency: what one socket write costs, with no hub at all.

A fan-out to N subscribers is N socket writes, one after the other on the
server's core; the last subscriber's latency can never be below N times the
cost of one write, nor the median's below half of it. This tool measures that
cost on this machine, the way the hub writes (an event loop's
``transport.write`` of one ~200-byte WebSocket frame to each of
``--subscribers`` loopback TCP connections), with no hub, no database and no
JSON:

* a writer process pinned to ``--server-core`` accepts the connections, then
  ``--messages`` times writes one frame to every connection (a "message"),
  ``--interval`` seconds apart, so each write meets an idle socket as in the
  latency phase of ``fanout.py``;
* a reader process pinned to ``--gen-core`` opens the connections and reads
  (and counts) everything, so the writer's kernel does the full loopback
  delivery and nothing backs up.

Figures per event loop (``uvloop``, what ``roomlog serve`` runs on, and
``asyncio``): wall time and CPU time (user + system, from ``os.times``) of the
writer per write, and what that makes a fan-out to 1,000 subscribers take:
the median subscriber's wait and the last one's. On loopback the sending call
also runs the receiving side of TCP (softirq on the sender's core), so this is
most of what a delivery costs the server.

Example: ``python loadtest/sendfloor.py --json sendfloor.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

FRAME = b"\x81\x7e\x00\xcf" + b"x" * 207  # one unmasked text frame of 207 bytes


def _pin(core: int | None) -> None:
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))


async def _writer(args: argparse.Namespace, port_out: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    transports: list[Any] = []  # uvloop's transports are not asyncio.Transport
    ready = asyncio.Event()

    class Server(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transports.append(transport)
            if len(transports) == args.subscribers:
                ready.set()

    server = await loop.create_server(Server, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    port_out.write(f"{port}\n")
    port_out.flush()
    await asyncio.wait_for(ready.wait(), 60)
    await asyncio.sleep(0.5)
    walls, cpus = [], []
    for _ in range(args.messages):
        before, start = os.times(), time.perf_counter()
        for transport in transports:
            transport.write(FRAME)
        wall, after = time.perf_counter() - start, os.times()
        walls.append(wall / len(transports))
        cpus.append((after.user + after.system - before.user - before.system) / len(transports))
        await asyncio.sleep(args.interval)
    server.close()
    for transport in transports:
        transport.close()
    return {"wall_us": statistics.median(walls) * 1e6,
            "wall_us_p90": sorted(walls)[int(len(walls) * 0.9)] * 1e6,
            "cpu_us": statistics.mean(cpus) * 1e6}


async def _reader(port: int, subscribers: int, expect: int) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    got = [0]

    class Client(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            got[0] += len(data)
            if got[0] >= expect:
                done.set()

    for _ in range(subscribers):
        await loop.create_connection(Client, "127.0.0.1", port)
    await asyncio.wait_for(done.wait(), 600)


def _run(loop_name: str, main: Any) -> Any:
    if loop_name == "uvloop":
        import uvloop
        return uvloop.run(main)
    return asyncio.run(main)


def measure(args: argparse.Namespace, loop_name: str) -> dict[str, Any]:
    reader = subprocess.Popen(
        [sys.executable, __file__, "--_reader", loop_name, "--subscribers",
         str(args.subscribers), "--messages", str(args.messages)]
        + ([] if args.gen_core is None else ["--gen-core", str(args.gen_core)]),
        stdin=subprocess.PIPE, text=True)
    assert reader.stdin is not None
    result = _run(loop_name, _writer(args, reader.stdin))
    reader.wait(600)
    per_write = result["wall_us"]
    return {"loop": loop_name, "subscribers": args.subscribers, **result,
            "fanout_1000_median_ms": per_write * 500 / 1000,
            "fanout_1000_last_ms": per_write * 1000 / 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200,
                        help="fan-outs measured (default 200)")
    parser.add_argument("--interval", type=float, default=0.02,
                        help="seconds between fan-outs (default 0.02: 50/s)")
    parser.add_argument("--loops", default="uvloop,asyncio")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--gen-core", type=int, default=1)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--_reader", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _raise_nofile(args.subscribers * 2 + 100)
    if args._reader:
        _pin(args.gen_core)
        port = int(sys.stdin.readline())
        _run(args._reader, _reader(port, args.subscribers,
                                   len(FRAME) * args.subscribers * args.messages))
        return
    _pin(args.server_core)
    results = [measure(args, name) for name in args.loops.split(",")]
    print(f"sendfloor: {args.subscribers} loopback connections, {args.messages} fan-outs of "
          f"one {len(FRAME)}-byte frame, writer on core {args.server_core}, reader on core "
          f"{args.gen_core}")
    print(f"{'loop':8} {'wall/write':>11} {'p90':>8} {'cpu/write':>10} "
          f"{'1000 subs: median':>18} {'last':>8}")
    for r in results:
        print(f"{r['loop']:8} {r['wall_us']:9.2f}us {r['wall_us_p90']:6.2f}us "
              f"{r['cpu_us']:8.2f}us {r['fanout_1000_median_ms']:16.2f}ms "
              f"{r['fanout_1000_last_ms']:6.2f}ms")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"options": {k: v for k, v in vars(args).items() if k != "_reader"},
                       "results": results}, out, indent=2)


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    main()
