"""Paid submits beside free ones: the ``paid`` step of ``loadtest/queue.py``.

On its own hub (the command hook of ``request.submit`` configured, so the other
phases are not hooked), with the test payment provider and the operator's backend
(``tests/payments``) as processes on this machine, pinned to the generator's core:

1. ``--paid-guests`` guests connect over WebSocket (they do not subscribe: the
   phase measures the write path, hook included, not fan-out);
2. **free**: a room with no price; submits are sent open loop at ``--paid-rate`` for
   ``--paid-seconds`` (each from the next idle guest, one in flight per guest);
3. **paid**: a room with a price: the provider issued one reference per submit
   before the clock starts (not measured), then the same load, each submit
   carrying its reference: the hub probes the room, asks the backend (which
   captures at the provider), then commits.

Figures per room: submits answered, ok / rejected, submits/s, round trip (send to
ack) p50 / p99 / max. Rate x seconds must stay within the room's hourly cap (1,000).
The target: at least 300 paid submits/s with p99 under 150 ms.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from common import Buffer, RawClient, proc_cpu_times
from harness import (
    SUBPROTOCOL,
    latency_ms,
    open_many,
    say,
    session,
    start_profiler,
    stop_profiler,
)
from servers import HOST, Server, free_port, hub_argv, hub_token

ROOT = Path(__file__).resolve().parents[1]
PAID_TARGET_RATE = 300.0
PAID_TARGET_P99_MS = 150.0
PRICE = 100
_ANSWER_TIMEOUT = 30.0
_HOOK_TIMEOUT = 5.0
ROOM_SETTINGS = {"request_cap_per_hour": 1000, "max_active_per_guest": 50, "submit_rate": 60}


@dataclass
class PaidResult:
    db: str
    phase: str  # "free" or "paid"
    sent: int
    ok: int
    rejected: dict[str, int]
    per_s: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    problems: list[str] = field(default_factory=list)
    gen_core: float = 0.0  # not metered here (finish() reads it)
    # CPU ms per submit answered (/proc/<pid>/stat user + system over the phase) of the
    # hub, the backend and the provider: robust on a shared machine, unlike the round trip
    hub_cpu_ms: float | None = None
    backend_cpu_ms: float | None = None
    provider_cpu_ms: float | None = None


class Payer:
    """One guest connection: one submit in flight, its answer found by id."""

    def __init__(self, index: int, client: RawClient) -> None:
        self.user = f"payer-{index}"
        self.client = client
        self.ident = ""
        self.sent_ns = 0
        self.done: asyncio.Future[dict[str, Any]] | None = None
        self.n = 0
        client.on_payload = self.on_payload

    def on_payload(self, buf: Buffer, start: int, end: int) -> None:
        obj = orjson.loads(memoryview(buf)[start:end])
        for item in obj if isinstance(obj, list) else (obj,):
            if (item.get("type") in ("ack", "error") and item.get("id") == self.ident
                    and self.done is not None and not self.done.done()):
                self.done.set_result(item)

    def submit(self, room: str, reference: str | None) -> asyncio.Future[dict[str, Any]]:
        self.n += 1
        self.ident = f"{self.user}-{self.n}-{secrets.token_hex(3)}"
        args: dict[str, Any] = {"song_id": f"{self.user}-{self.n}", "title": "T", "artist": "A"}
        if reference is not None:
            args["payment"] = {"reference": reference}
        self.done = asyncio.get_running_loop().create_future()
        self.sent_ns = time.perf_counter_ns()
        self.client.send_json({"type": "command", "id": self.ident, "room": room,
                               "name": "request.submit", "args": args})
        return self.done


async def _command(client: RawClient, room: str, name: str, args: dict[str, Any]) -> None:
    client.send_json({"type": "command", "id": secrets.token_hex(6), "room": room,
                      "name": name, "args": args})
    async with asyncio.timeout(_ANSWER_TIMEOUT):
        answer = await client.expect("ack")
    assert answer.get("type") == "ack", answer


async def _load(payers: list[Payer], room: str, rate: float, seconds: float,
                references: list[str] | None) -> tuple[list[int], dict[str, int], int, float]:
    """Open loop: one submit every 1/rate s from the next idle payer."""
    idle = list(payers)
    latencies: list[int] = []
    rejected: dict[str, int] = {}
    pending: set[asyncio.Task[None]] = set()
    total = int(rate * seconds)
    skipped = 0

    async def one(payer: Payer, reference: str | None) -> None:
        answer = await asyncio.wait_for(payer.submit(room, reference), _ANSWER_TIMEOUT)
        latencies.append(time.perf_counter_ns() - payer.sent_ns)
        if answer["type"] == "error":
            code = answer["error"]["code"] if "error" in answer else answer.get("code", "?")
            rejected[code] = rejected.get(code, 0) + 1
        idle.append(payer)

    loop = asyncio.get_running_loop()
    begin = loop.time()
    for i in range(total):
        delay = begin + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if not idle:
            skipped += 1
            continue
        payer = idle.pop(0)
        task = asyncio.create_task(one(payer, None if references is None else references[i]))
        pending.add(task)
        task.add_done_callback(pending.discard)
    sent_for = loop.time() - begin
    if pending:
        await asyncio.gather(*pending)
    elapsed = max(sent_for, loop.time() - begin)
    return latencies, rejected, skipped, elapsed


def _result(db: str, phase: str, latencies: list[int], rejected: dict[str, int],
            skipped: int, elapsed: float, cpu: list[float]) -> PaidResult:
    count, p50, p99, top = latency_ms(latencies)
    ok = count - sum(rejected.values())
    problems = [f"{skipped} submits not sent: every guest was waiting"] if skipped else []
    if rejected:
        problems.append(f"rejected: {rejected}")
    hub, backend, provider = (s * 1000 / count if count else None for s in cpu)
    return PaidResult(db, phase, count, ok, rejected, count / elapsed if elapsed else 0.0,
                      p50, p99, top, problems, hub_cpu_ms=hub, backend_cpu_ms=backend,
                      provider_cpu_ms=provider)


def _stages(before: dict[str, float], after: dict[str, float], submits: int) -> str:
    """Where a submit's time went, from the hub's metrics over the phase: the mean hook
    call and commit transaction, and submits per commit."""
    def delta(name: str) -> float:
        return sum(v for k, v in after.items() if k.startswith(name)) - sum(
            v for k, v in before.items() if k.startswith(name))

    hooks, commits = delta("roomlog_hook_seconds_count"), delta("roomlog_log_append_seconds_count")
    hook_ms = delta("roomlog_hook_seconds_sum") * 1000 / hooks if hooks else 0.0
    commit_ms = delta("roomlog_log_append_seconds_sum") * 1000 / commits if commits else 0.0
    per = submits / commits if commits else 0.0
    return (f"hook calls {hooks:.0f}, mean {hook_ms:.1f} ms; commits {commits:.0f} "
            f"({per:.1f} submits each), mean {commit_ms:.1f} ms")


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process so far."""
    return sum(proc_cpu_times(pid))


async def run_paid(args: Any, db: str, workdir: Path) -> list[PaidResult]:
    """The paid step on one database (see the module docstring)."""
    args.side_core = None if args.paid_unpinned else args.gen_core
    from roomlog.signing import new_secret

    secret = new_secret()
    provider_port, backend_port, port = free_port(), free_port(), free_port()
    base = f"http://{HOST}:{provider_port}"
    procs = [
        Server("provider", [sys.executable, "-m", "tests.payments.provider", "--port",
                            str(provider_port)], provider_port, workdir, core=args.side_core,
               ready_path="/health", env={"PYTHONPATH": str(ROOT)}),
        Server("backend", [sys.executable, "-m", "tests.payments.backend", "--port",
                           str(backend_port), "--provider", base, "--provider-timeout", "4"],
               backend_port, workdir, core=args.side_core, ready_path="/health",
               env={"PYTHONPATH": str(ROOT), "SONGAPP_HOOK_SECRET": secret,
                    "SONGAPP_TOKEN": hub_token("songapp", role="service")}),
    ]
    try:
        for proc in procs:
            await proc.ready()
        backends = workdir / "backends.json"
        backends.write_bytes(orjson.dumps({"backends": [{"name": "songapp", "hooks": [{
            "on": ["queue:request.submit"], "url": f"http://{HOST}:{backend_port}/hook",
            "secret": secret, "timeout": _HOOK_TIMEOUT}]}]}))
        async with session(args, workdir) as s:
            env = await s.hub_env(db, f"paid-{db}")
            env["ROOMLOG_BACKENDS_FILE"] = str(backends)
            await s.start(f"paid-{db}", hub_argv(port), port, env)
            payers = await open_many(args.paid_guests, 50, lambda i: _payer(s, port, i),
                                     _close_payer)
            dj = await s.connect(port, hub_token("dj-paid", role="dj"))
            rooms = {"free": f"queue:paid-free-{secrets.token_hex(3)}",
                     "paid": f"queue:paid-paid-{secrets.token_hex(3)}"}
            await _command(dj, rooms["free"], "queue.settings", ROOM_SETTINGS)
            await _command(dj, rooms["paid"], "queue.settings", {**ROOM_SETTINGS,
                                                                  "price": PRICE})
            results = []
            total = int(args.paid_rate * args.paid_seconds)
            async with httpx.AsyncClient(timeout=10.0) as http:
                references = [str((await http.post(f"{base}/payments", json={
                    "amount": PRICE, "currency": "EUR"})).json()["reference"])
                    for _ in range(total)]
            metered = [s.server.pid if s.server is not None else 0,
                       procs[1].pid, procs[0].pid]  # hub, backend, provider
            for phase in ("free", "paid"):
                refs = references if phase == "paid" else None
                before = await s.server.metrics() if s.server is not None else {}
                cpu0 = [_cpu(pid) for pid in metered]
                profiler = (start_profiler(args, metered[0], f"paid-{db}", args.paid_seconds)
                            if phase == "paid" else None)
                latencies, rejected, skipped, elapsed = await _load(
                    payers, rooms[phase], args.paid_rate, args.paid_seconds, refs)
                cpu = [_cpu(pid) - before for pid, before in zip(metered, cpu0, strict=True)]
                await stop_profiler(profiler)
                result = _result(db, phase, latencies, rejected, skipped, elapsed, cpu)
                say(f"   {phase:>4} submits: {result.sent} in {elapsed:.1f}s = "
                    f"{result.per_s:,.0f}/s, ok {result.ok}, p50 {_ms(result.p50_ms)}, "
                    f"p99 {_ms(result.p99_ms)}, max {_ms(result.max_ms)} ms, CPU per submit: "
                    f"hub {_ms(result.hub_cpu_ms, 2)}, backend "
                    f"{_ms(result.backend_cpu_ms, 2)}, provider "
                    f"{_ms(result.provider_cpu_ms, 2)} ms")
                results.append(result)
                if s.server is not None:
                    say("        " + _stages(before, await s.server.metrics(), result.sent))
            return results
    finally:
        for proc in procs:
            await proc.stop()


async def _payer(s: Any, port: int, index: int) -> Payer:
    client = await RawClient.open(HOST, port, subprotocol=SUBPROTOCOL)
    s.closers.append(client.close)
    client.send_json({"type": "connect", "token": hub_token(f"payer-{index}", role="guest")})
    await client.expect("connected")
    return Payer(index, client)


async def _close_payer(payer: Payer) -> None:
    await payer.client.close()


def _ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def paid_table(results: list[PaidResult]) -> str:
    lines = ["db        submits  sent   ok   per_s   p50_ms   p99_ms   max_ms  hub_cpu_ms",
             "--------  -------  ----  ----  ------  -------  -------  -------  ----------"]
    for r in results:
        lines.append(f"{r.db:<8}  {r.phase:<7}  {r.sent:>4}  {r.ok:>4}  {r.per_s:>6.0f}  "
                     f"{_ms(r.p50_ms):>7}  {_ms(r.p99_ms):>7}  {_ms(r.max_ms):>7}  "
                     f"{_ms(r.hub_cpu_ms, 2):>10}")
    return "\n".join(lines)


def paid_targets(results: list[PaidResult]) -> list[str]:
    lines = []
    for r in results:
        if r.phase != "paid":
            continue
        met = (r.per_s >= PAID_TARGET_RATE * 0.98 and r.p99_ms is not None
               and r.p99_ms < PAID_TARGET_P99_MS and r.ok == r.sent)
        lines.append(f"target {r.db}: >= {PAID_TARGET_RATE:.0f} paid submits/s with p99 < "
                     f"{PAID_TARGET_P99_MS:.0f} ms (hook included): "
                     f"{'met' if met else 'NOT met'} ({r.per_s:.0f}/s, p99 {_ms(r.p99_ms)} ms)")
    return lines
