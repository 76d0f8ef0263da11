"""A payment provider to test against: a small real HTTP service, in its own process.

``python -m tests.payments.provider --port N`` (the tests start it; ``roomlog demo``
users can too). It keeps payments in memory, the way a card provider's test mode
does, and can be told to misbehave:

=====================================  ==============================================
``POST /payments {amount, currency}``  a guest pays: a new reference, authorised
``POST /payments/{ref}/capture``       the operator's backend verifies and captures it:
  ``{amount, currency, key}``          200 ``{status: captured, amount, currency}``;
                                       402 declined (told to, unknown, too little, other
                                       currency); 409 captured already under another
                                       ``key`` (the same key again: 200, idempotent)
``POST /payments/{ref}/refund {key}``  200 ``{status: refunded, refund}`` (again: the
                                       same refund); 409 not captured
``GET /payments/{ref}``, ``GET /stats``  what happened (counts of captures, refunds)
``GET /?amount=500&currency=EUR``      the payment page a guest opens: a button that
                                       pays and shows the reference to paste
``POST /control``                      ``{mode}`` for every capture, or ``{reference,
                                       mode}`` for one: ``ok``, ``decline``, ``timeout``
                                       (no answer for a minute), ``fail`` (500),
                                       ``twice`` (a second capture of a captured
                                       reference under another key answers captured
                                       again, as a buggy provider would), ``slow``
                                       (captures, then answers a second later);
                                       ``{refunds: ok|fail}`` for refunds
=====================================  ==============================================
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

MODES = ("ok", "decline", "timeout", "fail", "twice", "slow")
_STALL = 60.0  # seconds a "timeout" capture waits before answering
_SLOW = 1.0  # seconds a "slow" capture waits after capturing, before answering


@dataclass
class Payment:
    reference: str
    amount: int
    currency: str
    status: str = "authorised"  # -> captured -> refunded
    key: str | None = None  # the capture's idempotency key
    refund: str | None = None
    captures: int = 0


@dataclass
class Provider:
    payments: dict[str, Payment] = field(default_factory=dict)
    mode: str = "ok"
    modes: dict[str, str] = field(default_factory=dict)  # per reference
    refunds_fail: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    async def pay(self, request: Request) -> Response:
        body = await request.json()
        reference = "pay_" + secrets.token_hex(8)
        self.payments[reference] = Payment(reference, int(body["amount"]), str(body["currency"]))
        self.count("issued")
        return JSONResponse({"reference": reference, "status": "authorised"})

    async def capture(self, request: Request) -> Response:
        ref = request.path_params["ref"]
        body = await request.json()
        self.count("capture_calls")
        mode = self.modes.get(ref, self.mode)
        if mode == "fail":
            return JSONResponse({"error": "internal"}, status_code=500)
        if mode == "timeout":
            await asyncio.sleep(_STALL)
        payment = self.payments.get(ref)
        if payment is None:
            return JSONResponse({"error": "unknown reference"}, status_code=402)
        if mode == "decline":
            return JSONResponse({"error": "declined"}, status_code=402)
        if payment.status != "authorised":
            if payment.key == body.get("key") or mode == "twice":
                return self._captured(payment)
            return JSONResponse({"error": f"already {payment.status}"}, status_code=409)
        if payment.currency != body.get("currency") or payment.amount < int(body["amount"]):
            return JSONResponse({"error": "amount or currency differs"}, status_code=402)
        payment.status, payment.key = "captured", str(body.get("key"))
        self.count("captured")
        if mode == "slow":
            await asyncio.sleep(_SLOW)
        return self._captured(payment)

    def _captured(self, payment: Payment) -> Response:
        payment.captures += 1
        return JSONResponse({"status": "captured", "reference": payment.reference,
                             "amount": payment.amount, "currency": payment.currency})

    async def refund(self, request: Request) -> Response:
        ref = request.path_params["ref"]
        self.count("refund_calls")
        payment = self.payments.get(ref)
        if self.refunds_fail:
            return JSONResponse({"error": "refunds are down"}, status_code=500)
        if payment is None or payment.status not in ("captured", "refunded"):
            return JSONResponse({"error": "not captured"}, status_code=409)
        if payment.status == "captured":
            payment.status, payment.refund = "refunded", "rf_" + secrets.token_hex(6)
            self.count("refunded")
        return JSONResponse({"status": "refunded", "refund": payment.refund})

    async def show(self, request: Request) -> Response:
        payment = self.payments.get(request.path_params["ref"])
        if payment is None:
            return JSONResponse({"error": "unknown reference"}, status_code=404)
        return JSONResponse(payment.__dict__)

    async def stats(self, request: Request) -> Response:
        by_status: dict[str, int] = {}
        for payment in self.payments.values():
            by_status[payment.status] = by_status.get(payment.status, 0) + 1
        return JSONResponse({"counts": self.counts, "by_status": by_status})

    async def control(self, request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        mode = body.get("mode")
        if mode is not None and mode not in MODES:
            return JSONResponse({"error": f"mode is one of {MODES}"}, status_code=400)
        if "reference" in body and mode is not None:
            self.modes[str(body["reference"])] = mode
        elif mode is not None:
            self.mode = mode
        if "refunds" in body:
            self.refunds_fail = body["refunds"] == "fail"
        return JSONResponse({"mode": self.mode, "modes": self.modes,
                             "refunds": "fail" if self.refunds_fail else "ok"})

    async def page(self, request: Request) -> Response:
        """The guest's payment page (the demo's): pay, then copy the reference."""
        amount = int(request.query_params.get("amount", "500"))
        currency = request.query_params.get("currency", "EUR")[:3]
        return HTMLResponse(_PAGE.replace("{amount}", str(amount)).replace(
            "{currency}", currency).replace("{major}", f"{amount / 100:.2f}"))

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})


def create_app() -> Starlette:
    provider = Provider()
    return Starlette(routes=[
        Route("/payments", provider.pay, methods=["POST"]),
        Route("/payments/{ref}", provider.show, methods=["GET"]),
        Route("/payments/{ref}/capture", provider.capture, methods=["POST"]),
        Route("/payments/{ref}/refund", provider.refund, methods=["POST"]),
        Route("/stats", provider.stats, methods=["GET"]),
        Route("/control", provider.control, methods=["POST"]),
        Route("/health", provider.health, methods=["GET"]),
        Route("/", provider.page, methods=["GET"]),
    ])


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Test payment provider</title></head>
<body style="font-family: system-ui; max-width: 30rem; margin: 2rem auto; padding: 0 1rem">
<h1>Test payment provider</h1>
<p>Pay <strong>{major} {currency}</strong> (nothing real is charged).</p>
<button id="pay">Pay</button>
<p id="out" aria-live="polite"></p>
<script>
document.getElementById("pay").onclick = async () => {
  const reply = await fetch("payments", {method: "POST", headers: {"content-type":
    "application/json"}, body: JSON.stringify({amount: {amount}, currency: "{currency}"})});
  const body = await reply.json();
  document.getElementById("out").textContent = "Your payment reference: " + body.reference;
};
</script></body></html>
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning",
                lifespan="off", timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
