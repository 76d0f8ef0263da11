"""Payments in a ``queue:`` room: deciding and folding them. Pure.

The record and its state machine are in :mod:`.queue_payment`; the rules of the
room that use them (submit, cancel, veto, play, end) in :mod:`.queue_decide`,
which calls the helpers here. Who may run what is tabled in :mod:`.queue`.

How a payment is checked (``verify``), in order:

1. no ``payment`` argument: ``PAYMENT_REQUIRED`` when something is to be paid
   (a paid room, or a jump), else a free request;
2. a reference this room took before: ``PAYMENT_ALREADY_USED`` (every room and
   instance: the runner's :class:`~roomlog.rooms.domain.Claim` in the database);
3. no command hook decides the command: ``UNAVAILABLE`` (nothing could verify
   it; the operator must configure one), or ``INVALID_ARGS`` in a free room;
4. the hook has not been asked yet (``Approval.pending``, the gate's probe):
   the room's rules are checked and the backend is asked next;
5. the hook failed open (it did not answer): ``UNAVAILABLE``, retry the same id;
6. an allow whose ``data`` lacks ``amount`` (an integer >= 0) or ``currency``
   (three capital letters): ``UNAVAILABLE`` (the backend's bug; it is asked again
   on retry). Otherwise the payment is verified, at the amount the backend says.

The price a request pays is the one the hub told the backend (``hook_view``):
the DJ changing it after that affects only later requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.rooms.args import int_in, invalid, text
from roomlog.rooms.domain import Approval, Claim, Event, Meta, Notice
from roomlog.rooms.queue_payment import Payment, PaymentStatus
from roomlog.rooms.queue_state import QueueState, Request

__all__ = [
    "AMOUNT_MAX",
    "PAYMENT_EVENTS",
    "PayArgs",
    "Verified",
    "apply_payment",
    "claim",
    "earnings",
    "new_payment",
    "pay_args",
    "refund_events",
    "required",
    "settle_events",
    "verify",
]

REFERENCE_MAX = 200
ERROR_MAX = 500
AMOUNT_MAX = 100_000_000  # minor units: a million euros is not a song request
_CURRENCY_RE = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True, slots=True)
class PayArgs:
    """The ``payment`` argument: ``{"reference", "jump"?}`` for a request,
    ``{"reference", "amount"}`` for a tip."""

    reference: str
    jump: bool = False
    amount: int | None = None


@dataclass(frozen=True, slots=True)
class Verified:
    """A payment the backend verified: what it says was paid."""

    reference: str
    amount: int
    currency: str
    data: dict[str, Any]


def pay_args(value: Any, *, tip: bool = False) -> PayArgs:
    if not isinstance(value, dict):
        raise invalid("payment must be an object {\"reference\": ...}")
    optional = frozenset({"amount"} if tip else {"jump"})
    unknown = sorted(set(value) - {"reference"} - optional)
    if unknown:
        raise invalid(f"unknown payment field(s) {', '.join(unknown)}")
    if "reference" not in value:
        raise invalid("payment needs a reference")
    reference = text(value["reference"], "payment.reference", REFERENCE_MAX)
    if tip:
        if "amount" not in value:
            raise invalid("a tip's payment needs an amount (minor units)")
        return PayArgs(reference, amount=int_in(value["amount"], "payment.amount", 1,
                                                AMOUNT_MAX))
    jump = value.get("jump", False)
    if not isinstance(jump, bool):
        raise invalid("payment.jump must be true or false")
    return PayArgs(reference, jump=jump)


def required(state: QueueState, pay: PayArgs | None) -> int:
    """What a request (or tip) must pay now, in minor units of the room's currency."""
    if pay is not None and pay.amount is not None:
        return pay.amount
    settings = state.settings
    if pay is not None and pay.jump:
        if settings.jump_price <= 0:
            raise invalid(f"{state.room} has no price to jump the queue")
        return settings.jump_price
    return settings.price


def verify(state: QueueState, pay: PayArgs | None, approval: Approval | None) -> Verified | None:
    """The verified payment, or None (free, or not asked yet); see the module docstring."""
    needed = required(state, pay)
    settings = state.settings
    if pay is None:
        if needed > 0:
            raise RoomlogError(
                ErrorCode.PAYMENT_REQUIRED,
                f"a request in {state.room} costs {needed} (minor units of "
                f"{settings.currency}); pay and send the payment's reference",
                details={"amount": needed, "currency": settings.currency,
                         "jump_amount": settings.jump_price or None})
        return None
    if pay.reference in state.references:
        raise _used(pay.reference)
    if approval is None or approval.pending:
        if needed == 0:
            raise invalid(f"requests in {state.room} are free; send no payment")
        if approval is None:
            raise RoomlogError(ErrorCode.UNAVAILABLE,
                                f"no backend verifies payments in {state.room}; the "
                                "operator must configure a command hook for it",
                                retry_after=60.0)
        return None
    if approval.failed_open:
        raise RoomlogError(ErrorCode.UNAVAILABLE,
                            "the payment could not be verified now; retry with the same id",
                            retry_after=1.0)
    data = approval.data
    amount, currency = data.get("amount"), data.get("currency")
    if (isinstance(amount, bool) or not isinstance(amount, int)
            or not 0 <= amount <= AMOUNT_MAX or not isinstance(currency, str)
            or not _CURRENCY_RE.fullmatch(currency)):
        raise RoomlogError(ErrorCode.UNAVAILABLE,
                            "the backend allowed the payment without saying what was paid "
                            "(data.amount, data.currency); retry with the same id",
                            retry_after=1.0)
    return Verified(pay.reference, amount, currency, data)


def _used(reference: str) -> RoomlogError:
    return RoomlogError(ErrorCode.PAYMENT_ALREADY_USED,
                        f"payment {reference[:40]!r} already paid for a request or tip",
                        details={"reference": reference})


def claim(verified: Verified) -> Claim:
    """The database claim that keeps a reference to one request or tip, ever."""
    return Claim(f"payment:{verified.reference}", _used(verified.reference))


def new_payment(state: QueueState, verified: Verified, *, kind: str, user: str,
                request_id: str | None) -> dict[str, Any]:
    """The ``payment`` body of the event that creates a payment."""
    return {"payment_id": f"p{state.next_payment}", "kind": kind, "request_id": request_id,
            "user": user, "reference": verified.reference, "amount": verified.amount,
            "currency": verified.currency}


def settle_events(state: QueueState, request: Request) -> list[Event]:
    """``payment.settled`` for a request that is being played, if it was paid."""
    payment = _payment_of(state, request)
    if payment is None:
        return []
    payment.check("settle")
    return [Event("payment.settled", payment.facts())]


def refund_events(state: QueueState, request: Request, reason: str) -> list[Event]:
    """``payment.refund_due`` for a paid request that ends without being played."""
    payment = _payment_of(state, request)
    if payment is None:
        return []
    payment.check("refund_due")
    return [Event("payment.refund_due", {**payment.facts(), "reason": reason,
                                         "attempt": payment.attempts + 1})]


def _payment_of(state: QueueState, request: Request) -> Payment | None:
    if request.payment_id is None:
        return None
    payment = state.payments[request.payment_id]
    return payment if payment.status is PaymentStatus.VERIFIED else None


def find(state: QueueState, payment_id: str) -> Payment:
    payment = state.payments.get(payment_id)
    if payment is None:
        raise RoomlogError(ErrorCode.NOT_FOUND, f"no payment {payment_id!r} in {state.room}")
    return payment


def error_text(value: Any) -> str:
    return text(value, "error", ERROR_MAX)


# -- the fold ------------------------------------------------------------------------


def create(state: QueueState, body: dict[str, Any], meta: Meta) -> Payment:
    """A verified payment, from an event's ``payment`` body (or a refund's facts)."""
    payment = Payment(
        id=str(body["payment_id"]), kind=str(body["kind"]), user=str(body["user"]),
        reference=str(body["reference"]), amount=int(body["amount"]),
        currency=str(body["currency"]), request_id=body.get("request_id"),
        created_ms=meta.ts, updated_ms=meta.ts,
        history=[{"status": str(PaymentStatus.VERIFIED), "ts": meta.ts, "seq": meta.seq}])
    state.payments[payment.id] = payment
    state.references.add(payment.reference)
    state.next_payment += 1
    return payment


def notice(state: QueueState, payment: Payment, kind: str, meta: Meta) -> Notice:
    """What the paying guest is told in ``user:{id}``."""
    return Notice(payment.user, {
        "notice": kind, "room": state.room, "payment_id": payment.id,
        "request_id": payment.request_id, "kind": payment.kind, "amount": payment.amount,
        "currency": payment.currency, "status": str(payment.status),
        "reason": payment.reason, "seq": meta.seq})


def apply_payment(state: QueueState, kind: str, data: dict[str, Any], meta: Meta
                  ) -> list[Notice]:
    """Fold one ``payment.*`` or ``tip.sent`` event."""
    if kind == "tip.sent":
        payment = create(state, data["payment"], meta)
        payment.move("settle", ts=meta.ts, seq=meta.seq)
        return [notice(state, payment, kind, meta)]
    known = state.payments.get(str(data["payment_id"]))
    # None: a payment refused with its request, created refund-due by this event
    payment = create(state, data, meta) if known is None else known
    if kind == "payment.settled":
        payment.move("settle", ts=meta.ts, seq=meta.seq)
    elif kind == "payment.refund_due":
        payment.move("refund_due", ts=meta.ts, seq=meta.seq, reason=data["reason"],
                     code=data.get("code"))
        payment.reason, payment.code = data["reason"], data.get("code")
    elif kind == "payment.refund_retry":
        payment.move("retry", ts=meta.ts, seq=meta.seq, attempt=data["attempt"])
    elif kind == "payment.refunded":
        payment.move("refunded", ts=meta.ts, seq=meta.seq, refund=data.get("refund"))
        payment.refund = data.get("refund")
    elif kind == "payment.refund_failed":
        payment.move("refund_failed", ts=meta.ts, seq=meta.seq, error=str(data["error"]))
        payment.error = str(data["error"])
    else:
        raise ValueError(f"unknown payment event {kind!r}")
    return [notice(state, payment, kind, meta)]


def earnings(state: QueueState) -> dict[str, Any]:
    """The DJ's money so far, in minor units of each currency: ``settled`` (played
    requests and tips), ``tips`` (of which tips), ``waiting`` (verified, not played
    yet), ``refunding`` (refund due or failed) and ``refunded``."""
    out: dict[str, dict[str, int]] = {}
    for p in state.payments.values():
        sums = out.setdefault(p.currency, {"settled": 0, "tips": 0, "waiting": 0,
                                           "refunding": 0, "refunded": 0})
        if p.status is PaymentStatus.SETTLED:
            sums["settled"] += p.amount
            if p.kind == "tip":
                sums["tips"] += p.amount
        elif p.status is PaymentStatus.VERIFIED:
            sums["waiting"] += p.amount
        elif p.status is PaymentStatus.REFUNDED:
            sums["refunded"] += p.amount
        else:
            sums["refunding"] += p.amount
    return out


PAYMENT_EVENTS = ("payment.settled", "payment.refund_due", "payment.refund_retry",
                  "payment.refunded", "payment.refund_failed", "tip.sent")
