"""Reconnect storm: subscribers of many rooms, the server killed (``kill -9``) and
started again while publishing goes on. How long until every client has resumed?

``--subscribers`` clients (default 5,000) subscribe to ``--rooms`` rooms (50) on
one hub (``--workers`` processes); a publisher posts ``--rate`` messages/s over
HTTP, round robin over the rooms. After ``--warmup`` seconds the hub's whole
process group gets SIGKILL and is started again at once on the same port and
database. Each client behaves as the protocol asks (``clients/python``): when its
connection goes it waits ``backoff[0]`` (shortened by up to 30 % at random),
then retries on the ``--backoff`` schedule, honours ``Retry-After`` of a 503
(plus up to 1 s), and resubscribes with ``since={epoch, seq}`` of the last
message it got.

Figures (``--json PATH`` writes them with the options):

* ``ready_s``: from the kill until the hub listens again (its start-up done);
* ``resumed``: clients whose stream continued with nothing missing (their
  replay reached the head the ``subscribed`` frame named), and the seconds from
  *ready* until the p50 / p99 / last of them; ``server_s``: the same per client
  measured from its first attempt after ready (the server's share, without the
  client's backoff);
* ``refused_503`` (told to come back later), ``handshake_failures`` after ready
  (timeouts, resets), ``errors`` (error or reset frames), ``gaps`` and
  ``duplicates`` in the streams, ``behind`` at the end (clients that do not hold
  every message the publisher got acknowledged), ``publish_failures`` (while
  the hub was down: expected).

Example: ``python loadtest/storm.py --db postgres --json storm.json``.
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # loadtest/queue.py must not shadow the stdlib's queue

import argparse
import asyncio
import faulthandler
import os
import random
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from common import Buffer, RawClient, percentile
from procs import tree_cpu, tree_pids
from servers import HOST, PgDatabase, Server, free_port, hub_argv, hub_env, hub_token, migrate

OPEN_TIMEOUT = 10.0  # a client's handshake + connect + subscribe give-up (as a browser's)
SUBPROTOCOL = "roomlog.v1.json"
PUBLISH_INFLIGHT = 32  # publishes awaiting an answer at once; more are counted as failed


class Refused(Exception):
    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class StormClient(RawClient):
    """A RawClient that keeps the status and Retry-After of a refused handshake."""

    refused: Refused | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # A handshake that fails after its waiter gave up is no news.
        self.handshake.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _check_handshake(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status != 101:
            retry = None
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"retry-after" and value.strip().isdigit():
                    retry = float(value.strip())
            self.refused = Refused(status, retry)
        super()._check_handshake(head)


@dataclass
class Tally:
    refused_503: int = 0
    handshake_failures: int = 0  # after the restart was ready
    errors: list[str] = field(default_factory=list)
    gaps: int = 0
    duplicates: int = 0
    publish_failures: int = 0
    published: int = 0


@dataclass
class Gate:
    """Handshakes at once while the subscribers are first opened; open afterwards."""

    limit: asyncio.Semaphore
    open: bool = False


@dataclass
class Clock:
    killed: float | None = None
    ready: float | None = None


class Member:
    """One subscriber and its reconnect loop."""

    def __init__(self, index: int, room: str, port: int, token: str, tally: Tally,
                 clock: Clock, backoff: list[float]) -> None:
        self.room = room
        self.port = port
        self.token = token
        self.tally = tally
        self.clock = clock
        self.backoff = backoff
        self.epoch: str | None = None
        self.seq = 0
        self.target: int | None = None  # head named by the subscribed frame after the kill
        self.resumed_at: float | None = None
        self.first_try: float | None = None  # first attempt after ready
        self.handshaken: float | None = None  # its handshake done (first after ready)
        self.subscribed_at: float | None = None  # its subscribed frame (first after ready)
        self.subscribed = asyncio.Event()
        self.client: StormClient | None = None
        self.stopping = False

    def _delay(self, attempt: int) -> float:
        base = self.backoff[min(attempt, len(self.backoff) - 1)]
        return base * (1.0 - 0.3 * random.random())

    async def run(self, gate: Gate) -> None:
        attempts = 0
        while not self.stopping:
            now = time.monotonic()
            if self.clock.ready is not None and self.first_try is None and now >= self.clock.ready:
                self.first_try = now
            try:
                if gate.open:
                    client = await self._open()
                else:
                    async with gate.limit:
                        client = await self._open()
            except Refused as refused:
                attempts += 1
                if refused.status == 503:
                    self.tally.refused_503 += 1
                    wait = (refused.retry_after or self._delay(attempts - 1)) + random.random()
                else:
                    wait = self._delay(attempts - 1)
                await asyncio.sleep(wait)
                continue
            except (OSError, ConnectionError, TimeoutError, RuntimeError):
                attempts += 1
                if self.clock.ready is not None:
                    self.tally.handshake_failures += 1
                await asyncio.sleep(self._delay(attempts - 1))
                continue
            attempts = 0
            await client.closed
            self.client = None
            if not self.stopping:
                await asyncio.sleep(self._delay(0))

    async def _open(self) -> StormClient:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(OPEN_TIMEOUT):
            _, client = await loop.create_connection(
                lambda: StormClient(HOST, "/ws", SUBPROTOCOL), HOST, self.port)
            try:
                try:
                    await client.handshake
                    if self.first_try is not None and self.handshaken is None:
                        self.handshaken = time.monotonic()
                except ConnectionError:
                    if client.refused is not None:
                        raise client.refused from None
                    raise
                client.on_payload = self._on_payload
                client.send_json({"type": "connect", "token": self.token})
                frame: dict[str, Any] = {"type": "subscribe", "room": self.room, "id": "s"}
                if self.epoch is not None:
                    frame["since"] = {"epoch": self.epoch, "seq": self.seq}
                self.subscribed.clear()
                client.send_json(frame)
                self.client = client
                await self.subscribed.wait()
            except BaseException:
                self.client = None
                if client.transport is not None:
                    client.transport.abort()
                raise
        return client

    def _on_payload(self, buf: Buffer, start: int, end: int) -> None:
        obj = orjson.loads(memoryview(buf)[start:end])
        for frame in obj if isinstance(obj, list) else [obj]:
            self._frame(frame)

    def _frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            seq = frame["seq"]
            if seq <= self.seq:
                self.tally.duplicates += 1
                return
            if seq != self.seq + 1:
                self.tally.gaps += 1
            self.seq = seq
            self._check_resumed()
        elif kind == "subscribed":
            if self.epoch is None:
                self.epoch, self.seq = frame["epoch"], frame["head"]
            if self.clock.killed is not None:
                self.target = frame["head"]
                if self.first_try is not None and self.subscribed_at is None:
                    self.subscribed_at = time.monotonic()
            self.subscribed.set()
            self._check_resumed()
        elif kind in ("error", "reset"):
            self.tally.errors.append(orjson.dumps(frame).decode()[:200])

    def _check_resumed(self) -> None:
        if (self.resumed_at is None and self.target is not None and self.seq >= self.target):
            self.resumed_at = time.monotonic()

    async def close(self) -> None:
        self.stopping = True
        if self.client is not None:
            await self.client.close()


async def publish(port: int, rooms: list[str], rate: float, tally: Tally,
                  acked: dict[str, int], stop: asyncio.Event) -> None:
    headers = {"authorization": f"Bearer {hub_token('publisher', role='service')}"}
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=5.0,
                                 headers=headers) as http:
        loop = asyncio.get_running_loop()
        begin, n = loop.time(), 0
        inflight: set[asyncio.Task[None]] = set()

        async def one(room: str, n: int) -> None:
            try:
                reply = await http.post(f"/v1/rooms/{room}/messages",
                                        json={"data": {"n": n}, "id": f"m{n}"})
                if reply.status_code in (200, 201):
                    acked[room] = max(acked.get(room, 0), reply.json()["seq"])
                    tally.published += 1
                else:
                    tally.publish_failures += 1
            except httpx.HTTPError:
                tally.publish_failures += 1

        while not stop.is_set():
            delay = begin + n / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(inflight) >= PUBLISH_INFLIGHT:  # the hub is down or slow: not sent
                tally.publish_failures += 1
                n += 1
                continue
            task = asyncio.create_task(one(rooms[n % len(rooms)], n))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            n += 1
        await asyncio.gather(*inflight, return_exceptions=True)


async def listening(port: int, server: Server) -> None:
    """Until a TCP connection to ``port`` is accepted."""
    while server.alive():
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        return
    raise RuntimeError(f"the hub exited during start-up\n{server.log_tail()}")


def _seconds(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    ms = [int(v * 1000) for v in ordered]
    return {"p50": percentile(ms, 0.5) / 1000 if ms else None,
            "p99": percentile(ms, 0.99) / 1000 if ms else None,
            "max": ordered[-1] if ordered else None}


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
        env = hub_env(f"sqlite+aiosqlite:///{workdir}/storm.db")
    env |= {"ROOMLOG_WORKERS": str(args.workers), "ROOMLOG_MAX_SUBSCRIPTIONS": "100"}
    for item in args.set or []:
        name, _, value = item.partition("=")
        env["ROOMLOG_" + name.upper()] = value
    port = free_port()
    argv = hub_argv(port)
    server = Server("hub", argv, port, workdir, env=env, core=args.server_core)
    tally, clock = Tally(), Clock()
    rooms = [f"chat:storm-{i}" for i in range(args.rooms)]
    members = [Member(i, rooms[i % len(rooms)], port, hub_token(f"s{i}", role="guest"),
                      tally, clock, args.backoff) for i in range(args.subscribers)]
    stop = asyncio.Event()
    acked: dict[str, int] = {}
    tasks: list[asyncio.Task[None]] = []
    try:
        await server.ready()
        gate = Gate(asyncio.Semaphore(args.connect_concurrency))
        say(f"opening {args.subscribers:,} subscribers of {args.rooms} rooms ...")
        tasks = [asyncio.create_task(m.run(gate)) for m in members]
        async with asyncio.timeout(120):
            for m in members:
                await m.subscribed.wait()
        gate.open = True  # from here on, nothing holds the clients back
        publisher = asyncio.create_task(publish(port, rooms, args.rate, tally, acked, stop))
        await asyncio.sleep(args.warmup)
        say(f"kill -9 the hub (pid {server.pid}, its workers too) while publishing "
            f"{args.rate:g}/s ...")
        old = tree_pids(server.pid)  # with workers: the supervisor and each worker
        clock.killed = time.monotonic()
        os.killpg(server.pid, signal.SIGKILL)
        await asyncio.to_thread(server.proc.wait)
        while any(_alive(pid) for pid in old):  # noqa: ASYNC110 (polled: a dying worker still answers connects)
            await asyncio.sleep(0.005)
        # Ready: listening again (uvicorn binds once its start-up is complete). HTTP
        # checks would measure how swamped the loop is, which the clients measure.
        server = Server("hub-restarted", argv, port, workdir, env=env, core=args.server_core)
        cpu0, gen0 = time.monotonic(), time.process_time()
        async with asyncio.timeout(args.timeout):
            await listening(port, server)
        pids = tree_pids(server.pid)  # with workers: the supervisor and each worker
        clock.ready = time.monotonic()
        ready_s = clock.ready - clock.killed
        say(f"ready again {ready_s:.1f} s after the kill; waiting for every client ...")
        deadline = clock.ready + args.timeout
        while time.monotonic() < deadline:
            if all(m.resumed_at is not None for m in members):
                break
            await asyncio.sleep(0.1)
        cpu_pct = 100 * tree_cpu(pids) / (time.monotonic() - cpu0)  # all since its start
        gen_pct = 100 * (time.process_time() - gen0) / (time.monotonic() - cpu0)
        load = os.getloadavg()[0]
        stop.set()
        await publisher
        # Nothing lost: every client reaches what the publisher got acknowledged.
        settle = time.monotonic() + 15
        while time.monotonic() < settle and any(  # noqa: ASYNC110 (polls the clients' state)
                m.seq < acked.get(m.room, 0) for m in members):
            await asyncio.sleep(0.2)
        behind = sum(1 for m in members if m.seq < acked.get(m.room, 0))
    finally:
        stop.set()
        for m in members:
            m.stopping = True
        await asyncio.gather(*(m.close() for m in members), return_exceptions=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()
        if pg is not None:
            await pg.drop()
    resumed = [m for m in members if m.resumed_at is not None]
    after_ready = [m.resumed_at - clock.ready for m in resumed if m.resumed_at and clock.ready]
    server_share = [m.resumed_at - m.first_try for m in resumed
                    if m.resumed_at is not None and m.first_try is not None]
    return {"db": args.db, "workers": args.workers, "subscribers": args.subscribers,
            "rooms": args.rooms, "rate": args.rate, "ready_s": round(ready_s, 2),
            "resumed": len(resumed), "not_resumed": len(members) - len(resumed),
            "resumed_after_ready_s": _seconds(after_ready),
            "server_s": _seconds(server_share),
            "handshake_s": _seconds([m.handshaken - m.first_try for m in resumed
                                     if m.handshaken and m.first_try]),
            "subscribed_s": _seconds([m.subscribed_at - m.first_try for m in resumed
                                      if m.subscribed_at and m.first_try]),
            "server_cpu_pct": round(cpu_pct, 1), "generator_cpu_pct": round(gen_pct, 1),
            "load_average": round(load, 1), "refused_503": tally.refused_503,
            "handshake_failures": tally.handshake_failures, "errors": len(tally.errors),
            "error_samples": tally.errors[:5], "gaps": tally.gaps,
            "duplicates": tally.duplicates, "behind": behind,
            "published": tally.published, "publish_failures": tally.publish_failures}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def report(r: dict[str, Any]) -> str:
    def s(d: dict[str, float | None]) -> str:
        return " / ".join("-" if v is None else f"{v:.2f}" for v in d.values())

    return "\n".join([
        f"storm: {r['subscribers']:,} subscribers of {r['rooms']} rooms, {r['db']}, "
        f"{r['workers']} worker(s), publishing {r['rate']:g}/s",
        f"  ready again        {r['ready_s']:.2f} s after kill -9",
        f"  resumed            {r['resumed']:,} of {r['subscribers']:,} "
        f"(p50 / p99 / last after ready: {s(r['resumed_after_ready_s'])} s)",
        f"  server share       p50 / p99 / max {s(r['server_s'])} s (first attempt after "
        "ready -> resumed)",
        f"  of which          handshake {s(r['handshake_s'])} s, subscribed "
        f"{s(r['subscribed_s'])} s",
        f"  CPU                server {r['server_cpu_pct']:.0f}%, generator "
        f"{r['generator_cpu_pct']:.0f}% of a core from restart to resumed (machine load "
        f"average {r['load_average']:.1f}: other work takes the cores)",
        f"  refused (503)      {r['refused_503']:,}; handshake failures after ready "
        f"{r['handshake_failures']:,}",
        f"  errors             {r['errors']} error/reset frames, {r['gaps']} gaps, "
        f"{r['duplicates']} duplicates, {r['behind']} clients behind at the end",
        f"  publishing         {r['published']:,} acknowledged, {r['publish_failures']:,} "
        "failed (while the hub was down)",
    ])


def _alive(pid: int) -> bool:
    """The process runs (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--rate", type=float, default=50.0,
                        help="messages/s published during the run (default 50)")
    parser.add_argument("--workers", type=int, default=1, help="hub processes (default 1)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds of publishing before the kill (default 3)")
    parser.add_argument("--timeout", type=float, default=90.0,
                        help="seconds after ready to wait for every client (default 90)")
    parser.add_argument("--backoff", type=lambda t: [float(x) for x in t.split(",")],
                        default=[1.0, 2.0, 4.0, 8.0, 16.0, 30.0],
                        help="the clients' reconnect schedule in seconds (default: the "
                             "Python client's, 1,2,4,8,16,30)")
    parser.add_argument("--connect-concurrency", type=int, default=200,
                        help="handshakes at once while the subscribers are first opened")
    parser.add_argument("--set", action="append", metavar="NAME=VALUE",
                        help="a hub setting (ROOMLOG_<NAME>), e.g. --set read_concurrency=8")
    parser.add_argument("--server-core", default="0",
                        help="core(s) for the hub, taskset syntax (default 0)")
    parser.add_argument("--gen-core", type=int, default=1, help="core for this generator (1)")
    parser.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", metavar="PATH", help="write the options and figures as JSON")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.gen_core})
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: where is it stuck?
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="storm-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(report(result))
    if args.json:
        document = {"tool": "storm", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "options": {k: v for k, v in vars(args).items() if k != "json"},
                    "results": [result]}
        Path(args.json).write_text(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        say(f"results written to {args.json}")
    bad = result["not_resumed"] or result["errors"] or result["gaps"] or result["behind"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
