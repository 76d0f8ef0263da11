"""Repair statistics from logs (one room after another, or the repairs:all feed). Pure."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from roomlog.identity import Principal
from roomlog.rooms.domain import Event, Meta
from roomlog.rooms.repair_stats import CSV_COLUMNS, parse_sla, summarize, to_csv
from tests.rooms.test_repair import ADMIN, CUST, QUOTE, SEC, T0, TECH, TECH2, Ticket

MIN = 60 * SEC


def at(t: Ticket, minute: int, actor: Principal, name: str, **args: Any) -> None:
    t.now = T0 + minute * MIN - SEC  # Ticket.run steps one second
    t.run(actor, name, **args)


def tickets() -> list[Ticket]:
    """Four tickets; minutes after T0 (see the expected figures below)."""
    a = Ticket("A")  # repaired in 160 min, collected at 300
    at(a, 0, TECH, "ticket.create", customer_id="carl", device="d", problem="p",
       technicians=["tina"])
    at(a, 10, TECH, "status.set", status="diagnosing")
    at(a, 30, TECH, "status.set", status="awaiting_approval", quote=QUOTE)
    at(a, 90, CUST, "quote.approve")
    at(a, 150, TECH, "status.set", status="quality_check")
    at(a, 152, TECH, "qa.record", item="Screen ", passed=False, note="dead pixels")
    at(a, 155, TECH, "qa.record", item="screen", passed=True)
    at(a, 160, TECH, "status.set", status="ready_for_pickup")
    at(a, 300, TECH, "status.set", status="collected")
    b = Ticket("B")  # held, quote declined: collected unrepaired at 260
    at(b, 100, TECH2, "ticket.create", customer_id="carl", device="d", problem="p",
       technicians=["tom"])
    at(b, 110, TECH2, "status.set", status="diagnosing")
    at(b, 120, TECH2, "status.set", status="on_hold", reason="part")
    at(b, 180, TECH2, "status.set", status="diagnosing")
    at(b, 200, TECH2, "status.set", status="awaiting_approval", quote=QUOTE)
    at(b, 230, CUST, "quote.decline")
    at(b, 260, TECH2, "status.set", status="collected")
    c = Ticket("C")  # still diagnosing, moved from tina to tom
    at(c, 200, ADMIN, "ticket.create", customer_id="cora", device="d", problem="p",
       technicians=["tina"])
    at(c, 220, TECH, "status.set", status="diagnosing")
    at(c, 250, ADMIN, "ticket.assign", technicians=["tom"])
    d = Ticket("D")  # opened by mistake
    at(d, 50, TECH, "ticket.create", customer_id="carl", device="d", problem="p",
       technicians=["tina"])
    at(d, 70, TECH, "status.set", status="cancelled", reason="duplicate of A")
    return [a, b, c, d]


def logs() -> list[tuple[Event, Meta]]:
    return [entry for t in tickets() for entry in t.log]


def span(minutes: list[int]) -> dict[str, Any]:
    ms = sorted(m * MIN for m in minutes)
    mid = len(ms) // 2
    median = None if not ms else ms[mid] if len(ms) % 2 else (ms[mid - 1] + ms[mid]) // 2
    return {"tickets": len(ms), "total_ms": sum(ms), "median_ms": median, "limit_ms": None,
            "breaches": 0}


def test_report_over_four_tickets() -> None:
    report = summarize(logs())
    assert report == {
        "range": {"start_ms": None, "end_ms": None, "as_of_ms": T0 + 300 * MIN},
        "tickets": 4,
        "time_in_status": {
            "received": span([10, 10, 20, 20]),
            "diagnosing": span([20, 30, 80]),  # C: 220 -> as of 300
            "awaiting_approval": span([60, 30]),
            "repairing": span([60]),
            "quality_check": span([10]),
            "ready_for_pickup": span([140, 30]),
            "on_hold": span([60]),
        },
        "median_repair_ms": 160 * MIN,
        "repairs_counted": 1,
        "median_turnaround_ms": 230 * MIN,  # 300 and 160
        "turnarounds_counted": 2,
        "by_status": {"received": 0, "diagnosing": 1, "awaiting_approval": 0, "repairing": 0,
                      "quality_check": 0, "ready_for_pickup": 0, "collected": 2, "on_hold": 0,
                      "cancelled": 1},
        "technicians": [
            {"technician": "tina", "tickets": 3, "open": 0, "repaired": 1, "qa_failed": 1,
             "median_repair_ms": 160 * MIN},
            {"technician": "tom", "tickets": 2, "open": 1, "repaired": 0, "qa_failed": 0,
             "median_repair_ms": None},
        ],
        "quotes": {"sent": 2, "approved": 1, "declined": 1, "pending": 0,
                   "approval_rate": 0.5},
        "qa": {"recorded": 2, "failed": 1, "tickets_failed": 1,
               "items": [{"item": "Screen", "failed": 1}]},
        "per_day": [{"day": "2023-11-14", "created": 3, "repaired": 0},  # T0 is 22:13 UTC
                    {"day": "2023-11-15", "created": 1, "repaired": 1}],
        "sla": {"limits_ms": {}, "breaches": []},
    }
    assert json.loads(json.dumps(report)) == report


def test_range_selects_by_creation_and_reports_as_of_its_end() -> None:
    report = summarize(logs(), start_ms=T0 + 100 * MIN, end_ms=T0 + 200 * MIN)
    assert report["tickets"] == 1  # B only: C was created at 200
    assert report["range"]["as_of_ms"] == T0 + 200 * MIN
    assert report["time_in_status"]["diagnosing"] == span([30])  # 110-120 and 180-200
    assert report["time_in_status"]["on_hold"] == span([60])
    assert report["time_in_status"]["awaiting_approval"] == span([])
    assert report["by_status"]["diagnosing"] == 1
    assert report["median_turnaround_ms"] is None
    assert report["technicians"] == [{"technician": "tom", "tickets": 1, "open": 1,
                                      "repaired": 0, "qa_failed": 0, "median_repair_ms": None}]
    assert report["quotes"] == {"sent": 0, "approved": 0, "declined": 0, "pending": 0,
                                "approval_rate": None}  # B's quote came at 200


def test_the_admins_feed_gives_the_same_report() -> None:
    entries = []
    for t in tickets():
        feed = [n.data for n in t.notices if n.room == "repairs:all"]
        assert len(feed) == len(t.log)
        entries += [(Event.from_data(json.loads(json.dumps(data))), meta)
                     for data, (_, meta) in zip(feed, t.log, strict=True)]
    entries.sort(key=lambda entry: entry[1].ts)  # interleaved, as one feed room holds them
    assert summarize(entries) == summarize(logs())


def test_empty_and_foreign_entries() -> None:
    report = summarize([])
    assert report["tickets"] == 0 and report["median_repair_ms"] is None
    assert report["technicians"] == [] and report["range"]["as_of_ms"] == 0
    stray = [(Event("ticket.unassigned", {"ticket": "A", "seq": 1}), Meta("x", 1, T0)),
             (Event("note.added", {"text": "x"}), Meta("x", 2, T0))]
    assert summarize(stray)["tickets"] == 0


def test_csv_is_one_flat_table() -> None:
    text = to_csv(summarize(logs()))
    assert text.startswith(",".join(CSV_COLUMNS) + "\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    by = {(r["section"], r["key"]): r for r in rows}
    assert by[("summary", "tickets")]["value"] == "4"
    assert by[("summary", "median_repair_ms")]["value"] == str(160 * MIN)
    assert by[("summary", "end_ms")]["value"] == ""
    on_hold = by[("time_in_status", "on_hold")]
    assert (on_hold["tickets"], on_hold["total_ms"], on_hold["median_ms"]) == (
        "1", str(60 * MIN), str(60 * MIN))
    assert by[("status", "collected")]["tickets"] == "2"
    tina = by[("technician", "tina")]
    assert (tina["tickets"], tina["open"], tina["repaired"], tina["median_ms"],
            tina["qa_failed"]) == ("3", "0", "1", str(160 * MIN), "1")
    assert by[("quotes", "approval_rate")]["value"] == "0.5"
    assert by[("qa", "failed")]["value"] == "1"
    assert by[("qa_item", "Screen")]["qa_failed"] == "1"
    assert (by[("per_day", "2023-11-15")]["created"], by[("per_day", "2023-11-15")]["repaired"]
            ) == ("1", "1")
    assert {r["section"] for r in rows} == {"summary", "time_in_status", "status", "technician",
                                            "quotes", "qa", "qa_item", "per_day"}


def test_sla_breaches_longest_overrun_first() -> None:
    limits = {"diagnosing": 25 * MIN, "ready_for_pickup": 100 * MIN, "on_hold": 60 * MIN}
    report = summarize(logs(), sla_ms=limits)
    assert report["sla"] == {"limits_ms": limits, "breaches": [
        {"ticket": "C", "status": "diagnosing", "spent_ms": 80 * MIN, "limit_ms": 25 * MIN,
         "over_ms": 55 * MIN, "current": True, "technicians": ["tom"]},  # still there at 300
        {"ticket": "A", "status": "ready_for_pickup", "spent_ms": 140 * MIN,
         "limit_ms": 100 * MIN, "over_ms": 40 * MIN, "current": False, "technicians": ["tina"]},
        {"ticket": "B", "status": "diagnosing", "spent_ms": 30 * MIN, "limit_ms": 25 * MIN,
         "over_ms": 5 * MIN, "current": False, "technicians": ["tom"]},  # two visits summed
    ]}  # B's 60 min on hold is not over 60
    rows = report["time_in_status"]
    assert (rows["diagnosing"]["limit_ms"], rows["diagnosing"]["breaches"]) == (25 * MIN, 2)
    assert (rows["on_hold"]["limit_ms"], rows["on_hold"]["breaches"]) == (60 * MIN, 0)
    assert (rows["received"]["limit_ms"], rows["received"]["breaches"]) == (None, 0)
    early = summarize(logs(), end_ms=T0 + 240 * MIN, sla_ms=limits)  # C 20 min in, A 80
    assert [(b["ticket"], b["status"]) for b in early["sla"]["breaches"]] == [
        ("B", "diagnosing")]
    text = to_csv(report)
    first = next(r for r in csv.DictReader(io.StringIO(text)) if r["section"] == "sla_breach")
    assert (first["key"], first["status"], first["total_ms"], first["limit_ms"], first["open"]
            ) == ("C", "diagnosing", str(80 * MIN), str(25 * MIN), "1")


def test_the_sla_setting() -> None:
    assert parse_sla("") == {}
    assert parse_sla("received=3600, repairing = 1.5 ,") == {"received": 3_600_000,
                                                             "repairing": 1500}
    for bad in ("collected=60", "fixing=60", "received", "received=soon", "received=0",
                "received=-5", "received=nan"):
        try:
            parse_sla(bad)
        except ValueError as err:
            assert repr(bad.split("=")[0])[1:-1] in str(err)
        else:
            raise AssertionError(bad)
