"""Soak: healthy clients beside hostile and slow ones. Does anyone but the attacker pay?

Starts one hub (SQLite in a temporary folder unless ``--database-url``) and runs two
phases of ``--duration`` seconds each, in the same run:

quiet
    ``--healthy`` subscribers (one user each) in one room, and a publisher (a service)
    publishing ``--rate`` messages/s of ``--payload`` characters, stamped with their
    send time.
attack
    the same, while the attackers run beside them:

    * ``--slow-readers`` subscribers of the same room that never read;
    * ``--churners`` connections of one guest that subscribe and unsubscribe as fast
      as they can;
    * ``--flooders`` connections of one guest that publish as fast as they can (to a
      room of their own);
    * ``--slow-headers`` sockets that send an HTTP request head one byte every 2 s;
    * ``--huge-header`` MiB sent as one header value by one connection (0: none).

For each phase it prints, for the healthy subscribers: messages lost (acknowledged
but never received), duplicates, out of order, delivery latency p50/p99/max; the
hub's RSS and open fds; and how the attackers ended (close codes, HTTP statuses).
``--json FILE`` (or ``-``) writes every figure.

Example: ``python loadtest/soak.py --duration 20 --slow-headers 1000 --json soak.json``.
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # loadtest/queue.py must not shadow the stdlib's queue

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import socket
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from common import client_frame
from servers import HOST, Server, free_port, hub_argv, hub_env, hub_token, kill_children
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

SUB = "roomlog.v1.json"


@dataclass
class Phase:
    name: str
    published: int = 0
    healthy: int = 0
    lost: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    rss_mib_start: float = 0.0
    rss_mib_end: float = 0.0
    fds_end: int = 0
    fds_under_attack: int = 0  # the hub's open fds when the publisher stopped
    slow_disconnects: float = 0.0  # roomlog_slow_disconnects_total by then (0: unknown)
    attackers: dict[str, dict[str, int]] = field(default_factory=dict)


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def frames_of(payload: str | bytes) -> list[dict[str, Any]]:
    obj = orjson.loads(payload)
    return obj if isinstance(obj, list) else [obj]


async def ws(port: int, user: str, role: str = "guest") -> ClientConnection:
    conn = await connect(f"ws://{HOST}:{port}/ws", subprotocols=[SUB],  # type: ignore[list-item]
                         max_size=None, open_timeout=30)
    await conn.send(orjson.dumps({"type": "connect", "token": hub_token(user, role=role)}).decode())
    while not any(f["type"] == "connected" for f in frames_of(await conn.recv())):
        pass
    return conn


class Healthy:
    """One healthy subscriber: every seq it gets, and each message's latency."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.seqs: list[int] = []
        self.latency_ns: list[int] = []
        self.task: asyncio.Task[None] | None = None

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for payload in self.conn:
                now = time.perf_counter_ns()
                for f in frames_of(payload):
                    if f["type"] == "message":
                        self.seqs.append(f["seq"])
                        self.latency_ns.append(now - f["data"]["t"])


async def publish(port: int, room: str, rate: float, pad: str,
                  stop: asyncio.Event) -> list[int]:
    """Publish ``rate``/s until ``stop``; the acknowledged seqs."""
    conn = await ws(port, "soak-publisher", "service")
    acked: list[int] = []

    async def acks() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for payload in conn:
                acked.extend(f["seq"] for f in frames_of(payload) if f["type"] == "ack")

    reader = asyncio.create_task(acks())
    n = 0
    start = time.perf_counter()
    while not stop.is_set():
        n += 1
        await conn.send(orjson.dumps({"type": "publish", "room": room, "id": f"p{n}",
                                      "data": {"t": time.perf_counter_ns(), "pad": pad}}
                                     ).decode())
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
    await asyncio.sleep(1.0)  # the last acks
    reader.cancel()
    await conn.close()
    return acked


# -- attackers ---------------------------------------------------------------------


async def slow_reader(port: int, room: str, i: int, out: Counter[str]) -> None:
    """Subscribes, then never reads again: a bare socket with a 4 KiB receive buffer
    (its stream reader stops at 64 KiB), so the hub's sends back up at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=65536)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {SUB}\r\n\r\n"
                  ).encode())
    await reader.readuntil(b"\r\n\r\n")
    token = hub_token(f"slow-{i}", role="guest")
    for frame in ({"type": "connect", "token": token}, {"type": "subscribe", "room": room}):
        writer.write(client_frame(orjson.dumps(frame)))
    await writer.drain()
    try:
        await asyncio.Event().wait()  # never reads again
    except asyncio.CancelledError:
        out["still open" if not writer.is_closing() else "closed"] += 1
        writer.close()
        raise


async def churner(port: int, i: int, out: Counter[str]) -> None:
    try:
        conn = await ws(port, "soak-churner")
    except Exception as exc:
        out[type(exc).__name__] += 1
        return
    try:
        n = 0
        while True:
            n += 1
            await conn.send(orjson.dumps({"type": "subscribe" if n % 2 else "unsubscribe",
                                          "room": f"chat:soak-churn-{i}"}).decode())
            if n % 50 == 0:
                await asyncio.sleep(0)
    except ConnectionClosed:
        out[str(conn.close_code)] += 1


async def flooder(port: int, i: int, out: Counter[str]) -> None:
    try:
        conn = await ws(port, "soak-flooder")
    except Exception as exc:
        out[type(exc).__name__] += 1
        return
    try:
        n = 0
        while True:
            n += 1
            await conn.send(orjson.dumps({"type": "publish", "room": "chat:soak-flood",
                                          "id": f"f{i}-{n}", "data": n}).decode())
            if n % 50 == 0:
                await asyncio.sleep(0)
    except ConnectionClosed:
        out[str(conn.close_code)] += 1


async def slow_header(port: int, out: Counter[str]) -> None:
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
        for byte in b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000:
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                line = await asyncio.wait_for(reader.readline(), 2.0)
                out[line.split(b" ")[1].decode() if line.startswith(b"HTTP/") else "closed"] += 1
                writer.close()
                return
    except (ConnectionError, OSError):
        out["reset"] += 1


async def huge_header(port: int, mib: int, out: Counter[str]) -> None:
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 1_048_576
        with contextlib.suppress(ConnectionError):
            for _ in range(mib):
                writer.write(chunk)
                await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 60)
        out[line.split(b" ")[1].decode() if line.startswith(b"HTTP/") else "closed"] += 1
        writer.close()
    except (ConnectionError, OSError, TimeoutError) as exc:
        out[type(exc).__name__] += 1


# -- phases ------------------------------------------------------------------------


async def run_phase(srv: Server, name: str, args: argparse.Namespace, attack: bool) -> Phase:
    room = f"chat:soak-{name}-{int(time.time())}"
    phase = Phase(name, rss_mib_start=round(srv.rss_kib() / 1024, 1))
    healthy = [Healthy(await ws(srv.port, f"healthy-{i}")) for i in range(args.healthy)]
    for h in healthy:
        await h.conn.send(orjson.dumps({"type": "subscribe", "room": room}).decode())
        h.task = asyncio.create_task(h.read())
    child = None
    if attack:  # in a process of its own: its busy loop must not delay the healthy ones
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--attacker", str(srv.port), "--room", room,
            "--duration", str(args.duration + args.drain),
            *(f"--{k.replace('_', '-')}={getattr(args, k)}" for k in
              ("slow_readers", "churners", "flooders", "slow_headers", "huge_header")),
            stdout=asyncio.subprocess.PIPE)
    stop = asyncio.Event()
    publisher = asyncio.create_task(publish(srv.port, room, args.rate, "x" * args.payload,
                                            stop))
    await asyncio.sleep(args.duration)
    stop.set()
    acked = await publisher
    phase.fds_under_attack = fds(srv.pid)
    try:
        metrics = await asyncio.wait_for(srv.metrics(), 10)
        phase.slow_disconnects = metrics.get("roomlog_slow_disconnects_total", -1.0)
    except (OSError, RuntimeError, TimeoutError) as exc:  # a hub frozen by the attack
        print(f"        /metrics did not answer: {exc!r}", file=sys.stderr, flush=True)
    await asyncio.sleep(args.drain)
    outcomes: dict[str, dict[str, int]] = {}
    if child is not None:
        stdout, _ = await child.communicate()
        outcomes = json.loads(stdout or b"{}")
    phase.published = len(acked)
    want = set(acked)
    latencies: list[int] = []
    for h in healthy:
        seen = Counter(h.seqs)
        phase.lost += len(want - set(seen))
        phase.duplicates += sum(c - 1 for c in seen.values() if c > 1)
        phase.out_of_order += sum(1 for a, b in zip(h.seqs, h.seqs[1:], strict=False) if b <= a)
        latencies += h.latency_ns
        if h.task is not None:
            h.task.cancel()
        await h.conn.close()
    phase.healthy = len(healthy)
    if latencies:
        latencies.sort()
        pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
                               / 1e6, 2)
        phase.p50_ms, phase.p99_ms, phase.max_ms = pick(0.5), pick(0.99), pick(1.0)
    phase.rss_mib_end = round(srv.rss_kib() / 1024, 1)
    phase.fds_end = fds(srv.pid)
    phase.attackers = outcomes
    return phase


async def attack(args: argparse.Namespace) -> None:
    """The attacker process: run every attacker for ``--duration`` seconds, then print
    how each kind ended as JSON."""
    port, room = args.attacker, args.room
    outcomes: dict[str, Counter[str]] = {k: Counter() for k in
                                         ("slow_readers", "churners", "flooders",
                                          "slow_headers", "huge_header")}
    tasks = [asyncio.create_task(slow_reader(port, room, i, outcomes["slow_readers"]))
             for i in range(args.slow_readers)]
    tasks += [asyncio.create_task(churner(port, i, outcomes["churners"]))
              for i in range(args.churners)]
    tasks += [asyncio.create_task(flooder(port, i, outcomes["flooders"]))
              for i in range(args.flooders)]
    tasks += [asyncio.create_task(slow_header(port, outcomes["slow_headers"]))
              for _ in range(args.slow_headers)]
    if args.huge_header:
        tasks.append(asyncio.create_task(huge_header(port, args.huge_header,
                                                     outcomes["huge_header"])))
    await asyncio.wait(tasks, timeout=args.duration)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({k: dict(v) for k, v in outcomes.items() if v}), flush=True)


def show(p: Phase, out: Any) -> None:
    print(f"{p.name:6s}  published {p.published:6d}  to {p.healthy} healthy: lost {p.lost}, "
          f"duplicates {p.duplicates}, out of order {p.out_of_order}; latency p50 "
          f"{p.p50_ms} ms, p99 {p.p99_ms} ms, max {p.max_ms} ms; RSS {p.rss_mib_start} -> "
          f"{p.rss_mib_end} MiB; {p.fds_under_attack} fds while attacked, "
          f"{p.slow_disconnects:g} slow readers dropped", file=out, flush=True)
    for kind, codes in p.attackers.items():
        print(f"        {kind}: {codes}", file=out, flush=True)


async def main(args: argparse.Namespace) -> int:
    out = sys.stderr if args.json == "-" else sys.stdout
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        workdir = Path(tmp)
        url = args.database_url or f"sqlite+aiosqlite:///{workdir}/soak.db"
        extra = {"ROOMLOG_" + k.upper(): v for k, v in (s.split("=", 1) for s in args.set)}
        extra.setdefault("ROOMLOG_HEADER_TIMEOUT", "5")
        extra.setdefault("ROOMLOG_OUTBOX_MAX_BYTES", "2000000")  # slow readers overflow soon
        port = free_port()
        env = hub_env(url, **extra)
        for name in ("PUBLISH_RATE", "PUBLISH_BURST", "MAX_CONNECTIONS_PER_USER",
                     "SUBSCRIBE_RATE", "SUBSCRIBE_BURST", "READ_RATE", "READ_BURST"):
            if "ROOMLOG_" + name not in extra:  # the attackers meet the real limits
                env.pop("ROOMLOG_" + name, None)
        srv = Server("hub", hub_argv(port), port, workdir, env=env)
        try:
            await srv.ready()
            phases = []
            for name, attack in (("quiet", False), ("attack", True)):
                phases.append(await run_phase(srv, name, args, attack))
                show(phases[-1], out)
        finally:
            await srv.stop()
    failed = any(p.lost or p.duplicates or p.out_of_order for p in phases)
    if args.json:
        document = {"tool": "soak", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                    "options": {k: v for k, v in vars(args).items() if k != "json"},
                    "phases": [asdict(p) for p in phases], "failed": failed}
        text = json.dumps(document, indent=2)
        if args.json == "-":
            print(text)
        else:
            await asyncio.to_thread(Path(args.json).write_text, text + "\n")
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    p.add_argument("--drain", type=float, default=3.0,
                   help="seconds the healthy subscribers get after the last publish")
    p.add_argument("--healthy", type=int, default=20, help="healthy subscribers")
    p.add_argument("--rate", type=float, default=200.0, help="healthy publishes per second")
    p.add_argument("--payload", type=int, default=4000,
                   help="padding characters per healthy message (fills slow readers' outboxes)")
    p.add_argument("--slow-readers", type=int, default=20)
    p.add_argument("--churners", type=int, default=10)
    p.add_argument("--flooders", type=int, default=10)
    p.add_argument("--slow-headers", type=int, default=1000)
    p.add_argument("--huge-header", type=int, default=96, metavar="MIB")
    p.add_argument("--database-url", default="", help="default: SQLite in a temp folder")
    p.add_argument("--attacker", type=int, default=0, help=argparse.SUPPRESS)  # its port
    p.add_argument("--room", default="", help=argparse.SUPPRESS)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a hub setting (ROOMLOG_NAME), repeatable")
    p.add_argument("--json", default="", help="write the figures to FILE ('-': stdout)")
    return p.parse_args(argv)


if __name__ == "__main__":
    try:
        options = parse_args()
        if options.attacker:
            asyncio.run(attack(options))
        else:
            sys.exit(asyncio.run(main(options)))
    finally:
        kill_children()
