"""The operator's backend of the song-request app, as the tests run it: a real process.

``python -m tests.payments.backend --port N --provider URL`` with
``SONGAPP_HOOK_SECRET`` (the hook's ``whsec_`` secret) and ``SONGAPP_TOKEN`` (a
``service`` token for the hub) in its environment.

* ``POST /hook``: the hub's command hook. The signature is checked with the
  ``standardwebhooks`` package. A submit or tip with a ``payment`` is captured at
  the provider under the call's ``hook`` id (so a call asked again for the same
  command captures once), over kept-alive connections (the hub's lean HTTP/1.1
  client: through httpx's pool a capture cost this process 3 to 5 ms of CPU, more
  than the hub spent on the whole paid submit, so loadtest/paid.py measured the
  backend): captured is an allow with ``{amount, currency, reference}``; declined
  is a deny ``PAYMENT_DECLINED``; captured already under another key is
  ``PAYMENT_ALREADY_USED``; a provider that fails or does not answer within
  ``--provider-timeout`` makes this answer 503 (the hub tells the client
  ``UNAVAILABLE``, and the client retries with the same id). Anything else is
  allowed.
* ``POST /sync {"room", "hub"}``: reads the room's log from the hub at ``hub`` (an
  instance's base URL; as a service) and, for
  each ``payment.refund_due`` or ``payment.refund_retry`` not handled yet, refunds
  at the provider and reports ``payment.refunded`` or ``payment.refund_failed``
  to the hub. Webhooks deliver the same events; this reader stands in for them.
* ``POST /webhooks``: the hub's webhooks (``SONGAPP_WEBHOOK_SECRET``; the hub to report
  to: ``SONGAPP_HUB``): each ``payment.refund_due`` or ``payment.refund_retry`` message
  is refunded and reported like ``/sync`` does, deduplicated on the message ``id``.
* ``GET /stats``: hook calls, refunds handled, and the distinct webhook message ids of
  each payment event (``deliveries``: ``{room/payment_id: {event: [ids]}}``).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import uvicorn
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roomlog.outbound import OutboundError
from roomlog.outbound.http11 import Http11Outbound

REFUND_EVENTS = ("payment.refund_due", "payment.refund_retry")


@dataclass
class SongApp:
    provider: str
    secret: str
    token: str
    provider_timeout: float
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=10.0))
    captures: Http11Outbound = field(default_factory=lambda: Http11Outbound(
        allow_private=True, max_connections=64, user_agent="songapp"))
    calls: dict[str, int] = field(default_factory=dict)
    handled: set[tuple[str, str, int]] = field(default_factory=set)  # (room, payment, attempt)
    cursors: dict[str, int] = field(default_factory=dict)
    webhook_secret: str | None = None
    hub: str | None = None
    deliveries: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._verifier = Webhook(self.secret)  # once: it decodes the secret

    def count(self, what: str) -> None:
        self.calls[what] = self.calls.get(what, 0) + 1

    async def hook(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = self._verifier.verify(raw, dict(request.headers))
        except Exception:  # any failure of the library's check is a bad signature
            self.count("bad_signature")
            return Response(status_code=401)
        self.count("hook")
        payment = body["state"].get("payment")
        if payment is None:
            return _json({"verdict": "allow"})
        try:
            reply = await self.captures.post(
                f"{self.provider}/payments/{quote(payment['reference'], safe='')}/capture",
                orjson.dumps({"amount": payment["amount"], "currency": payment["currency"],
                              "key": body["hook"]}),
                {"content-type": "application/json"}, within=self.provider_timeout)
        except OutboundError:
            self.count("provider_down")
            return Response(status_code=503, headers={"retry-after": "1"})
        if reply.status == 200:
            paid = orjson.loads(reply.body)
            self.count("captured")
            return _json({"verdict": "allow", "data": {
                "amount": paid["amount"], "currency": paid["currency"],
                "reference": paid["reference"]}})
        if reply.status == 402:
            self.count("declined")
            error = orjson.loads(reply.body)["error"]
            return _json({"verdict": "deny", "code": "PAYMENT_DECLINED",
                          "message": f"the payment was declined: {error}"})
        if reply.status == 409:
            self.count("used")
            return _json({"verdict": "deny", "code": "PAYMENT_ALREADY_USED",
                          "message": "this payment paid for something else already"})
        self.count("provider_failed")
        return Response(status_code=503, headers={"retry-after": "1"})

    async def sync(self, request: Request) -> Response:
        body = await request.json()
        room, hub = str(body["room"]), str(body["hub"])
        auth = {"authorization": f"Bearer {self.token}"}
        done = {"refunded": 0, "failed": 0}
        while True:
            reply = await self.http.get(f"{hub}/v1/rooms/{room}/messages",
                                        params={"after": self.cursors.get(room, 0)},
                                        headers=auth)
            reply.raise_for_status()
            frames = reply.json()["frames"]
            if not frames:
                return _json(done)
            for frame in frames:
                data = frame.get("data") or {}
                if data.get("event") in REFUND_EVENTS:
                    outcome = await self.refund(hub, room, data, auth)
                    if outcome:
                        done[outcome] += 1
                self.cursors[room] = frame["seq"]

    async def refund(self, hub: str, room: str, event: dict[str, Any], auth: dict[str, str]
                     ) -> str | None:
        """Refund one payment the room says is due, once per attempt; report back."""
        key = (room, str(event["payment_id"]), int(event["attempt"]))
        if key in self.handled:
            return None
        self.handled.add(key)
        self.count("refund")
        try:
            reply = await self.http.post(
                f"{self.provider}/payments/{event['reference']}/refund",
                json={"key": event["payment_id"]}, timeout=self.provider_timeout)
            ok = reply.status_code == 200
            error = None if ok else f"provider answered {reply.status_code}"
        except httpx.HTTPError as exc:
            ok, error = False, f"provider unreachable: {type(exc).__name__}"
        if ok:
            name, args = "payment.refunded", {"payment_id": event["payment_id"],
                                              "refund": reply.json()["refund"]}
        else:
            name, args = "payment.refund_failed", {"payment_id": event["payment_id"],
                                                   "error": error}
        ident = f"{name}-{event['payment_id']}-{event['attempt']}"
        answer = await self.http.post(f"{hub}/v1/rooms/{room}/commands",
                                      json={"name": name, "args": args, "id": ident},
                                      headers=auth)
        answer.raise_for_status()
        return "refunded" if ok else "failed"

    async def webhooks(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = Webhook(self.webhook_secret or "").verify(raw, dict(request.headers))
        except Exception:  # any failure of the library's check is a bad signature
            self.count("bad_webhook_signature")
            return Response(status_code=401)
        self.count("webhook")
        auth = {"authorization": f"Bearer {self.token}"}
        for message in body["messages"]:
            data = message.get("data") or {}
            event = data.get("event", "")
            if not event.startswith("payment."):
                continue
            seen = self.deliveries.setdefault(f"{body['room']}/{data['payment_id']}", {})
            seen.setdefault(event, set()).add(message["id"])
            if event in REFUND_EVENTS and self.hub is not None:
                await self.refund(self.hub, body["room"], data, auth)
        return _json({})

    async def stats(self, request: Request) -> Response:
        deliveries = {key: {event: sorted(ids) for event, ids in events.items()}
                      for key, events in self.deliveries.items()}
        return _json({"calls": self.calls, "handled": len(self.handled),
                      "deliveries": deliveries})

    async def health(self, request: Request) -> Response:
        return _json({"ok": True})


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def create_app(app: SongApp) -> Starlette:
    return Starlette(routes=[
        Route("/hook", app.hook, methods=["POST"]),
        Route("/sync", app.sync, methods=["POST"]),
        Route("/webhooks", app.webhooks, methods=["POST"]),
        Route("/stats", app.stats, methods=["GET"]),
        Route("/health", app.health, methods=["GET"]),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--provider", required=True)
    parser.add_argument("--provider-timeout", type=float, default=2.0)
    args = parser.parse_args()
    app = SongApp(args.provider, os.environ["SONGAPP_HOOK_SECRET"],
                  os.environ["SONGAPP_TOKEN"], args.provider_timeout,
                  webhook_secret=os.environ.get("SONGAPP_WEBHOOK_SECRET"),
                  hub=os.environ.get("SONGAPP_HUB"))
    uvicorn.run(create_app(app), host="127.0.0.1", port=args.port, log_level="warning",
                lifespan="off", timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
