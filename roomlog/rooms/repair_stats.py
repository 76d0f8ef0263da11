"""Statistics of repair tickets, from their logs. Pure: no clock, no I/O.

:func:`summarize` reads ``(Event, Meta)`` pairs and returns a JSON-compatible
report; :func:`to_csv` renders it as one CSV table. The entries may be:

* one ticket's log (``repair:{ticket}``), or several of them one after the
  other: every log starts with ``ticket.created``, which names its ticket and
  owns the entries up to the next one;
* the admins' feed ``repairs:all`` (every entry names its ``ticket``), which
  holds every ticket's events in one room. Feed entries of other kinds
  (``ticket.unassigned``) are ignored.

The time range ``[start_ms, end_ms)`` selects **tickets by creation time**
and reports them **as of** ``as_of_ms`` (``end_ms`` when given, else the time
of the selected tickets' last entry): entries at or after ``end_ms`` are ignored, so a report on a
closed range never changes.

Definitions:

* ``time_in_status``: for each non-final status, the time tickets spent in it
  (from the change into it to the change out of it; a ticket still in it
  counts until ``as_of_ms``), as ``total_ms`` over all tickets and
  ``median_ms`` over the tickets that spent time in it (a ticket that visits a
  status twice counts its sum once). Collected and cancelled are final and
  have no duration.
* ``median_repair_ms``: from creation (received) to the first arrival in
  ready_for_pickup with outcome "repaired": the shop's turnaround for a
  repair, which pickup delays do not distort. Time on hold counts: the
  customer waited through it. Unrepaired and cancelled tickets are not repairs.
* ``median_turnaround_ms``: from creation to collected, any outcome.
* ``technicians``: per technician, ``tickets`` ever assigned, ``open`` tickets
  assigned now and not final, ``repaired`` tickets that became
  ready_for_pickup repaired while assigned to them; most tickets first.
* ``by_status``: every status, the count of tickets whose status it is.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from roomlog.rooms.domain import Event, Meta
from roomlog.rooms.repair_state import FINAL, Status

__all__ = ["CSV_COLUMNS", "summarize", "to_csv"]

CSV_COLUMNS = ("section", "key", "tickets", "open", "repaired", "total_ms", "median_ms",
               "value")


@dataclass(slots=True)
class _Ticket:
    """What the report needs to know about one ticket."""

    created_ms: int
    technicians: list[str]
    status: Status = Status.RECEIVED
    entered_ms: int = 0  # when it entered ``status``
    spent: Counter[Status] = field(default_factory=Counter)  # ms per status, closed intervals
    ever: set[str] = field(default_factory=set)
    repaired_ms: int | None = None
    repaired_by: list[str] = field(default_factory=list)
    collected_ms: int | None = None

    def move(self, data: dict[str, Any], ts: int) -> None:
        to = Status(data["to"])
        self.spent[self.status] += max(0, ts - self.entered_ms)
        self.status, self.entered_ms = to, ts
        if to is Status.READY_FOR_PICKUP and data.get("outcome") == "repaired" and (
                self.repaired_ms is None):
            self.repaired_ms = ts
            self.repaired_by = list(self.technicians)
        if to is Status.COLLECTED and self.collected_ms is None:
            self.collected_ms = ts

    def time_in(self, as_of_ms: int) -> Counter[Status]:
        spent = Counter(self.spent)
        if self.status not in FINAL:
            spent[self.status] += max(0, as_of_ms - self.entered_ms)
        return spent


def _collect(entries: Iterable[tuple[Event, Meta]], start_ms: int | None,
             end_ms: int | None) -> tuple[dict[str, _Ticket], int]:
    tickets: dict[str, _Ticket] = {}
    current: str | None = None
    last_ts = 0
    for event, meta in entries:
        if end_ms is not None and meta.ts >= end_ms:
            continue  # not ``break``: commit times of a log may step back a little
        named = event.data.get("ticket")
        if named is not None:
            current = str(named)
        if current is None:
            continue  # before any ticket.created: not a ticket's log
        if event.type == "ticket.created":
            if start_ms is None or meta.ts >= start_ms:
                technicians = [str(t) for t in event.data["technicians"]]
                tickets[current] = _Ticket(meta.ts, technicians, entered_ms=meta.ts,
                                           ever=set(technicians))
                last_ts = max(last_ts, meta.ts)
            continue
        ticket = tickets.get(current)
        if ticket is None:
            continue
        last_ts = max(last_ts, meta.ts)
        if event.type == "status.changed":
            ticket.move(event.data, meta.ts)
        elif event.type == "ticket.assigned":
            ticket.technicians = [str(t) for t in event.data["technicians"]]
            ticket.ever.update(ticket.technicians)
    return tickets, last_ts


def _median(values: list[int]) -> int | None:
    return round(statistics.median(values)) if values else None


def _technicians(tickets: list[_Ticket]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}

    def row(tech: str) -> dict[str, Any]:
        return rows.setdefault(tech, {"technician": tech, "tickets": 0, "open": 0,
                                      "repaired": 0})

    for t in tickets:
        for tech in t.ever:
            row(tech)["tickets"] += 1
        if t.status not in FINAL:
            for tech in t.technicians:
                row(tech)["open"] += 1
        for tech in t.repaired_by:
            row(tech)["repaired"] += 1
    return sorted(rows.values(), key=lambda r: (-r["tickets"], r["technician"]))


def summarize(
    entries: Iterable[tuple[Event, Meta]],
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> dict[str, Any]:
    """The report of repair logs (each in log order) over ``[start_ms, end_ms)``."""
    collected, last_ts = _collect(entries, start_ms, end_ms)
    tickets = list(collected.values())
    as_of = end_ms if end_ms is not None else last_ts
    per_ticket = [t.time_in(as_of) for t in tickets]
    time_in_status = {}
    for status in Status:
        if status in FINAL:
            continue
        spans = [spent[status] for spent in per_ticket if spent[status] > 0]
        time_in_status[str(status)] = {"tickets": len(spans), "total_ms": sum(spans),
                                       "median_ms": _median(spans)}
    repairs = [t.repaired_ms - t.created_ms for t in tickets if t.repaired_ms is not None]
    turnarounds = [t.collected_ms - t.created_ms for t in tickets if t.collected_ms is not None]
    statuses = Counter(t.status for t in tickets)
    return {
        "range": {"start_ms": start_ms, "end_ms": end_ms, "as_of_ms": as_of},
        "tickets": len(tickets),
        "time_in_status": time_in_status,
        "median_repair_ms": _median(repairs),
        "repairs_counted": len(repairs),
        "median_turnaround_ms": _median(turnarounds),
        "turnarounds_counted": len(turnarounds),
        "by_status": {str(s): statuses[s] for s in Status},
        "technicians": _technicians(tickets),
    }


def to_csv(report: dict[str, Any]) -> str:
    """The report as one flat CSV table (RFC 4180, CRLF line ends).

    Columns :data:`CSV_COLUMNS`; each row belongs to a ``section``:

    ==============  ===========================  ================================
    section         key                          filled columns
    ==============  ===========================  ================================
    summary         tickets, median_repair_ms,   value (empty for None)
                    repairs_counted,
                    median_turnaround_ms,
                    turnarounds_counted,
                    start_ms, end_ms, as_of_ms
    time_in_status  a non-final status           tickets, total_ms, median_ms
    status          a status                     tickets
    technician      user id                      tickets, open, repaired
    ==============  ===========================  ================================
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    blank = [""] * (len(CSV_COLUMNS) - 3)
    for key in ("tickets", "median_repair_ms", "repairs_counted", "median_turnaround_ms",
                "turnarounds_counted"):
        writer.writerow(["summary", key, *blank, _cell(report[key])])
    for key in ("start_ms", "end_ms", "as_of_ms"):
        writer.writerow(["summary", key, *blank, _cell(report["range"][key])])
    for status, row in report["time_in_status"].items():
        writer.writerow(["time_in_status", status, row["tickets"], "", "", row["total_ms"],
                         _cell(row["median_ms"]), ""])
    for status, n in report["by_status"].items():
        writer.writerow(["status", status, n, "", "", "", "", ""])
    for row in report["technicians"]:
        writer.writerow(["technician", row["technician"], row["tickets"], row["open"],
                         row["repaired"], "", "", ""])
    return out.getvalue()


def _cell(value: Any) -> str:
    return "" if value is None else str(value)
