"""Payments across rooms: the index of paying rooms, and the reconciler.

A payment lives in its queue room's state and log (``roomlog.rooms.queue_payment``);
what this module adds is the view across rooms an operator needs:

* :class:`PaymentIndex` (port; SQL adapter ``roomlog.log.claims``): which rooms took a
  payment lately, and which room a reference paid in. It reads the claims a paid
  command made (``RoomTxn.claim``), so it never disagrees with what was committed.
* :class:`Reconciler`: lists every payment that is not final (with its room and
  history), and asks again for refunds stuck past a deadline: a refund due or failed
  for longer than ``deadline_ms`` gets ``payment.retry``, run as the service
  ``roomlog-reconciler`` with the command id ``reconcile-{payment}-{attempt}``, so
  instances reconciling at once retry it once. Each retry is an event
  (``payment.refund_retry``) that webhooks deliver to the backend, which refunds
  again (idempotently: the refund's key is the payment id).

A verification that answered late (the backend captured, the hub gave up waiting,
the guest never retried) leaves no record in the hub: a payment exists only with
its decision. The backend finds such captures by asking ``GET
/v1/admin/payments/references/{reference}``: ``used: false`` after its own deadline
means refund it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from roomlog.commands import Call, CommandRunner, Outcome
from roomlog.errors import RoomlogError
from roomlog.identity import Principal, Role
from roomlog.log import Log
from roomlog.rooms.domain import Command
from roomlog.rooms.queue import QueueState
from roomlog.rooms.queue_payment import PaymentStatus

__all__ = ["RECONCILER", "PaymentIndex", "Reconciler", "Used"]

logger = logging.getLogger(__name__)

RECONCILER = Principal("roomlog-reconciler", Role.SERVICE)
_STUCK = frozenset({PaymentStatus.REFUND_DUE, PaymentStatus.REFUND_FAILED})


@dataclass(frozen=True, slots=True)
class Used:
    """Where a payment reference was used: its room and when."""

    room: str
    ts: int


class PaymentIndex(Protocol):
    """Read-only; reads committed claims only."""

    async def rooms(self, since_ms: int) -> list[str]:
        """Rooms that took a payment at or after ``since_ms``, by name."""

    async def reference(self, reference: str) -> Used | None:
        """Where ``reference`` funded a request or tip; None if it never did."""


class Reconciler:
    def __init__(self, index: PaymentIndex, log: Log, runner: CommandRunner,
                 run: Callable[[str, Call], Awaitable[Outcome]], *, deadline_ms: int,
                 horizon_ms: int) -> None:
        self.index = index
        self._log = log
        self._runner = runner
        self._run = run
        self._deadline_ms = deadline_ms
        self.horizon_ms = horizon_ms
        self.retried = 0  # payment.retry commands this instance committed
        self.stuck = 0  # refunds past the deadline at the last run (a gauge)

    async def open_payments(self, now_ms: int) -> list[dict[str, Any]]:
        """Every payment that is not final, in paying rooms of the horizon: the record
        (history included) with ``room`` and ``stuck`` (a refund past the deadline)."""
        found: list[dict[str, Any]] = []
        for room in await self.index.rooms(now_ms - self.horizon_ms):
            payments = await self._runner.read(self._log, room, _open)
            for payment in payments:
                stuck = (payment["status"] in _STUCK
                         and payment["updated_ms"] <= now_ms - self._deadline_ms)
                found.append({"room": room, **payment, "stuck": stuck})
        return found

    async def reconcile(self, now_ms: int) -> int:
        """Ask again for every stuck refund; how many were asked (by this instance)."""
        stuck = [p for p in await self.open_payments(now_ms) if p["stuck"]]
        self.stuck = len(stuck)
        asked = 0
        for payment in stuck:
            ident = f"reconcile-{payment['id']}-{payment['attempts']}"
            call = Call(RECONCILER, Command("payment.retry", {"payment_id": payment["id"]}),
                        ident)
            try:
                outcome = await self._run(payment["room"], call)
            except RoomlogError as err:  # moved on meanwhile (refunded): nothing to do
                logger.info("reconciling %s in %s: %s", payment["id"], payment["room"],
                            err.message)
                continue
            if not outcome.duplicate:
                asked += 1
        if stuck:
            logger.warning("%d refunds were stuck past %d s; asked the backend again for %d",
                           len(stuck), self._deadline_ms // 1000, asked)
        self.retried += asked
        return asked


def _open(state: QueueState) -> list[dict[str, Any]]:
    return [p.to_data() for p in state.payments.values() if not p.final]
