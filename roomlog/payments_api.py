"""The payment endpoints of the admin API, for admins and services (backends).

* ``GET /v1/admin/payments``: every payment that is not final (verified, refund
  due, refund failed) in the rooms that took payments within the reconcile horizon,
  each with its ``room``, ``history`` and ``stuck`` (a refund past the deadline):
  ``{"payments": [...], "stuck": n}``.
* ``GET /v1/admin/payments/references/{reference}``: whether a payment reference
  funded a request or tip, and where: ``{"reference", "used", "room", "ts"}``. A
  backend that captured a payment whose verification the hub gave up on finds here
  that it was never used, and refunds it.
* ``GET /v1/admin/payments/analytics?from=&to=&format=json|csv``: the money report
  of every set (queue room) that took payments within the horizon, and the totals
  per currency (``roomlog.rooms.queue_pay_analytics.merge``); CSV: the rows of each
  set with its room in front.
* ``POST /v1/admin/payments/reconcile``: run the reconciler now (it also runs every
  ``payment_reconcile_interval``): ``{"asked": n}``.
"""

from __future__ import annotations

import csv
import io
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from roomlog.commands import retained_events
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.openapi.operation import Operation, Param, Reply, describe
from roomlog.openapi.schemas import MS, SEQ, STRING, json_reply, obj
from roomlog.payments import PaymentIndex, Reconciler
from roomlog.rooms.domain import Event, Meta
from roomlog.rooms.queue_analytics import CSV_COLUMNS
from roomlog.rooms.queue_pay_analytics import merge, money, money_rows
from roomlog.services import Services
from roomlog.transports.http import authenticate, handles_errors, query_int

__all__ = ["PaymentApi"]

_REFERENCE_MAX = 200


_TAGS = ("payments",)
_PAYMENT = obj({"room": STRING, "status": STRING, "stuck": {"type": "boolean"},
                "history": {"type": "array", "items": {"type": "object"}}},
               description="a payment record (docs/queue.md#paid-requests) with its room")
_RANGE = (Param("from", "query", {"type": "integer", "minimum": 0}, "ms since the Unix epoch"),
          Param("to", "query", {"type": "integer", "minimum": 0}, "ms since the Unix epoch"),
          Param("format", "query", {"type": "string", "enum": ["json", "csv"]}, "default json"))


class PaymentApi:
    """Endpoints as bound methods; ``app.py`` lists them in its routes."""

    def __init__(self, services: Services, index: PaymentIndex, reconciler: Reconciler) -> None:
        self._s = services
        self._index = index
        self._reconciler = reconciler

    def _operator(self, request: Request) -> None:
        if not authenticate(request, self._s).is_operator:
            raise RoomlogError(ErrorCode.FORBIDDEN, "only admin or service may read payments")

    @describe(Operation(
        "Every payment that is not final, with its history", tags=_TAGS,
        replies={200: json_reply("open payments", obj(
            {"payments": {"type": "array", "items": _PAYMENT}, "stuck": SEQ}))},
        errors=(503,)))
    @handles_errors
    async def listing(self, request: Request) -> Response:
        self._operator(request)
        found = await self._reconciler.open_payments(_now_ms())
        return JSONResponse({"payments": found, "stuck": sum(1 for p in found if p["stuck"])})

    @describe(Operation(
        "Whether a payment reference funded a request or tip, and where", tags=_TAGS,
        params=(Param("reference", "path", {"type": "string"}, "the provider's reference",
                      required=True),),
        replies={200: json_reply("used or not", obj(
            {"reference": STRING, "used": {"type": "boolean"}},
            {"room": {"type": ["string", "null"]}, "ts": {"oneOf": [MS, {"type": "null"}]}}))},
        errors=(400, 503)))
    @handles_errors
    async def reference(self, request: Request) -> Response:
        self._operator(request)
        reference = request.path_params["reference"]
        if not 0 < len(reference) <= _REFERENCE_MAX:
            raise RoomlogError(ErrorCode.INVALID_ARGS,
                                f"a reference has 1 to {_REFERENCE_MAX} characters")
        used = await self._index.reference(reference)
        return JSONResponse({"reference": reference, "used": used is not None,
                             "room": used and used.room, "ts": used and used.ts})

    @describe(Operation(
        "The money of every set that took payments, and totals per currency", tags=_TAGS,
        params=_RANGE,
        replies={200: Reply("the report (JSON), or its rows (CSV)", {
            "application/json": obj({}, {"sets": {"type": "object"}}),
            "text/csv": {"type": "string"}})},
        errors=(400, 503)))
    @handles_errors
    async def analytics(self, request: Request) -> Response:
        self._operator(request)
        start = query_int(request, "from", -1, low=0, high=2**62)
        end = query_int(request, "to", -1, low=0, high=2**62)
        reports = {}
        for room in await self._index.rooms(_now_ms() - self._reconciler.horizon_ms):
            reports[room] = money(await self._events(room), start_ms=None if start < 0 else start,
                                  end_ms=None if end < 0 else end)
        if request.query_params.get("format") == "csv":
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(("room", *CSV_COLUMNS))
            for room, report in reports.items():
                writer.writerows([room, *row] for row in money_rows(report))
            return Response(out.getvalue(), media_type="text/csv; charset=utf-8")
        return JSONResponse(merge(reports))

    async def _events(self, room: str) -> list[tuple[Event, Meta]]:
        return await retained_events(self._s.log, room, self._s.settings.max_page_size)

    @describe(Operation(
        "Run the payment reconciler now", tags=_TAGS,
        replies={200: json_reply("how many payments the backend was asked about again",
                                 obj({"asked": SEQ}))}, errors=(503,)))
    @handles_errors
    async def reconcile(self, request: Request) -> Response:
        self._operator(request)
        return JSONResponse({"asked": await self._reconciler.reconcile(_now_ms())})


def _now_ms() -> int:
    return int(time.time() * 1000)
