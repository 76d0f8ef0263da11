"""What a report costs: the analytics endpoints read a room's whole retained log and fold
it, at every request (the analytics pages ask again at most every 5 s while a room is
live). In one process, without sockets, with the hub's own classes:

* a queue room of ``--requests`` requests, made by the queue domain itself (submits,
  votes, accepts, vetoes with reasons, plays: about 4 events per request), and a
  ``repairs:all`` feed of ``--tickets`` tickets (9 events each, received to collected),
  appended to a SQL log (``--db``: SQLite in a temporary file, a fresh PostgreSQL
  database from ``--pg-dsn``, or both, one after the other);
* then, ``--runs`` times: the read (every page of ``max_page_size`` messages, as
  ``Api._events`` does) and the report (``summarize`` and ``to_csv``), timed apart.

It prints the median and the worst run of each, per log. Example:
``python loadtest/analytics.py --db both --requests 5000 --tickets 5000``.
"""

from __future__ import annotations

import sys

# loadtest/queue.py shares its name with the standard library's ``queue``: put this folder
# after the standard library.
sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from servers import PgDatabase

from roomlog.identity import Principal, Role
from roomlog.log import Append
from roomlog.log.sql import SqlLog
from roomlog.rooms import queue_analytics, repair_stats
from roomlog.rooms.domain import Command, Event, Meta
from roomlog.rooms.queue import QueueDomain

PAGE = 1000  # max_page_size's default: the endpoints read pages this big
BATCH = 500
T0 = 1_700_000_000_000
DJ = Principal("dj1", Role.DJ)


def queue_events(requests: int) -> list[tuple[str, dict[str, Any], int]]:
    """(actor, event data, ts) of a long night, decided by the queue domain."""
    domain = QueueDomain()
    state = domain.initial("load")
    out: list[tuple[str, dict[str, Any], int]] = []
    now = T0

    def run(actor: Principal, name: str, **args: Any) -> dict[str, Any]:
        nonlocal now
        now += 7_000
        decision = domain.decide(state, Command(name, args), actor, now)
        for event in decision.events:
            domain.apply(state, event, Meta(actor.user, len(out) + 1, now))
            out.append((actor.user, event.to_data(), now))
        return decision.result

    run(DJ, "queue.settings", max_active_per_guest=50, request_cap_per_hour=1000)
    for i in range(requests):
        guest = Principal(f"g{i % 300}", Role.GUEST)
        rid = run(guest, "request.submit", song_id=f"s{i}", title=f"Song {i}",
                  artist=f"Artist {i % 97}")["request_id"]
        run(Principal(f"g{(i + 1) % 300}", Role.GUEST), "request.vote", request_id=rid)
        if i % 4 == 0:
            run(DJ, "request.veto", request_id=rid, reason=("not tonight", "played", None)[i % 3])
        else:
            run(DJ, "request.accept", request_id=rid)
            run(DJ, "request.play", request_id=rid)
    return out


def feed_events(tickets: int) -> list[tuple[str, dict[str, Any], int]]:
    """(actor, feed entry, ts) of ``repairs:all``: each ticket from received to collected."""
    out: list[tuple[str, dict[str, Any], int]] = []
    now = T0
    moves = ["diagnosing", "awaiting_approval", None, "repairing", "quality_check", None,
             "ready_for_pickup", "collected"]
    for n in range(tickets):
        ticket, tech = f"t-{n}", f"tech{n % 12}"
        now += 60_000
        entries = [{"event": "ticket.created", "technicians": [tech]}]
        for step, to in enumerate(moves):
            if to is None:
                entries.append({"event": "quote.approved"} if step == 2 else
                               {"event": "qa.recorded", "item": "Screen", "passed": n % 9 != 0})
            else:
                data: dict[str, Any] = {"event": "status.changed", "to": to}
                if to == "awaiting_approval":
                    data["quote"] = {"quote_id": "q1", "amount": 89, "currency": "EUR"}
                if to == "ready_for_pickup":
                    data["outcome"] = "repaired"
                entries.append(data)
        for i, data in enumerate(entries):
            out.append((tech, {"ticket": ticket, "room": f"repair:{ticket}", "seq": i + 1,
                               **data}, now + i * 600_000))
    return out


async def fill(log: SqlLog, room: str, events: list[tuple[str, dict[str, Any], int]]) -> None:
    for start in range(0, len(events), BATCH):
        chunk = events[start:start + BATCH]
        await log.append(room, [Append(actor, orjson.dumps(data)) for actor, data, _ in chunk],
                         now_ms=chunk[0][2])


async def read_all(log: SqlLog, room: str) -> list[tuple[Event, Meta]]:
    """As ``Api._events``: every retained event, page by page."""
    entries: list[tuple[Event, Meta]] = []
    after = 0
    while True:
        page = await log.read(room, after, PAGE)
        if not page.messages:
            return entries
        entries += [(Event.from_data(m.data), Meta(m.by, m.seq, m.ts)) for m in page.messages]
        after = page.messages[-1].seq


async def measure(log: SqlLog, room: str, report: Callable[[list[tuple[Event, Meta]]], str],
                  runs: int) -> dict[str, Any]:
    reads, folds = [], []
    size = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        entries = await read_all(log, room)
        t1 = time.perf_counter()
        report(entries)
        t2 = time.perf_counter()
        reads.append((t1 - t0) * 1000)
        folds.append((t2 - t1) * 1000)
        size = len(entries)
    return {"events": size,
            "read_ms_median": round(statistics.median(reads), 1),
            "read_ms_max": round(max(reads), 1),
            "report_ms_median": round(statistics.median(folds), 1),
            "report_ms_max": round(max(folds), 1)}


def queue_report(entries: list[tuple[Event, Meta]]) -> str:
    return queue_analytics.to_csv(queue_analytics.summarize(entries, utc_offset_min=60))


def repair_report(entries: list[tuple[Event, Meta]]) -> str:
    limits = repair_stats.parse_sla("received=86400,diagnosing=172800,repairing=259200")
    return repair_stats.to_csv(repair_stats.summarize(entries, sla_ms=limits))


async def run(db: str, args: argparse.Namespace) -> dict[str, Any]:
    """Both logs in a database of their own, then the reports, timed."""
    with tempfile.TemporaryDirectory() as tmp:
        database = PgDatabase(args.pg_dsn) if db == "postgres" else None
        if database is not None:
            await database.create()
        url = database.url if database else f"sqlite+aiosqlite:///{Path(tmp) / 'analytics.db'}"
        log = SqlLog(url, migrate=True)
        await log.open()
        try:
            queue, feed = "queue:load", "repairs:all"
            await fill(log, queue, queue_events(args.requests))
            await fill(log, feed, feed_events(args.tickets))
            return {"db": db, "runs": args.runs,
                    "queue": {"requests": args.requests,
                              **await measure(log, queue, queue_report, args.runs)},
                    "repairs": {"tickets": args.tickets,
                                **await measure(log, feed, repair_report, args.runs)}}
        finally:
            await log.close()
            if database is not None:
                await database.drop()


def _rows(figures: dict[str, Any]) -> str:
    return "\n".join(
        f"{figures['db']:<10} {name:<8} {f['events']:>7} events: read "
        f"{f['read_ms_median']:>7.1f} ms (max {f['read_ms_max']:.1f}), report "
        f"{f['report_ms_median']:>7.1f} ms (max {f['report_ms_max']:.1f})"
        for name, f in ((n, figures[n]) for n in ("queue", "repairs")))


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for db in (["sqlite", "postgres"] if args.db == "both" else [args.db]):
        results.append(await run(db, args))
        if not args.json:
            print(_rows(results[-1]), flush=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--requests", type=int, default=5000,
                        help="requests in the queue room (default 5000)")
    parser.add_argument("--tickets", type=int, default=5000,
                        help="tickets in the repairs:all feed (default 5000)")
    parser.add_argument("--runs", type=int, default=5, help="reports timed (default 5)")
    parser.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL admin DSN (loopback only); a fresh database is "
                             "created and dropped per run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    options = parser.parse_args()
    rows = asyncio.run(main(options))
    if options.json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
