"""Webhook delivery under load: one hub, a real receiver, real sockets.

It starts a hub (SQLite by default, ``--db postgres`` for a fresh PostgreSQL
database) and a receiver process (loadtest/webhook_receiver.py, a lean HTTP/1.1
server that answers 204, or 500 for a chosen share of requests), creates one
webhook endpoint for ``chat:wh-*`` and drives the hub over WebSockets:

latency phases (``--rate`` publishes/s over ``--rooms`` rooms for ``--duration`` s; every
room got one message before the first phase, so no phase pays for making rooms)
    * ``fanout alone``: rooms no endpoint follows. WebSocket fan-out latency (publish
      to receipt by ``--subscribers`` subscribers, spread over the rooms): the
      baseline of this run.
    * ``webhooks healthy``: the endpoint enabled; the same fan-out latency, and
      webhook commit-to-receipt (receipt time minus the message's commit ``ts``,
      which has millisecond resolution) p50/p99.
    * ``webhooks 10% failing``: the receiver answers 500 to a tenth of the
      requests (retried after the backoff, ``ROOMLOG_WEBHOOK_RETRY_BASE``).
throughput phases (for each ``--batch``, healthy and 10% failing)
    The endpoint is disabled, ``--backlog`` messages are published, the endpoint is
    enabled: events/s delivered = messages / (last receipt - first receipt).

Every phase waits until the receiver has every message (lost ones are reported)
and counts duplicates and bad signatures (every 20th request is verified).
``--json PATH`` writes the figures. ``--timeline PATH`` runs the hub under
loadtest/traced_hub.py and prints, for each webhook latency phase, where a message's
time went (the commit, the wait for the room's earlier deliveries, the request) with
the collector's pauses and the cursor flushes. Only loopback addresses are used.

Example: ``python loadtest/webhooks.py --json webhooks.json`` (about a minute).
"""

from __future__ import annotations

import sys

# loadtest/queue.py shares its name with the standard library's ``queue``, which
# asyncio's thread pool imports: put this folder after the standard library.
sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from common import CpuMeter, RawClient, percentile
from servers import (
    HOST,
    PgDatabase,
    Server,
    free_port,
    hub_argv,
    hub_env,
    hub_token,
    kill_children,
    migrate,
)

from roomlog.signing import new_secret

HERE = Path(__file__).resolve().parent
DRAIN_TIMEOUT = 120.0  # seconds for the receiver to get every message of a phase
ACK_MARK = b'"type":"ack"'


def quantiles(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    scaled = [int(v * 1000) for v in ordered]  # percentile() takes integers: microseconds
    return {"n": len(ordered), "p50": percentile(scaled, 0.5) / 1000,
            "p99": percentile(scaled, 0.99) / 1000, "max": ordered[-1]}


class Publisher:
    """One WebSocket connection publishing with a bounded window of unacknowledged frames."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.acked = 0
        self.sent = 0
        self.changed = asyncio.Event()
        client.on_payload = self._payload

    def _payload(self, buf: Any, start: int, end: int) -> None:
        self.acked += buf.count(ACK_MARK, start, end)
        self.changed.set()

    def publish(self, room: str) -> None:
        self.sent += 1
        self.client.send_json({"type": "publish", "room": room, "id": f"p{self.sent}",
                               "data": {"t": time.time_ns()}})

    async def wait_acked(self, count: int) -> None:
        while self.acked < count:
            self.changed.clear()
            await self.changed.wait()


class Subscriber:
    def __init__(self, client: RawClient) -> None:
        self.latencies: list[float] = []
        self.armed = False
        client.on_payload = self._payload

    def _payload(self, buf: Any, start: int, end: int) -> None:
        now = time.time_ns()
        if not self.armed:
            return
        frames = orjson.loads(bytes(buf[start:end]))
        for frame in frames if isinstance(frames, list) else [frames]:
            if frame.get("type") == "message" and isinstance(frame.get("data"), dict):
                sent = frame["data"].get("t")
                if isinstance(sent, int):
                    self.latencies.append((now - sent) / 1e6)


async def open_ws(port: int, token: str) -> RawClient:
    client = await RawClient.open(HOST, port)
    client.send_json({"type": "connect", "token": token})
    await client.expect("connected")
    return client


class Bench:
    def __init__(self, args: argparse.Namespace, hub: Server, receiver: Server,
                 http: httpx.AsyncClient, token: str) -> None:
        self.args = args
        self.hub = hub
        self.receiver = receiver
        self.http = http
        self.auth = {"authorization": f"Bearer {token}"}
        self.token = token
        self.rooms = [f"chat:wh-{i}" for i in range(args.rooms)]
        # the baseline's rooms: no endpoint follows them, so their messages are never a
        # backlog of the webhook phases
        self.base_rooms = [f"chat:base-{i}" for i in range(args.rooms)]
        self.webhook = ""
        self.published = 0
        self.windows: dict[str, tuple[int, int]] = {}  # phase -> perf_counter_ns span

    @property
    def hub_url(self) -> str:
        return f"http://{HOST}:{self.hub.port}"

    @property
    def receiver_url(self) -> str:
        return f"http://{HOST}:{self.receiver.port}"

    async def setup(self, secret: str) -> None:
        reply = await self.http.post(f"{self.hub_url}/v1/admin/webhooks", headers=self.auth,
                                     json={"url": f"{self.receiver_url}/hook",
                                           "rooms": ["chat:wh-*"], "secret": secret,
                                           "enabled": False})
        reply.raise_for_status()
        self.webhook = reply.json()["webhook"]["id"]
        self.publisher = Publisher(await open_ws(self.hub.port, self.token))
        self.subscribers = []
        for i in range(self.args.subscribers):
            client = await open_ws(self.hub.port, hub_token(f"sub{i}", role="guest"))
            for rooms in (self.rooms, self.base_rooms):
                client.send_json({"type": "subscribe", "room": rooms[i % len(rooms)]})
                await client.expect("subscribed")
            self.subscribers.append(Subscriber(client))

    async def make_rooms(self) -> None:
        """Every room's first message, before the latency phases: a room's first write
        makes its row (the general transaction, several round trips), which a phase
        would otherwise count in its p99 (32 rooms made at once: commits of 20-35 ms
        for about 200 ms on PostgreSQL, seen with --timeline). The endpoint is disabled;
        it delivers these when enabled, before the phase's window opens."""
        for room in (*self.rooms, *self.base_rooms):
            self.publisher.publish(room)
        await self.publisher.wait_acked(self.publisher.sent)

    async def endpoint(self, **change: Any) -> None:
        reply = await self.http.patch(f"{self.hub_url}/v1/admin/webhooks/{self.webhook}",
                                      headers=self.auth, json=change)
        reply.raise_for_status()

    async def reset_receiver(self, fail: float) -> None:
        reply = await self.http.post(f"{self.receiver_url}/reset", params={"fail": fail})
        reply.raise_for_status()

    async def receiver_stats(self) -> dict[str, Any]:
        reply = await self.http.get(f"{self.receiver_url}/stats")
        reply.raise_for_status()
        stats: dict[str, Any] = reply.json()
        return stats

    async def drain(self, expected: int) -> dict[str, Any]:
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            stats = await self.receiver_stats()
            if stats["messages"] >= expected or time.monotonic() > deadline:
                return stats
            await asyncio.sleep(0.1)

    async def paced(self, rate: float, duration: float, rooms: list[str]) -> int:
        """Publish ``rate``/s round-robin over ``rooms``; how many were published."""
        loop = asyncio.get_running_loop()
        begin, count = loop.time(), int(rate * duration)
        for i in range(count):
            delay = begin + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.publisher.publish(rooms[i % len(rooms)])
        await self.publisher.wait_acked(self.publisher.sent)
        return count

    async def latency_phase(self, name: str, *, enabled: bool, fail: float) -> dict[str, Any]:
        await self.endpoint(enabled=enabled, batch_max=1)
        await asyncio.sleep(1.0)  # the deliverer takes the lease and catches up
        before = await self.receiver_stats()
        await self.reset_receiver(fail)
        for sub in self.subscribers:
            sub.latencies, sub.armed = [], True
        meter = CpuMeter([self.hub.pid])
        meter.start()
        started = time.monotonic()
        window_start = time.perf_counter_ns()
        published = await self.paced(self.args.rate, self.args.duration,
                                     self.rooms if enabled else self.base_rooms)
        self.windows[name] = (window_start, time.perf_counter_ns())
        await asyncio.sleep(0.5)  # the last fan-out deliveries
        for sub in self.subscribers:
            sub.armed = False
        fanout = quantiles([v for s in self.subscribers for v in s.latencies])
        result: dict[str, Any] = {"phase": name, "rate": self.args.rate, "published": published,
                                  "fanout_ms": fanout}
        if enabled:
            stats = await self.drain(published)
        cpu = meter.stop()
        result["hub_cpu_pct"] = cpu
        result["hub_cpu_us_per_message"] = cpu / 100 * (time.monotonic() - started) / \
            published * 1e6
        if enabled:
            result.update(self._webhook_figures(stats, published))
        del before
        return result

    def _webhook_figures(self, stats: dict[str, Any], expected: int) -> dict[str, Any]:
        return {"delivered": stats["messages"], "lost": max(0, expected - stats["messages"]),
                "requests": stats["requests"], "failed_requests": stats["failed"],
                "duplicates": stats["duplicates"], "bad_signatures": stats["bad_signatures"],
                "commit_to_receipt_ms": quantiles(stats["commit_ms"]),
                "publish_to_receipt_ms": quantiles(stats["publish_ms"])}

    async def throughput_phase(self, batch: int, fail: float) -> dict[str, Any]:
        await self.endpoint(enabled=False, batch_max=batch)
        await asyncio.sleep(0.5)
        window = 200
        total = self.args.backlog
        for start in range(0, total, window):
            for i in range(start, min(total, start + window)):
                self.publisher.publish(self.rooms[i % len(self.rooms)])
            await self.publisher.wait_acked(self.publisher.sent)
        await self.reset_receiver(fail)
        meter = CpuMeter([self.hub.pid])
        meter.start()
        started = time.monotonic()
        await self.endpoint(enabled=True)
        stats = await self.drain(total)
        cpu = meter.stop()
        seconds = max(1e-9, (stats["last_ns"] - stats["first_ns"]) / 1e9)
        return {"phase": f"throughput batch={batch} fail={fail:.0%}", "batch_max": batch,
                "fail": fail, "backlog": total, "events_per_s": stats["messages"] / seconds,
                "seconds": seconds, "hub_cpu_pct": cpu,
                "hub_cpu_us_per_message": cpu / 100 * (time.monotonic() - started) / total * 1e6,
                **self._webhook_figures(stats, total)}


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="roomlog-webhooks-", dir=args.workdir))
    pg: PgDatabase | None = None
    servers: list[Server] = []
    try:
        if args.db == "postgres":
            pg = PgDatabase(args.pg_dsn)
            await pg.create()
            url = pg.url
        else:
            url = f"sqlite+aiosqlite:///{workdir}/hub.db"
        env = hub_env(url, ROOMLOG_WEBHOOK_ALLOW_PRIVATE="true",
                      ROOMLOG_WEBHOOK_RETRY_BASE=str(args.retry_base),
                      ROOMLOG_WEBHOOK_RETRY_MAX="2", ROOMLOG_MAX_INFLIGHT="1000")
        if pg is not None:
            await migrate(env)
        secret = new_secret()
        receiver_port, hub_port = free_port(), free_port()
        receiver = Server("receiver", [sys.executable, str(HERE / "webhook_receiver.py"),
                                       "--port", str(receiver_port), "--secret", secret],
                          receiver_port, workdir, ready_path="/ready",
                          core=1 if args.pin else None)
        servers.append(receiver)
        argv = hub_argv(hub_port)
        if args.timeline:  # the hub's own code, with clocks (loadtest/traced_hub.py)
            argv = [argv[0], str(HERE / "traced_hub.py"), *argv[3:]]
            env["ROOMLOG_TIMELINE"] = args.timeline
        if args.profile:  # cProfile writes its statistics when the hub stops (SIGINT)
            argv = [argv[0], "-m", "cProfile", "-o", args.profile, *argv[1:]]
        hub = Server("hub", argv, hub_port, workdir, env=env, core=0 if args.pin else None)
        servers.append(hub)
        await asyncio.gather(receiver.ready(), hub.ready())
        async with httpx.AsyncClient(timeout=30.0) as http:
            bench = Bench(args, hub, receiver, http, hub_token("bench"))
            await bench.setup(secret)
            results = []
            if args.only != "throughput":
                await bench.make_rooms()
                results += [
                    await bench.latency_phase("fanout alone (rooms no webhook follows)",
                                              enabled=False, fail=0.0),
                    await bench.latency_phase("webhooks healthy", enabled=True, fail=0.0),
                    await bench.latency_phase("webhooks 10% failing", enabled=True, fail=0.1),
                ]
            if args.only != "latency":
                for batch in args.batch:
                    for fail in (0.0, 0.1):
                        results.append(await bench.throughput_phase(batch, fail))
    finally:
        for srv in servers:
            await srv.stop()
        if pg is not None:
            await pg.drop()
        kill_children()
    if args.timeline:
        timeline(Path(args.timeline), bench.windows)
    return results


def timeline(path: Path, windows: dict[str, tuple[int, int]]) -> None:
    """Print where a webhook message's time went in each latency phase with webhooks."""
    from traced_hub import webhook_stages

    if not path.exists():
        print(f"!! no timeline at {path} (the hub did not exit cleanly)")
        return
    data = orjson.loads(path.read_bytes())
    marks = [tuple(m) for m in data["marks"]]
    for phase, (start, end) in windows.items():
        stages = webhook_stages(marks, start, end, data["wall_offset_ns"])  # type: ignore[arg-type]
        if not stages[next(iter(stages))]:
            continue
        print(f"timeline, {phase} ({path}):")
        for name, values in stages.items():
            q = quantiles(values)
            print(f"  {name:<68} n {q['n']:>5}  p50 {fmt(q['p50']):>6}  p99 {fmt(q['p99']):>6}"
                  f"  max {fmt(q['max']):>6} ms")


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(results: list[dict[str, Any]]) -> None:
    for r in results:
        line = f"{r['phase']:<40}"
        if "events_per_s" in r:
            line += f" {r['events_per_s']:>8.0f} events/s delivered"
        line += (f" | hub cpu {r['hub_cpu_pct']:.0f}%, "
                 f"{r['hub_cpu_us_per_message']:.0f} us/msg")
        if "fanout_ms" in r:
            f = r["fanout_ms"]
            line += f" | ws fan-out p50 {fmt(f['p50'])} p99 {fmt(f['p99'])} ms"
        if "commit_to_receipt_ms" in r:
            c = r["commit_to_receipt_ms"]
            line += f" | webhook commit->receipt p50 {fmt(c['p50'])} p99 {fmt(c['p99'])} ms"
            line += (f" | lost {r['lost']} dup {r['duplicates']} 500s {r['failed_requests']}"
                     f" badsig {r['bad_signatures']}")
        print(line, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server (loopback) that gets a fresh database")
    parser.add_argument("--rooms", type=int, default=32)
    parser.add_argument("--rate", type=float, default=500.0, help="publishes/s, latency phases")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per latency phase")
    parser.add_argument("--backlog", type=int, default=20_000,
                        help="messages per throughput phase")
    parser.add_argument("--batch", type=lambda v: [int(b) for b in v.split(",")],
                        default=[1, 100], help="batch_max values to measure, e.g. 1,100")
    parser.add_argument("--subscribers", type=int, default=32)
    parser.add_argument("--retry-base", type=float, default=0.05,
                        help="ROOMLOG_WEBHOOK_RETRY_BASE of the hub (seconds)")
    parser.add_argument("--pin", action="store_true",
                        help="pin the hub to core 0 and the receiver to core 1")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--timeline", metavar="PATH",
                        help="run the hub under loadtest/traced_hub.py, its marks written to "
                             "PATH; print each webhook phase's stages")
    parser.add_argument("--profile", metavar="PATH",
                        help="run the hub under cProfile, its statistics written to PATH")
    parser.add_argument("--nice", type=int, metavar="N",
                        help="run this tool, the hub and the receiver at this niceness (a "
                             "negative one needs root): on a machine busy with other work, "
                             "measures the hub rather than the scheduler")
    parser.add_argument("--workdir", help="where the SQLite file and the logs go (default: "
                                          "the temporary directory; /dev/shm keeps a busy "
                                          "disk out of the figures)")
    parser.add_argument("--only", choices=["latency", "throughput"],
                        help="run only these phases")
    args = parser.parse_args()
    if args.nice is not None:  # the hub and the receiver inherit it
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    if args.timeline:  # the hub runs in another directory
        args.timeline = os.path.abspath(args.timeline)
    started = time.time()
    results = asyncio.run(run(args))
    report(results)
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(
            {"tool": "webhooks", "started": started, "args": vars(args), "results": results},
            option=orjson.OPT_INDENT_2))
    problems = [r["phase"] for r in results if r.get("lost") or r.get("bad_signatures")]
    if problems:
        print("PROBLEMS (lost messages or bad signatures):", ", ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
