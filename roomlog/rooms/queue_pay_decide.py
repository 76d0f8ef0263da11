"""The payment commands of a ``queue:`` room: tips and the operators' refund reports.

Pure; the rules are tabled in :mod:`roomlog.rooms.queue`. Operators (a
``service`` backend or an admin) report what became of a refund the room asked
for (``payment.refunded``, ``payment.refund_failed``) and ask again
(``payment.retry``: the reconciler does, for refunds stuck past a deadline). A
report that changes nothing (a refund confirmed twice) succeeds with no events,
so a backend that retries its own report is safe.
"""

from __future__ import annotations

from typing import Any

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal
from roomlog.rooms.args import only, optional_text, text
from roomlog.rooms.domain import Approval, Decision, Event
from roomlog.rooms.queue_pay import claim, error_text, find, new_payment, pay_args, verify
from roomlog.rooms.queue_payment import PaymentStatus
from roomlog.rooms.queue_state import QueueState, Status

__all__ = ["OPERATOR_COMMANDS", "tip"]

Args = dict[str, Any]
_REQUEST_ID_MAX = 32
_PAYMENT_ID_MAX = 32
_REFUND_MAX = 200
_TIPPABLE = frozenset({Status.PLAYING, Status.PLAYED})


def tip(state: QueueState, args: Args, approval: Approval | None, actor: Principal,
        now_ms: int) -> Decision:
    """``request.tip {request_id, payment: {reference, amount}}``: after a song is
    playing or played, any guest may tip the DJ for it (the backend verifies the
    amount like a request's payment). The tip is settled at once."""
    only(args, {"request_id", "payment"})
    rid = text(args["request_id"], "request_id", _REQUEST_ID_MAX)
    pay = pay_args(args["payment"], tip=True)
    if not state.settings.tips:
        raise RoomlogError(ErrorCode.FORBIDDEN, f"tips are off in {state.room}")
    request = state.requests.get(rid)
    if request is None:
        raise RoomlogError(ErrorCode.NOT_FOUND, f"no request {rid!r} in {state.room}")
    if request.status not in _TIPPABLE:
        raise RoomlogError(ErrorCode.INVALID_TRANSITION,
                            f"{rid} is {request.status}; tips are for a song playing or played")
    verified = verify(state, pay, approval)
    if verified is None:  # the backend is asked next
        return Decision([], {"request_id": rid})
    body = new_payment(state, verified, kind="tip", user=actor.user, request_id=rid)
    event = Event("tip.sent", {"request_id": rid, "dj": state.owner, "payment": body})
    return Decision([event], {"request_id": rid, "payment_id": body["payment_id"],
                              "amount": verified.amount, "currency": verified.currency},
                    claims=(claim(verified),))


def _operator(state: QueueState, actor: Principal, name: str) -> None:
    if not actor.is_operator:
        raise RoomlogError(ErrorCode.FORBIDDEN,
                            f"only a service backend or an admin may run {name} in {state.room}")


def _payment_id(args: Args) -> str:
    return text(args["payment_id"], "payment_id", _PAYMENT_ID_MAX)


def _refunded(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    _operator(state, actor, "payment.refunded")
    only(args, {"payment_id"}, frozenset({"refund"}))
    payment = find(state, _payment_id(args))
    result = {"payment_id": payment.id, "status": str(PaymentStatus.REFUNDED)}
    if payment.status is PaymentStatus.REFUNDED:
        return Decision([], result)
    payment.check("refunded")
    refund = optional_text(args.get("refund"), "refund", _REFUND_MAX)
    event = Event("payment.refunded", {**payment.facts(), "refund": refund})
    return Decision([event], result)


def _refund_failed(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    _operator(state, actor, "payment.refund_failed")
    only(args, {"payment_id", "error"})
    payment = find(state, _payment_id(args))
    error = error_text(args["error"])
    result = {"payment_id": payment.id, "status": str(PaymentStatus.REFUND_FAILED)}
    if payment.status is PaymentStatus.REFUND_FAILED and payment.error == error:
        return Decision([], result)
    payment.check("refund_failed")
    event = Event("payment.refund_failed", {**payment.facts(), "error": error,
                                            "attempt": payment.attempts})
    return Decision([event], result)


def _retry(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    _operator(state, actor, "payment.retry")
    only(args, {"payment_id"})
    payment = find(state, _payment_id(args))
    payment.check("retry")
    attempt = payment.attempts + 1
    event = Event("payment.refund_retry", {**payment.facts(), "reason": payment.reason,
                                           "attempt": attempt})
    return Decision([event], {"payment_id": payment.id, "status": "refund_due",
                              "attempt": attempt})


OPERATOR_COMMANDS = {
    "payment.refunded": _refunded,
    "payment.refund_failed": _refund_failed,
    "payment.retry": _retry,
}
