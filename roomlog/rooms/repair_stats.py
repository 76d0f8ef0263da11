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
* ``quotes``: quotes ``sent`` (a change into awaiting_approval with a quote),
  ``approved`` and ``declined`` (by the customer, or an operator for them),
  ``pending`` (tickets awaiting approval now) and ``approval_rate`` (approved /
  decided, ``None`` when none was decided).
* ``qa``: QA checks ``recorded`` and ``failed`` (a recorded check that did not
  pass, required or not; a check recorded again counts again: each failure was
  work), ``tickets_failed`` (tickets with at least one failure) and ``items``
  (failures per item, spacing and case aside, most first).
* technicians also carry ``qa_failed`` (failures recorded while assigned) and
  ``median_repair_ms`` (over the tickets they repaired; ``None`` if none).
* ``per_day``: tickets ``created`` and ``repaired`` per UTC day, every day from
  the first to the last (empty days are 0).
* ``sla``: ``limits_ms`` (status -> the longest time a ticket should spend in
  it, from the ``repair_sla`` setting) and ``breaches``: each ticket whose time
  in a status (summed over visits, as in ``time_in_status``) passed its limit,
  with ``spent_ms``, ``limit_ms``, ``over_ms``, ``current`` (the ticket is still
  in that status) and its technicians now; the longest overrun first.
  ``time_in_status`` rows carry ``limit_ms`` and ``breaches`` too.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from roomlog.rooms.domain import Event, Meta
from roomlog.rooms.repair_state import FINAL, Status, qa_key

__all__ = ["CSV_COLUMNS", "parse_sla", "summarize", "to_csv"]

DAY_MS = 86_400_000

CSV_COLUMNS = ("section", "key", "status", "tickets", "open", "repaired", "created",
               "total_ms", "median_ms", "limit_ms", "breaches", "qa_failed", "value")


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
    quotes_sent: int = 0
    approved: int = 0
    declined: int = 0
    qa_recorded: int = 0
    qa_failed: list[str] = field(default_factory=list)  # items, one per failure
    qa_failed_by: Counter[str] = field(default_factory=Counter)  # per assigned technician

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
            ticket.quotes_sent += event.data.get("quote") is not None
        elif event.type == "quote.approved":
            ticket.approved += 1
        elif event.type == "quote.declined":
            ticket.declined += 1
        elif event.type == "qa.recorded":
            ticket.qa_recorded += 1
            if not event.data["passed"]:
                ticket.qa_failed.append(" ".join(str(event.data["item"]).split()))
                ticket.qa_failed_by.update(ticket.technicians)
        elif event.type == "ticket.assigned":
            ticket.technicians = [str(t) for t in event.data["technicians"]]
            ticket.ever.update(ticket.technicians)
    return tickets, last_ts


def _median(values: list[int]) -> int | None:
    return round(statistics.median(values)) if values else None


def _technicians(tickets: list[_Ticket]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    repairs: dict[str, list[int]] = {}

    def row(tech: str) -> dict[str, Any]:
        return rows.setdefault(tech, {"technician": tech, "tickets": 0, "open": 0,
                                      "repaired": 0, "qa_failed": 0, "median_repair_ms": None})

    for t in tickets:
        for tech in t.ever:
            row(tech)["tickets"] += 1
        if t.status not in FINAL:
            for tech in t.technicians:
                row(tech)["open"] += 1
        for tech in t.repaired_by:
            row(tech)["repaired"] += 1
            if t.repaired_ms is not None:
                repairs.setdefault(tech, []).append(t.repaired_ms - t.created_ms)
        for tech, n in t.qa_failed_by.items():
            row(tech)["qa_failed"] += n
    for tech, spans in repairs.items():
        rows[tech]["median_repair_ms"] = _median(spans)
    return sorted(rows.values(), key=lambda r: (-r["tickets"], r["technician"]))


def _quotes(tickets: list[_Ticket]) -> dict[str, Any]:
    approved = sum(t.approved for t in tickets)
    declined = sum(t.declined for t in tickets)
    decided = approved + declined
    return {"sent": sum(t.quotes_sent for t in tickets), "approved": approved,
            "declined": declined,
            "pending": sum(t.status is Status.AWAITING_APPROVAL for t in tickets),
            "approval_rate": round(approved / decided, 4) if decided else None}


def _qa(tickets: list[_Ticket]) -> dict[str, Any]:
    items: Counter[str] = Counter()
    shown: dict[str, str] = {}
    for t in tickets:
        for item in t.qa_failed:
            shown.setdefault(qa_key(item), item)
            items[qa_key(item)] += 1
    ranked = sorted(items.items(), key=lambda kv: (-kv[1], kv[0]))
    return {"recorded": sum(t.qa_recorded for t in tickets), "failed": sum(items.values()),
            "tickets_failed": sum(bool(t.qa_failed) for t in tickets),
            "items": [{"item": shown[key], "failed": n} for key, n in ranked]}


def _day(day: int) -> str:
    return datetime.fromtimestamp(day * DAY_MS / 1000, UTC).strftime("%Y-%m-%d")


def _per_day(tickets: list[_Ticket]) -> list[dict[str, Any]]:
    created = Counter(t.created_ms // DAY_MS for t in tickets)
    repaired = Counter(t.repaired_ms // DAY_MS for t in tickets if t.repaired_ms is not None)
    if not created:
        return []
    days = range(min(created), max(created | repaired) + 1)
    return [{"day": _day(d), "created": created[d], "repaired": repaired[d]} for d in days]


def _breaches(named: dict[str, _Ticket], spent: dict[str, Counter[Status]],
              limits: Mapping[str, int]) -> list[dict[str, Any]]:
    found = []
    for ticket_id, t in named.items():
        for status, limit in limits.items():
            took = spent[ticket_id][Status(status)]
            if took > limit:
                found.append({"ticket": ticket_id, "status": status, "spent_ms": took,
                              "limit_ms": limit, "over_ms": took - limit,
                              "current": t.status == status, "technicians": t.technicians})
    return sorted(found, key=lambda b: (-b["over_ms"], b["ticket"], b["status"]))


def parse_sla(text: str) -> dict[str, int]:
    """``"received=86400,repairing=259200"`` (seconds per status; the ``repair_sla``
    setting) as ms per status. ValueError naming the bad part: an unknown or final
    status, a duration that is not a positive number."""
    limits: dict[str, int] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, seconds = part.partition("=")
        name = name.strip()
        if not sep or name not in {str(s) for s in Status} or Status(name) in FINAL:
            raise ValueError(f"{part.strip()!r}: name a status that is not final, "
                             "as status=seconds")
        try:
            value = float(seconds)
        except ValueError:
            raise ValueError(f"{part.strip()!r}: the seconds are not a number") from None
        if not value > 0 or value > 10 * 365 * 86400:
            raise ValueError(f"{part.strip()!r}: seconds must be above 0, at most 10 years")
        limits[name] = round(value * 1000)
    return limits


def summarize(
    entries: Iterable[tuple[Event, Meta]],
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    sla_ms: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The report of repair logs (each in log order) over ``[start_ms, end_ms)``;
    ``sla_ms``: the longest time in a status (:func:`parse_sla`), for ``sla``."""
    collected, last_ts = _collect(entries, start_ms, end_ms)
    tickets = list(collected.values())
    as_of = end_ms if end_ms is not None else last_ts
    spent = {ticket_id: t.time_in(as_of) for ticket_id, t in collected.items()}
    per_ticket = list(spent.values())
    limits = dict(sla_ms or {})
    breaches = _breaches(collected, spent, limits)
    time_in_status = {}
    for status in Status:
        if status in FINAL:
            continue
        spans = [spent[status] for spent in per_ticket if spent[status] > 0]
        time_in_status[str(status)] = {
            "tickets": len(spans), "total_ms": sum(spans), "median_ms": _median(spans),
            "limit_ms": limits.get(status), "breaches": sum(b["status"] == status
                                                            for b in breaches)}
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
        "quotes": _quotes(tickets),
        "qa": _qa(tickets),
        "per_day": _per_day(tickets),
        "sla": {"limits_ms": limits, "breaches": breaches},
    }


def to_csv(report: dict[str, Any]) -> str:
    """The report as one flat CSV table (RFC 4180, CRLF line ends).

    Columns :data:`CSV_COLUMNS`; each row belongs to a ``section`` and fills the
    columns named here (the others are empty; an empty ``value`` is None):

    ==============  ===========================  ================================
    section         key                          filled columns
    ==============  ===========================  ================================
    summary         tickets, median_repair_ms,   value
                    repairs_counted,
                    median_turnaround_ms,
                    turnarounds_counted,
                    start_ms, end_ms, as_of_ms
    time_in_status  a non-final status           tickets, total_ms, median_ms,
                                                 limit_ms, breaches
    status          a status                     tickets
    technician      user id                      tickets, open, repaired,
                                                 median_ms (of repairs), qa_failed
    quotes          sent, approved, declined,    value
                    pending, approval_rate
    qa              recorded, failed,            value
                    tickets_failed
    qa_item         the item                     qa_failed
    per_day         the day, YYYY-MM-DD (UTC)    created, repaired
    sla_breach      the ticket                   status, total_ms (spent), limit_ms,
                                                 open (1: still in that status)
    ==============  ===========================  ================================
    """
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, restval="")
    writer.writeheader()
    for key in ("tickets", "median_repair_ms", "repairs_counted", "median_turnaround_ms",
                "turnarounds_counted"):
        writer.writerow({"section": "summary", "key": key, "value": _cell(report[key])})
    for key in ("start_ms", "end_ms", "as_of_ms"):
        writer.writerow({"section": "summary", "key": key,
                         "value": _cell(report["range"][key])})
    for status, row in report["time_in_status"].items():
        writer.writerow({"section": "time_in_status", "key": status, "tickets": row["tickets"],
                         "total_ms": row["total_ms"], "median_ms": _cell(row["median_ms"]),
                         "limit_ms": _cell(row["limit_ms"]), "breaches": row["breaches"]})
    for status, n in report["by_status"].items():
        writer.writerow({"section": "status", "key": status, "tickets": n})
    for row in report["technicians"]:
        writer.writerow({"section": "technician", "key": row["technician"],
                         "tickets": row["tickets"], "open": row["open"],
                         "repaired": row["repaired"],
                         "median_ms": _cell(row["median_repair_ms"]),
                         "qa_failed": row["qa_failed"]})
    for section in ("quotes", "qa"):
        for key, value in report[section].items():
            if key != "items":
                writer.writerow({"section": section, "key": key, "value": _cell(value)})
    for row in report["qa"]["items"]:
        writer.writerow({"section": "qa_item", "key": row["item"], "qa_failed": row["failed"]})
    for row in report["per_day"]:
        writer.writerow({"section": "per_day", "key": row["day"], "created": row["created"],
                         "repaired": row["repaired"]})
    for row in report["sla"]["breaches"]:
        writer.writerow({"section": "sla_breach", "key": row["ticket"], "status": row["status"],
                         "total_ms": row["spent_ms"], "limit_ms": row["limit_ms"],
                         "open": int(row["current"])})
    return out.getvalue()


def _cell(value: Any) -> str:
    return "" if value is None else str(value)
