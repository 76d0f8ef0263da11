"""Regenerate the figures the README quotes, with one command:

    python loadtest/figures.py

It runs the three tools as the README's "Load testing" section describes them, each
with ``--json`` into ``--out`` (default ``loadtest/results/<date-time>/``):

* ``fanout.py --db both --target both --baseline-mode plain,coalesce`` (fanout.json;
  about 3 minutes);
* ``queue.py --db postgres``, ``--queue-runs`` times (queue-1.json, ...; about 1
  minute each);
* ``cluster.py`` (cluster.json; about 2 minutes);

then prints the section's figures as Markdown, ready to paste: the fan-out table,
the queue room's line and the cluster's line. ``--from DIR`` prints them again from
the JSON files of an earlier run, without running anything. Every run says when the
machine was busy with other work: such figures are noisy, so compare figures from
one run only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

__all__ = ["render"]


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _span(values: list[float], fmt: str = ",.0f") -> str:
    """'low-high' with an en dash (as the README writes ranges), or one figure."""
    low, high = format(min(values), fmt), format(max(values), fmt)
    return low if low == high else f"{low}\u2013{high}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def fanout_table(doc: dict[str, Any]) -> list[str]:
    """The README's fan-out table: saturated deliveries/s and msgs/frame (throughput
    phase), p99 in the latency phase, memory per connection."""
    rows = {}
    for r in doc["results"]:
        key = (r["target"], r["db"])
        rows.setdefault(key, {})[r["phase"]] = r
    rate = doc["options"]["rate"] * doc["options"]["subscribers"]
    lines = [f"| target | db | deliveries/s (saturated) | msgs/frame | p99 at {rate:,} "
             "deliveries/s | memory/conn |", "| --- | --- | --- | --- | --- | --- |"]
    names = {"baseline": "`websockets`, coalescing like the hub",
             "baseline-plain": "plain `websockets` (`broadcast` per message)",
             "baseline-direct": "`websockets`, synchronous batches", "hub": "roomlog"}
    dbs = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    for (target, db), phases in rows.items():
        tp, lat = phases.get("throughput"), phases.get("latency")
        kib = (tp or lat or {}).get("kib_per_conn")
        cells = [names.get(target, target), dbs.get(db, "—"),
                 f"{tp['deliveries']:,.0f}" if tp else "-",
                 f"{tp['per_frame']:.0f}" if tp else "-",
                 _ms(lat["p99"]) if lat else "-",
                 "-" if kib is None else f"{kib:.1f} KiB"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def queue_line(docs: list[dict[str, Any]]) -> list[str]:
    rate = [r for d in docs for r in d["results"] if r["phase"] == "rate"]
    tp = [r for d in docs for r in d["results"] if r["phase"] == "throughput"]
    if not rate:
        return []
    offered = rate[0]["offered"] or 0
    answered = [r["answered"] for r in rate]
    p99 = [r["p99"] for r in rate if r["p99"] is not None]
    runs = len(docs)
    db = docs[0]["options"]["db"]
    text = (f"`python loadtest/queue.py --db {db}`: {_span(answered)} commands/s answered at "
            f"{offered:,.0f}/s offered with round-trip p99 {_span(p99)} ms over {runs} run"
            f"{'s' if runs > 1 else ''} (median {statistics.median(p99):.0f} ms)")
    if tp:
        text += (f", {_span([r['answered'] for r in tp])} commands/s at saturation, about "
                 f"{statistics.median(r['deliveries'] for r in tp):,.0f} event deliveries/s "
                 "to the guests")
    return [text + "."]


def cluster_line(doc: dict[str, Any]) -> list[str]:
    def pick(setup: str, phase: str) -> dict[str, Any] | None:
        return next((r for r in doc["results"] if (r["setup"], r["phase"]) == (setup, phase)),
                    None)

    single, cluster = pick("single", "latency"), pick("cluster", "latency")
    saturated = pick("cluster", "saturated")
    if single is None or cluster is None:
        return []
    one, local, remote = (single["paths"]["all"], cluster["paths"]["local"],
                          cluster["paths"]["remote"])
    rate = doc["options"]["rate"] * doc["options"]["subscribers"]
    gaps = sum(s.get("gap_fills", 0) for r in doc["results"] for s in r["server"])
    text = (f"`python loadtest/cluster.py`: at {rate:,} deliveries/s, p50 is "
            f"{_ms(one['p50'])} on one instance, {_ms(local['p50'])} local and "
            f"{_ms(remote['p50'])} remote (p99 {_ms(one['p99'])} / {_ms(local['p99'])} / "
            f"{_ms(remote['p99'])}); gap fills {gaps:.0f}")
    if saturated is not None:
        text += f"; {saturated['paths']['all']['deliveries']:,.0f} deliveries/s at saturation"
    return [text + "."]


def render(out: Path) -> str:
    """The README's figures, as Markdown, from the JSON files in ``out``."""
    parts: list[str] = []
    notes: list[str] = []
    fanout = out / "fanout.json"
    if fanout.exists():
        doc = _load(fanout)
        o = doc["options"]
        parts += [f"Figures of `python loadtest/fanout.py --db {o['db']} --target "
                  f"{o['target']}` ({doc['finished'][:10]}, {doc['machine']['cpus']} cores):", "",
                  *fanout_table(doc), ""]
        notes += _problems(doc)
    queues = [_load(p) for p in sorted(out.glob("queue-*.json"))]
    if queues:
        parts += [*queue_line(queues), ""]
        for doc in queues:
            notes += _problems(doc)
    cluster = out / "cluster.json"
    if cluster.exists():
        doc = _load(cluster)
        parts += [*cluster_line(doc), ""]
        notes += _problems(doc)
    if not parts:
        raise SystemExit(f"no results in {out} (fanout.json, queue-*.json, cluster.json)")
    if notes:
        parts += ["Problems reported by the runs (see their output):", *notes]
    return "\n".join(parts).rstrip() + "\n"


def _problems(doc: dict[str, Any]) -> list[str]:
    return [f"- {doc['tool']}: {p}" for r in doc["results"] for p in r.get("problems", [])]


def run(out: Path, queue_runs: int, extra: list[str]) -> bool:
    """Run the tools into ``out``; False if any failed (its figures may be missing)."""
    out.mkdir(parents=True, exist_ok=True)
    plans = [["fanout.py", "--db", "both", "--target", "both", "--baseline-mode", "plain,coalesce",
              "--json", str(out / "fanout.json")]]
    plans += [["queue.py", "--db", "postgres", "--json", str(out / f"queue-{n}.json")]
              for n in range(1, queue_runs + 1)]
    plans += [["cluster.py", "--json", str(out / "cluster.json")]]
    ok = True
    for plan in plans:
        command = [sys.executable, str(HERE / plan[0]), *plan[1:], *extra]
        print(f"\n$ {' '.join(command[1:])}", flush=True)
        ok = subprocess.run(command, check=False).returncode == 0 and ok
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path,
                        help="where the JSON results go (default loadtest/results/<date-time>)")
    parser.add_argument("--from", dest="source", type=Path, metavar="DIR",
                        help="print the figures of an earlier run's JSON files; run nothing")
    parser.add_argument("--queue-runs", type=int, default=3,
                        help="runs of queue.py (the README quotes ranges over 3)")
    args, extra = parser.parse_known_args(argv)
    if args.source is not None:
        print(render(args.source), end="")
        return 0
    out = args.out or HERE / "results" / time.strftime("%Y%m%d-%H%M%S")
    ok = run(out, args.queue_runs, extra)
    print(f"\n== README figures (from {out})\n")
    print(render(out), end="")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
