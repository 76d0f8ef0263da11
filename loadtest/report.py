"""Results of the fan-out load test and how they are printed.

:class:`PhaseResult` holds the figures of one phase of one target;
:func:`describe` is its one-line account, :func:`table` the final table,
:func:`summary` the ratios to the baseline and the issue's targets (medians
over ``--repeat`` runs), :func:`memory_line` the server's memory per
connection.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, field

__all__ = [
    "GEN_BOUND",
    "PhaseResult",
    "describe",
    "fmt_ms",
    "memory_line",
    "render_table",
    "summary",
    "table",
    "verdict",
]

GEN_BOUND = 85.0  # % of its core: above this the generator may be what limits a phase


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


def verdict(r: PhaseResult) -> str:
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
    base_tp, base_lat = pick("baseline", "-", "throughput"), pick("baseline", "-", "latency")
    for db in ("sqlite", "postgres"):
        tp, lat = pick("hub", db, "throughput"), pick("hub", db, "latency")
        if tp and base_tp and rate(base_tp):
            lines.append(f"hub/{db} vs baseline: throughput x{rate(tp) / rate(base_tp):.2f} "
                         f"({rate(tp):,.0f} vs {rate(base_tp):,.0f} deliveries/s){note}")
        if lat and base_lat and p99(lat) and p99(base_lat):
            lines.append(f"hub/{db} vs baseline: latency p99 x{p99(lat) / p99(base_lat):.2f} "
                         f"({fmt_ms(p99(lat))} vs {fmt_ms(p99(base_lat))}){note}")
    tp = pick("hub", "postgres", "throughput")
    if tp:
        ok = rate(tp) >= 200_000 and not any(r.problems for r in tp)
        lines.append(f"target >= 200,000 deliveries/s to {args.subscribers} subscribers with "
                     f"PostgreSQL: {'MET' if ok else 'NOT MET'} ({rate(tp):,.0f}/s){note}")
    for db in ("sqlite", "postgres"):
        lat = pick("hub", db, "latency")
        if lat and p99(lat):
            ok = p99(lat) < 50 and not any(r.problems for r in lat)
            lines.append(f"target p99 < 50 ms at {args.rate * args.subscribers:,} deliveries/s "
                         f"({db}): {'MET' if ok else 'NOT MET'} (p99 {fmt_ms(p99(lat))} at "
                         f"{rate(lat):,.0f}/s){note}")
    return lines
