"""The payment record of a paid request or a tip, and its state machine. Pure.

A payment exists only once the operator's backend verified it (through the
command hook of ``request.submit`` or ``request.tip``), in the same event that
creates its request (or tip). From then on it moves only along
:data:`TRANSITIONS`; :meth:`Payment.move` is the one place its status changes,
and an attempt at another move raises ``INVALID_TRANSITION`` naming the status:

=============  ==================================================================
from           to (what causes it)
=============  ==================================================================
verified       settled (its request was played; a tip settles at once),
               refund_due (its request was vetoed, cancelled by its guest, still
               pending or accepted when the set ended, or refused by the room's
               rules after the payment was verified)
refund_due     refunded (a service confirms: ``payment.refunded``),
               refund_failed (a service reports: ``payment.refund_failed``),
               refund_due again (``payment.retry``: asked once more, attempt + 1)
refund_failed  refunded, refund_due (``payment.retry``)
=============  ==================================================================

Settled and refunded are final: every paid request ends played or refunded.
Each move is one event in the room's log (so webhooks deliver it, once, in
order) and one notice in the guest's ``user:`` room; ``history`` keeps every
move with its seq and time, so an operator sees how a payment got where it is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from roomlog.errors import ErrorCode, RoomlogError

__all__ = [
    "FINAL",
    "REFUND_REASONS",
    "TRANSITIONS",
    "Payment",
    "PaymentStatus",
]


class PaymentStatus(enum.StrEnum):
    VERIFIED = "verified"  # the backend verified it; its request waits for the DJ
    SETTLED = "settled"  # the request was played (or a tip): the DJ earned it
    REFUND_DUE = "refund_due"  # the backend must refund it (told by the event)
    REFUND_FAILED = "refund_failed"  # the backend tried and failed; retried
    REFUNDED = "refunded"  # the backend confirmed the refund


FINAL = frozenset({PaymentStatus.SETTLED, PaymentStatus.REFUNDED})

# Why a refund is due: the request was vetoed by the DJ, cancelled by its guest,
# still waiting when the DJ ended the set, or refused by the room's rules (full,
# closed, ...) after its payment had been verified.
REFUND_REASONS = ("vetoed", "cancelled", "set_ended", "refused")

# action -> the statuses it starts from
TRANSITIONS: dict[str, frozenset[PaymentStatus]] = {
    "settle": frozenset({PaymentStatus.VERIFIED}),
    "refund_due": frozenset({PaymentStatus.VERIFIED}),
    "refunded": frozenset({PaymentStatus.REFUND_DUE, PaymentStatus.REFUND_FAILED}),
    "refund_failed": frozenset({PaymentStatus.REFUND_DUE}),
    "retry": frozenset({PaymentStatus.REFUND_DUE, PaymentStatus.REFUND_FAILED}),
}

_TARGET = {
    "settle": PaymentStatus.SETTLED,
    "refund_due": PaymentStatus.REFUND_DUE,
    "refunded": PaymentStatus.REFUNDED,
    "refund_failed": PaymentStatus.REFUND_FAILED,
    "retry": PaymentStatus.REFUND_DUE,
}


@dataclass(slots=True)
class Payment:
    """One verified payment. ``kind`` is ``request`` or ``tip``; ``request_id`` is
    the request it pays for (or tips); None for a payment the room refused."""

    id: str
    kind: str
    user: str
    reference: str
    amount: int  # minor units, as the backend verified it
    currency: str
    request_id: str | None
    created_ms: int
    status: PaymentStatus = PaymentStatus.VERIFIED
    updated_ms: int = 0
    reason: str | None = None  # why a refund is due (REFUND_REASONS)
    code: str | None = None  # the error that refused its request (reason "refused")
    attempts: int = 0  # refund requests so far (the first refund_due is 1)
    error: str | None = None  # the backend's last refund failure
    refund: str | None = None  # the backend's refund reference, once refunded
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def check(self, action: str) -> None:
        """INVALID_TRANSITION unless ``action`` may start from the current status."""
        allowed = TRANSITIONS[action]
        if self.status not in allowed:
            wanted = " or ".join(sorted(allowed))
            raise RoomlogError(
                ErrorCode.INVALID_TRANSITION,
                f"payment {self.id} is {self.status}; {action} needs one that is {wanted}")

    def move(self, action: str, *, ts: int, seq: int, **facts: Any) -> None:
        """The one place the status changes (the fold calls it with each event)."""
        self.check(action)
        self.status = _TARGET[action]
        self.updated_ms = ts
        if action in ("refund_due", "retry"):
            self.attempts += 1
        entry: dict[str, Any] = {"status": str(self.status), "ts": ts, "seq": seq}
        entry.update({k: v for k, v in facts.items() if v is not None})
        self.history.append(entry)

    def public(self) -> dict[str, Any]:
        """What every subscriber may know (no reference, no history)."""
        return {"id": self.id, "kind": self.kind, "amount": self.amount,
                "currency": self.currency, "status": str(self.status), "reason": self.reason}

    def facts(self) -> dict[str, Any]:
        """What a payment event tells a backend: enough to refund without a lookup."""
        return {"payment_id": self.id, "kind": self.kind, "request_id": self.request_id,
                "user": self.user, "reference": self.reference, "amount": self.amount,
                "currency": self.currency}

    def to_data(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "user": self.user, "reference": self.reference,
            "amount": self.amount, "currency": self.currency, "request_id": self.request_id,
            "created_ms": self.created_ms, "status": str(self.status),
            "updated_ms": self.updated_ms, "reason": self.reason, "code": self.code,
            "attempts": self.attempts, "error": self.error, "refund": self.refund,
            "history": [dict(h) for h in self.history],
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Payment:
        return cls(
            id=str(data["id"]), kind=str(data["kind"]), user=str(data["user"]),
            reference=str(data["reference"]), amount=int(data["amount"]),
            currency=str(data["currency"]), request_id=data["request_id"],
            created_ms=int(data["created_ms"]), status=PaymentStatus(data["status"]),
            updated_ms=int(data["updated_ms"]), reason=data["reason"], code=data["code"],
            attempts=int(data["attempts"]), error=data["error"], refund=data["refund"],
            history=[dict(h) for h in data["history"]],
        )
