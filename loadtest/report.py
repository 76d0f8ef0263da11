"""Results of the load tests and how they are printed.

Fan-out (loadtest/fanout.py): :class:`PhaseResult` holds the figures of one
phase of one target; :func:`describe` is its one-line account, :func:`table`
the final table, :func:`summary` the ratios to the baseline and the issue's
targets (medians over ``--repeat`` runs), :func:`memory_line` the server's
memory per connection.

Queue room (loadtest/queue.py): :class:`QueueResult`, :func:`describe_queue`,
:func:`queue_table` and :func:`queue_targets` likewise.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "GEN_BOUND",
    "TARGET_P99_MS",
    "TARGET_RATE",
    "Outcome",
    "PhaseResult",
    "QueueResult",
    "describe",
    "describe_queue",
    "fmt_ms",
    "memory_line",
    "queue_table",
    "queue_targets",
    "render_table",
    "summary",
    "table",
    "verdict",
]

GEN_BOUND = 85.0  # % of its core: above this the generator may be what limits a phase
TARGET_RATE = 1000.0  # commands/s into one queue room on PostgreSQL ...
TARGET_P99_MS = 50.0  # ... with p99 round trip under this (issue 13; 100 before)


class Outcome(Protocol):
    """What every result has: its problems and how busy the generator's core was."""

    problems: list[str]
    gen_core: float


@dataclass
class PhaseResult:
    target: str
    db: str
    phase: str
    run: int = 1
    deliveries: float = 0.0  # per second
    publishes: float = 0.0  # per second
    per_frame: float = 0.0
    bytes_per_msg: float = 0.0
    p50: float | None = None  # milliseconds
    p99: float | None = None
    max: float | None = None
    samples: int = 0
    ack_p50: float | None = None  # publish-to-ack, milliseconds
    ack_p99: float | None = None
    server_cpu: float = 0.0
    server_sys: float = 0.0  # the kernel's share of server_cpu
    gen_cpu: float = 0.0
    gen_sys: float = 0.0
    db_cpu: float | None = None
    server_core: float = 0.0  # how busy the server's core was (%), whoever ran there
    gen_core: float = 0.0
    softirq: float = 0.0  # softirq share of the server's core (%): loopback TCP, no process
    steal: float = 0.0  # hypervisor steal on both cores (%): machine noise
    kib_per_conn: float | None = None  # server RSS growth per subscriber connection (KiB)
    offered: float | None = None  # deliveries/s offered (latency phase: rate x subscribers)
    problems: list[str] = field(default_factory=list)


def fmt_ms(value: float | None) -> str:
    """Milliseconds for a table cell: '-' for none, one decimal under 100."""
    return "-" if value is None else f"{value:.1f}ms" if value < 100 else f"{value:.0f}ms"


def memory_line(rss_before_kib: int, rss_after_kib: int, connections: int) -> str:
    """'server memory: +X MiB for N connections = Y KiB per connection'."""
    delta = rss_after_kib - rss_before_kib
    plural = "" if connections == 1 else "s"
    return (f"server memory: {delta / 1024:+.1f} MiB for {connections} connection{plural} = "
            f"{delta / max(1, connections):.1f} KiB per connection")


def describe(r: PhaseResult) -> str:
    text = (f"{r.phase}: {r.deliveries:,.0f} deliveries/s, {r.publishes:,.0f} pub/s, "
            f"{r.per_frame:.1f} msgs/frame, {r.bytes_per_msg:.0f} B/msg; "
            f"latency p50 {fmt_ms(r.p50)} p99 {fmt_ms(r.p99)} max {fmt_ms(r.max)} "
            f"({r.samples} samples); ack p50 {fmt_ms(r.ack_p50)} p99 {fmt_ms(r.ack_p99)}; "
            f"cpu server {r.server_cpu:.0f}% (sys {r.server_sys:.0f}%) "
            f"gen {r.gen_cpu:.0f}% (sys {r.gen_sys:.0f}%)")
    if r.db_cpu is not None:
        text += f" postgres {r.db_cpu:.0f}%"
    text += (f"; cores busy: server's {r.server_core:.0f}% (softirq {r.softirq:.0f}%), "
             f"generator's {r.gen_core:.0f}%; steal {r.steal:.1f}%")
    return text


def verdict(r: Outcome) -> str:
    """'yes'; 'NO' if deliveries went wrong; 'GEN' if the generator's core was saturated."""
    if r.problems:
        return "NO"
    return "GEN" if r.gen_core > GEN_BOUND else "yes"


def table(results: list[PhaseResult], repeat: int) -> str:
    head = ["target", "db", "phase", "deliveries/s", "msgs/frame", "pub/s", "p50", "p99",
            "max", "server-cpu", "gen-cpu", "pg-cpu", "core0", "core1", "KiB/conn", "ok"]
    if repeat > 1:
        head.insert(3, "run")
    rows = [head]
    for r in results:
        row = [r.target, r.db, r.phase, f"{r.deliveries:,.0f}", f"{r.per_frame:.1f}",
               f"{r.publishes:,.0f}", fmt_ms(r.p50), fmt_ms(r.p99), fmt_ms(r.max),
               f"{r.server_cpu:.0f}%", f"{r.gen_cpu:.0f}%",
               "-" if r.db_cpu is None else f"{r.db_cpu:.0f}%",
               f"{r.server_core:.0f}%", f"{r.gen_core:.0f}%",
               "-" if r.kib_per_conn is None else f"{r.kib_per_conn:.1f}", verdict(r)]
        if repeat > 1:
            row.insert(3, str(r.run))
        rows.append(row)
    return render_table(rows, left=3)


def render_table(rows: list[list[str]], left: int) -> str:
    """Rows of cells (the first one the header) as aligned columns: the first ``left``
    columns left-aligned, the others (figures) right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(w) if i < left else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summary(args: argparse.Namespace, results: list[PhaseResult]) -> list[str]:
    """Ratios to the baseline and the issue's targets, on medians over the runs."""

    def pick(target: str, db: str, phase: str) -> list[PhaseResult]:
        return [r for r in results if (r.target, r.db, r.phase) == (target, db, phase)]

    def rate(rs: list[PhaseResult]) -> float:
        return _median([r.deliveries for r in rs])

    def p99(rs: list[PhaseResult]) -> float:
        return _median([r.p99 for r in rs if r.p99 is not None])

    note = f" (median of {args.repeat} runs)" if args.repeat > 1 else ""
    lines = []
    def at(rs: list[PhaseResult], offered: float) -> list[PhaseResult]:
        return [r for r in rs if r.offered == offered]

    def p50(rs: list[PhaseResult]) -> float:
        return _median([r.p50 for r in rs if r.p50 is not None])

    rates = [rate_ * args.subscribers for rate_ in getattr(args, "rates", [args.rate])]
    base_tp, base_lat = pick("baseline", "-", "throughput"), pick("baseline", "-", "latency")
    for db in ("sqlite", "postgres"):
        tp, lat = pick("hub", db, "throughput"), pick("hub", db, "latency")
        if tp and base_tp and rate(base_tp):
            lines.append(f"hub/{db} vs baseline: throughput x{rate(tp) / rate(base_tp):.2f} "
                         f"({rate(tp):,.0f} vs {rate(base_tp):,.0f} deliveries/s){note}")
        for offered in rates:
            mine, base = at(lat, offered), at(base_lat, offered)
            if mine and base and p99(mine) and p99(base):
                lines.append(f"hub/{db} vs baseline at {offered:,.0f} deliveries/s: latency "
                             f"p99 x{p99(mine) / p99(base):.2f} ({fmt_ms(p99(mine))} vs "
                             f"{fmt_ms(p99(base))}){note}")
    for db in ("sqlite", "postgres"):  # issue 13's targets
        lat = pick("hub", db, "latency")
        for offered, want50, want99 in ((20_000, 8.0, 15.0), (100_000, None, 30.0)):
            mine = at(lat, offered)
            if not mine or not p99(mine):
                continue
            ok = p99(mine) < want99 and (want50 is None or p50(mine) < want50) and not any(
                r.problems for r in mine)
            wanted = (f"p50 < {want50:g} ms and " if want50 else "") + f"p99 < {want99:g} ms"
            lines.append(f"target {wanted} at {offered:,} deliveries/s ({db}): "
                         f"{'MET' if ok else 'NOT MET'} (p50 {fmt_ms(p50(mine))}, p99 "
                         f"{fmt_ms(p99(mine))}, server cpu "
                         f"{_median([r.server_cpu for r in mine]):.0f}%){note}")
    tp = pick("hub", "postgres", "throughput")
    if tp:
        ok = rate(tp) >= 200_000 and not any(r.problems for r in tp)
        lines.append(f"target >= 200,000 deliveries/s to {args.subscribers} subscribers with "
                     f"PostgreSQL: {'MET' if ok else 'NOT MET'} ({rate(tp):,.0f}/s){note}")
    # issue 13's "plain websockets" broadcast each message (--baseline-mode plain); the
    # coalescing baseline is the same library with the hub's own batching
    plain_tp = pick("baseline-plain", "-", "throughput")
    reference, against = (plain_tp, "plain websockets") if plain_tp else (
        base_tp, "the coalescing websockets baseline")
    base = rate(reference) if reference else 0.0
    for db in ("sqlite", "postgres"):
        tp = pick("hub", db, "throughput")
        if tp and base:
            ok = rate(tp) >= 10 * base
            lines.append(f"target saturated throughput >= 10x {against} ({db}): "
                         f"{'MET' if ok else 'NOT MET'} (x{rate(tp) / base:.1f}: "
                         f"{rate(tp):,.0f} vs {base:,.0f} deliveries/s){note}")
    return lines


# ---------------------------------------------------------------------------
# Queue room


@dataclass
class QueueResult:
    db: str
    phase: str
    elapsed: float = 0.0
    sent: float = 0.0  # commands/s sent
    answered: float = 0.0  # commands/s answered (ack or error)
    ok: int = 0
    rejected: int = 0
    rejections: dict[str, int] = field(default_factory=dict)  # "name code" -> count
    p50: float | None = None  # milliseconds
    p99: float | None = None
    max: float | None = None
    samples: int = 0
    dj_p50: float | None = None
    dj_p99: float | None = None
    lag_p99: float | None = None  # the generator's event-loop lag, milliseconds
    deliveries: float = 0.0  # per second
    per_frame: float = 0.0
    bytes_per_msg: float = 0.0
    server_cpu: float = 0.0
    server_sys: float = 0.0
    gen_cpu: float = 0.0
    db_cpu: float | None = None
    server_core: float = 0.0
    gen_core: float = 0.0
    softirq: float = 0.0
    steal: float = 0.0
    offered: float | None = None  # the rate phase's target commands/s
    window: int = 0  # commands kept in flight (throughput phase)
    unsent: int = 0  # commands due while every guest waited for an answer: hub behind
    problems: list[str] = field(default_factory=list)


def describe_queue(r: QueueResult) -> str:
    rejections = ", ".join(f"{k} x{v}" for k, v in sorted(r.rejections.items())) or "none"
    text = (f"{r.phase}: {r.answered:,.0f} commands/s answered ({r.sent:,.0f}/s sent; "
            f"{r.ok:,} ok, {r.rejected:,} rejected: {rejections}); round trip p50 "
            f"{fmt_ms(r.p50)} p99 {fmt_ms(r.p99)} max {fmt_ms(r.max)} ({r.samples} samples; "
            f"DJ's p50 {fmt_ms(r.dj_p50)} p99 {fmt_ms(r.dj_p99)}; generator's loop lag p99 "
            f"{fmt_ms(r.lag_p99)}); "
            f"{r.deliveries:,.0f} deliveries/s, {r.per_frame:.1f} msgs/frame, "
            f"{r.bytes_per_msg:,.0f} B/msg; cpu server {r.server_cpu:.0f}% "
            f"(sys {r.server_sys:.0f}%) gen {r.gen_cpu:.0f}%")
    if r.db_cpu is not None:
        text += f" postgres {r.db_cpu:.0f}%"
    if r.unsent:
        text += (f"; {r.unsent:,} commands due were not sent: every guest was waiting for an "
                 f"answer (the hub fell behind {r.offered or 0:,.0f}/s)")
    return text + (f"; cores busy: server's {r.server_core:.0f}% (softirq {r.softirq:.0f}%), "
                   f"generator's {r.gen_core:.0f}%; steal {r.steal:.1f}%")


def queue_table(results: list[QueueResult]) -> str:
    rows = [["db", "phase", "cmds/s", "ok", "rejected", "rtt-p50", "rtt-p99", "rtt-max",
             "deliveries/s", "msgs/frame", "B/msg", "server-cpu", "gen-cpu", "pg-cpu", "core0",
             "core1", "gen-lag", "ok?"]]
    for r in results:
        rows.append([r.db, r.phase, f"{r.answered:,.0f}", f"{r.ok:,}", f"{r.rejected:,}",
                     fmt_ms(r.p50), fmt_ms(r.p99), fmt_ms(r.max), f"{r.deliveries:,.0f}",
                     f"{r.per_frame:.1f}", f"{r.bytes_per_msg:,.0f}", f"{r.server_cpu:.0f}%",
                     f"{r.gen_cpu:.0f}%", "-" if r.db_cpu is None else f"{r.db_cpu:.0f}%",
                     f"{r.server_core:.0f}%", f"{r.gen_core:.0f}%", fmt_ms(r.lag_p99),
                     verdict(r)])
    return render_table(rows, left=2)


def queue_targets(results: list[QueueResult]) -> list[str]:
    lines = []
    for r in results:
        if r.phase == "throughput":
            lines.append(f"{r.db}: {r.answered:,.0f} commands/s into one room with "
                         f"{r.window} in flight, p99 {fmt_ms(r.p99)} (throughput: closed "
                         f"loop; hub core {r.server_core:.0f}% busy)")
    for r in (r for r in results if r.phase == "rate"):
        offered = r.offered or 0.0
        kept_up = r.sent >= 0.99 * offered and r.answered >= 0.99 * r.sent and not r.problems
        figures = (f"{r.answered:,.0f}/s answered, {r.sent:,.0f}/s sent of {offered:,.0f}/s "
                   f"offered, p99 {fmt_ms(r.p99)}")
        if r.db == "postgres":
            ok = (offered >= TARGET_RATE and kept_up and r.p99 is not None
                  and r.p99 < TARGET_P99_MS)
            lines.append(f"target >= {TARGET_RATE:,.0f} commands/s into one room with p99 < "
                         f"{TARGET_P99_MS:.0f} ms on PostgreSQL: {'MET' if ok else 'NOT MET'} "
                         f"({figures})")
        else:
            lines.append(f"{r.db}: {figures} (rate: open loop)")
    return lines
