"""Time travel's cost: folding a domain room's log up to a seq (issue 16).

Time travel answers "the room at seq N" by folding events 1..N and showing the
state through the domain's ``view`` (both in the fold figures below).

``GET /v1/rooms/{room}/state?at=SEQ&as=...`` reads the room's events up to SEQ and
folds them (``roomlog.rooms.travel``). This tool measures the fold alone, in one
process, on a log made by the domain's own ``decide``: a queue room where guests
submit requests and vote, the DJ accepts, plays and vetoes (``--events`` events,
each a fresh room for ``--runs`` runs). For seqs at a quarter, a half and all of
the log it prints the fold's time p50/p99 and the time per event, with the
baseline in the same run: one ``view`` of the state at that seq (what the plain
``GET .../state`` costs once the state is in memory). The log read is not
included: pages of ``max_page_size`` from the database, as any history read.

Example: ``python loadtest/travel.py --events 10000 --json``.
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # loadtest/queue.py shadows the standard library's queue

import argparse
import time
from typing import Any

import orjson
from common import percentile

from roomlog.errors import RoomlogError
from roomlog.identity import Principal, Role
from roomlog.rooms.domain import Command, Event, Meta
from roomlog.rooms.queue import QueueDomain
from roomlog.rooms.travel import state_at

T0 = 1_760_000_000_000


def make_log(events: int) -> list[tuple[Event, Meta]]:
    """A busy set: 200 guests, submissions, votes, accepts, plays and vetoes."""
    domain = QueueDomain()
    state = domain.initial("bench")
    dj = Principal("dj1", Role.DJ)
    log: list[tuple[Event, Meta]] = []
    now = T0
    n = 0
    rids: list[str] = []

    def run(who: Principal, name: str, **args: Any) -> None:
        nonlocal now
        now += 20_000  # 3 a minute: under every rate limit
        try:
            decision = domain.decide(state, Command(name, args), who, now)
        except RoomlogError:
            return
        for event in decision.events:
            meta = Meta(who.user, len(log) + 1, now)
            domain.apply(state, event, meta)
            log.append((event, meta))
        rid = decision.result.get("request_id")
        if isinstance(rid, str):
            rids.append(rid)

    run(dj, "queue.settings", request_cap_per_hour=1000, max_active_per_guest=50,
        submit_rate=60)
    while len(log) < events:
        n += 1
        guest = Principal(f"g{n % 200}", Role.GUEST)
        step = n % 6
        if step in (0, 1) or not rids:
            run(guest, "request.submit", song_id=f"s{n}", title=f"Song {n}", artist="Band")
        elif step == 2:
            run(guest, "request.vote", request_id=rids[-1 - n % min(len(rids), 20)])
        elif step == 3:
            run(dj, "request.accept", request_id=rids[-1 - n % min(len(rids), 10)])
        elif step == 4:
            run(dj, "request.play", request_id=rids[-1 - n % min(len(rids), 10)])
        else:
            run(dj, "request.veto", request_id=rids[-1 - n % min(len(rids), 10)],
                reason="not tonight")
    return log[:events]


def measure(events: int, runs: int) -> list[dict[str, Any]]:
    log = make_log(events)
    domain = QueueDomain()
    out = []
    for at in (events // 4, events // 2, events):
        folds, views = [], []
        for _ in range(runs):
            started = time.perf_counter()
            body = state_at(domain, "bench", log, at, "dj")
            folds.append(time.perf_counter() - started)
            state = domain.initial("bench")
            for event, meta in log[:at]:
                domain.apply(state, event, meta)
            started = time.perf_counter()
            domain.view(state, Principal("dj1", Role.DJ))
            views.append(time.perf_counter() - started)
        assert body["seq"] == at
        folds.sort()
        views.sort()
        p50 = percentile(folds, 0.5)
        out.append({"at": at, "fold_ms_p50": round(p50 * 1000, 2),
                    "fold_ms_p99": round(percentile(folds, 0.99) * 1000, 2),
                    "us_per_event": round(p50 / at * 1e6, 2),
                    "baseline_view_ms_p50": round(percentile(views, 0.5) * 1000, 3),
                    "answer_bytes": len(orjson.dumps(body))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    rows = measure(args.events, args.runs)
    print(f"time travel in a queue room of {args.events} events ({args.runs} runs each)")
    print(f"{'at seq':>8} {'fold p50':>10} {'fold p99':>10} {'per event':>10} "
          f"{'view (baseline)':>16} {'answer':>9}")
    for r in rows:
        print(f"{r['at']:>8} {r['fold_ms_p50']:>8} ms {r['fold_ms_p99']:>8} ms "
              f"{r['us_per_event']:>7} us {r['baseline_view_ms_p50']:>13} ms "
              f"{r['answer_bytes']:>7} B")
    if args.json:
        print(orjson.dumps({"events": args.events, "runs": args.runs, "rows": rows}).decode())


if __name__ == "__main__":
    main()
