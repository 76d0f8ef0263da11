"""The money of one ``queue:`` room (one DJ set), from its log. Pure.

:func:`money` reads ``(Event, Meta)`` pairs in log order, like
:func:`roomlog.rooms.queue_analytics.summarize` (which puts this report under
``payments``), with the same range rule: payments **created** in ``[start_ms,
end_ms)`` (with their request, a refused request, or a tip), in the state they
had at ``end_ms``. Amounts are in minor units, per currency (a room may change its
currency; sums never mix two).

* ``requests``: ``paid`` and ``free`` requests submitted in the range;
* per currency: ``earned`` (settled: played requests and tips), ``tips`` (count,
  amount), ``average_price`` (mean verified amount of paid requests, None if none;
  ``paid_requests`` counts them; a payment refused with its request is neither),
  ``refunds`` by reason (count, amount; a refund counts from the moment it is
  due, ``refunded`` says how many the backend confirmed), ``waiting`` (verified,
  not played yet), ``earned_per_hour`` (settled amount per UTC hour of settlement,
  every hour from the first to the last).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from roomlog.rooms.domain import Event, Meta
from roomlog.rooms.queue_payment import REFUND_REASONS
from roomlog.rooms.queue_state import HOUR_MS

__all__ = ["merge", "money", "money_rows"]


@dataclass(slots=True)
class _Paid:
    kind: str
    amount: int
    currency: str
    status: str = "verified"
    reason: str | None = None
    settled_ms: int | None = None


def _collect(entries: Iterable[tuple[Event, Meta]], start_ms: int | None,
             end_ms: int | None) -> tuple[dict[str, _Paid], Counter[str]]:
    paid: dict[str, _Paid] = {}
    requests: Counter[str] = Counter()
    for event, meta in entries:
        if end_ms is not None and meta.ts >= end_ms:
            continue
        data = event.data
        fresh = start_ms is None or meta.ts >= start_ms
        body = data.get("payment") if event.type in ("request.submitted", "tip.sent") else None
        if event.type == "request.submitted" and fresh:
            requests["paid" if body else "free"] += 1
        if body is not None and fresh:
            paid[str(body["payment_id"])] = _Paid(str(body["kind"]), int(body["amount"]),
                                                  str(body["currency"]))
            if event.type == "tip.sent":
                paid[str(body["payment_id"])].status = "settled"
                paid[str(body["payment_id"])].settled_ms = meta.ts
            continue
        if not event.type.startswith("payment."):
            continue
        pid = str(data["payment_id"])
        if pid not in paid and fresh and data.get("reason") == "refused":
            paid[pid] = _Paid(str(data["kind"]), int(data["amount"]), str(data["currency"]))
        record = paid.get(pid)
        if record is None:
            continue
        if event.type == "payment.settled":
            record.status, record.settled_ms = "settled", meta.ts
        elif event.type == "payment.refund_due":
            record.status, record.reason = "refund_due", str(data["reason"])
        elif event.type == "payment.refunded":
            record.status = "refunded"
    return paid, requests


def _hour(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%dT%H:00:00Z")


def _currency(records: list[_Paid]) -> dict[str, Any]:
    settled = [p for p in records if p.status == "settled"]
    tips = [p for p in records if p.kind == "tip"]
    prices = [p.amount for p in records if p.kind == "request" and p.reason != "refused"]
    refunds: dict[str, dict[str, int]] = {}
    for p in records:
        if p.reason is not None:
            row = refunds.setdefault(p.reason, {"count": 0, "amount": 0, "refunded": 0})
            row["count"] += 1
            row["amount"] += p.amount
            row["refunded"] += p.status == "refunded"
    hours = Counter[int]()
    for p in settled:
        assert p.settled_ms is not None
        hours[p.settled_ms // HOUR_MS] += p.amount
    per_hour = ([{"hour": _hour(h * HOUR_MS), "earned": hours[h]}
                 for h in range(min(hours), max(hours) + 1)] if hours else [])
    return {
        "earned": sum(p.amount for p in settled),
        "tips": {"count": len(tips), "amount": sum(p.amount for p in tips)},
        "average_price": round(sum(prices) / len(prices), 2) if prices else None,
        "paid_requests": len(prices),
        "waiting": sum(p.amount for p in records if p.status == "verified"),
        "refunds": {r: refunds[r] for r in REFUND_REASONS if r in refunds},
        "earned_per_hour": per_hour,
    }


def money(entries: Iterable[tuple[Event, Meta]], *, start_ms: int | None = None,
          end_ms: int | None = None) -> dict[str, Any]:
    """The money report of one room's log (see the module docstring)."""
    paid, requests = _collect(entries, start_ms, end_ms)
    by_currency: dict[str, list[_Paid]] = {}
    for record in paid.values():
        by_currency.setdefault(record.currency, []).append(record)
    return {"requests": {"paid": requests["paid"], "free": requests["free"]},
            "currencies": {c: _currency(rs) for c, rs in sorted(by_currency.items())}}


def merge(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Operators' view across rooms: each set's report, and the totals per currency
    (earned, tips, paid requests, refunds by reason)."""
    totals: dict[str, dict[str, Any]] = {}
    requests = Counter[str]()
    for report in reports.values():
        requests.update(report["requests"])
        for currency, row in report["currencies"].items():
            total = totals.setdefault(currency, {"earned": 0, "tips": 0, "paid_requests": 0,
                                                 "refunds": Counter[str]()})
            total["earned"] += row["earned"]
            total["tips"] += row["tips"]["amount"]
            total["paid_requests"] += row["paid_requests"]
            total["refunds"].update({r: v["count"] for r, v in row["refunds"].items()})
    for total in totals.values():
        total["refunds"] = dict(total["refunds"])
    return {"sets": reports, "requests": dict(requests), "totals": totals}


def money_rows(report: dict[str, Any]) -> list[list[Any]]:
    """CSV rows (``queue_analytics.CSV_COLUMNS``: section, key, label, requests,
    votes, value) of the money report: ``money`` (label: currency; key: earned,
    tips, tips_count, average_price, paid_requests, waiting), ``refund`` (key:
    reason; requests: count; value: amount), ``earned_hour`` (key: hour; value) and
    ``requests_paid``/``requests_free`` counts."""
    rows: list[list[Any]] = [["money", "requests_paid", "", report["requests"]["paid"], "", ""],
                             ["money", "requests_free", "", report["requests"]["free"], "", ""]]
    for currency, row in report["currencies"].items():
        for key, value in (("earned", row["earned"]), ("tips", row["tips"]["amount"]),
                           ("tips_count", row["tips"]["count"]),
                           ("average_price", row["average_price"]),
                           ("paid_requests", row["paid_requests"]),
                           ("waiting", row["waiting"])):
            rows.append(["money", key, currency, "", "", "" if value is None else value])
        for reason, refund in row["refunds"].items():
            rows.append(["refund", reason, currency, refund["count"], "", refund["amount"]])
        for hour in row["earned_per_hour"]:
            rows.append(["earned_hour", hour["hour"], currency, "", "", hour["earned"]])
    return rows
