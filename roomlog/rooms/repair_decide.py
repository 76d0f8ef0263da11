"""The decider of a ``repair:`` room: state + command + actor + now -> events.

Never mutates the state. The rules, who may run what and the error codes (and
the order they are checked in) are tabled in :mod:`roomlog.rooms.repair`; this
module is their one implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal, Role
from roomlog.rooms import repair_args as A
from roomlog.rooms.domain import Command, Decision, Event
from roomlog.rooms.repair_state import (
    DECIDERS,
    FINAL,
    OPERATORS,
    WORKERS,
    RepairState,
    Status,
    graph_targets,
    is_party,
    moves,
    qa_key,
)

__all__ = ["COMMANDS", "COMMAND_ROLES", "actor_moves", "decide"]

Args = dict[str, Any]
Handler = Callable[[RepairState, Args, Principal, int], Decision]

_OPEN = frozenset(Status) - FINAL
_QA_STATUSES = frozenset({Status.REPAIRING, Status.QUALITY_CHECK})
_NOTE_ROLES = frozenset({*WORKERS, Role.CUSTOMER})

# Which roles may ever run each command (the first FORBIDDEN check). Technicians
# and customers are further limited to their tickets (the second).
COMMAND_ROLES: dict[str, frozenset[Role]] = {
    "ticket.create": WORKERS,
    "ticket.assign": OPERATORS,
    "status.set": WORKERS,
    "quote.approve": DECIDERS,
    "quote.decline": DECIDERS,
    "milestone.add": WORKERS,
    "eta.set": WORKERS,
    "photo.add": WORKERS,
    "qa.record": WORKERS,
    "note.add": _NOTE_ROLES,
}


# ---------------------------------------------------------------------------
# Helpers


def actor_moves(state: RepairState, actor: Principal) -> list[str]:
    """The statuses ``actor`` may move the ticket to now (by status.set, or by
    quote.approve / quote.decline for its customer)."""
    if state.status is None or not is_party(state, actor):
        return []
    if actor.role is Role.CUSTOMER:
        if state.status is Status.AWAITING_APPROVAL:
            return [str(Status.REPAIRING), str(Status.READY_FOR_PICKUP)]
        return []
    return [str(s) for s in moves(state, actor.role)]


def _refuse(state: RepairState, actor: Principal, code: ErrorCode, what: str,
            **details: Any) -> RoomlogError:
    """A refusal naming the current status and the moves ``actor`` has from it."""
    allowed = actor_moves(state, actor)
    return RoomlogError(
        code,
        f"{state.room} is {state.status}: {what}; allowed moves for you: "
        f"{', '.join(allowed) or 'none'}",
        details={"status": str(state.status), "allowed": allowed, **details},
    )


def _party(state: RepairState, actor: Principal) -> Status:
    """NOT_FOUND before ticket.created, FORBIDDEN to someone else's ticket. A
    customer gets the same FORBIDDEN for both: whether a ticket exists is none of
    the business of someone who is not its customer (staff may create tickets, so
    they learn it anyway)."""
    if state.status is None and actor.role is Role.CUSTOMER:
        raise RoomlogError(ErrorCode.FORBIDDEN, f"{state.room} is not yours; ask an admin")
    if state.status is None:
        raise RoomlogError(ErrorCode.NOT_FOUND,
                            f"no ticket {state.ticket_id!r}; create it with ticket.create")
    if not is_party(state, actor):
        whose = ("assigned to you" if actor.role is Role.TECHNICIAN else "yours")
        raise RoomlogError(ErrorCode.FORBIDDEN,
                            f"{state.room} is not {whose}; ask an admin")
    return state.status


def _needs(state: RepairState, actor: Principal, name: str, statuses: frozenset[Status]) -> None:
    if state.status not in statuses:
        wanted = ("open (not collected or cancelled)" if statuses == _OPEN
                  else " or ".join(str(s) for s in Status if s in statuses))
        raise _refuse(state, actor, ErrorCode.INVALID_TRANSITION,
                      f"{name} needs a ticket that is {wanted}")


def _changed(state: RepairState, to: Status, reason: str | None = None,
             internal_reason: str | None = None, **extra: Any) -> Event:
    data: dict[str, Any] = {"from": str(state.status), "to": str(to), "reason": reason}
    if internal_reason is not None:
        data["internal_reason"] = internal_reason
    return Event("status.changed", {**data, **extra})


def _quote_event(state: RepairState, actor: Principal, approve: bool,
                 reason: str | None) -> Event:
    """quote.approved or quote.declined of the current quote, by ``actor``."""
    quote = state.quote
    data: dict[str, Any] = {"quote_id": quote.id if quote else None,
                            "on_behalf": actor.user != state.customer_id}
    if approve:
        return Event("quote.approved", data)
    return Event("quote.declined", {**data, "reason": reason})


def _qa_gate(state: RepairState, actor: Principal) -> None:
    failed = state.qa_blockers()
    if not state.qa:
        raise _refuse(state, actor, ErrorCode.INVALID_TRANSITION,
                      "ready_for_pickup needs the QA checklist; no item is recorded yet "
                      "(record them with qa.record)", failed=[], recorded=0)
    if failed:
        raise _refuse(state, actor, ErrorCode.INVALID_TRANSITION,
                      f"ready_for_pickup needs every required QA item passed; failed: "
                      f"{', '.join(failed)}", failed=failed, recorded=len(state.qa))


# ---------------------------------------------------------------------------
# Commands


def _create(state: RepairState, args: Args, actor: Principal, now_ms: int) -> Decision:
    a = A.create_args(args)
    if state.exists and not is_party(state, actor):  # its status is not theirs to know
        raise RoomlogError(ErrorCode.CONFLICT, f"{state.room} exists already")
    if state.exists:
        raise RoomlogError(ErrorCode.CONFLICT, f"{state.room} exists already ({state.status})",
                            details={"status": str(state.status)})
    if actor.role is Role.TECHNICIAN and actor.user not in a.technicians:
        raise RoomlogError(ErrorCode.FORBIDDEN,
                            "a technician creates tickets assigned to themself: "
                            "add your user id to technicians")
    data: dict[str, Any] = {
        "ticket": state.ticket_id, "customer_id": a.customer_id, "device": a.device,
        "problem": a.problem, "technicians": a.technicians, "status": str(Status.RECEIVED)}
    if a.internal:
        data["internal"] = a.internal
    return Decision([Event("ticket.created", data)],
                    {"ticket": state.ticket_id, "status": str(Status.RECEIVED)})


def _assign(state: RepairState, args: Args, actor: Principal, now_ms: int) -> Decision:
    technicians = A.assign_args(args)
    _party(state, actor)
    old = set(state.technicians)
    if set(technicians) == old:  # the same people, maybe in another order: nothing changes
        return Decision([], {"technicians": list(state.technicians)})
    event = Event("ticket.assigned", {
        "technicians": technicians,
        "added": [t for t in technicians if t not in old],
        "removed": [t for t in state.technicians if t not in technicians]})
    return Decision([event], {"technicians": technicians})


def _set_status(state: RepairState, args: Args, actor: Principal, now_ms: int) -> Decision:
    a = A.status_args(args)
    current = _party(state, actor)
    targets = graph_targets(current, state.held_from)
    if a.status not in targets:
        what = (f"it is {current} already" if a.status is current
                else f"it cannot go to {a.status}")
        raise _refuse(state, actor, ErrorCode.INVALID_TRANSITION, what)
    if actor.role not in targets[a.status]:
        who = " or ".join(sorted(targets[a.status]))
        raise _refuse(state, actor, ErrorCode.FORBIDDEN,
                      f"only {who} may move it to {a.status}")
    if current is Status.QUALITY_CHECK and a.status is Status.READY_FOR_PICKUP:
        _qa_gate(state, actor)
    events: list[Event] = []
    extra: dict[str, Any] = {}
    if current is Status.AWAITING_APPROVAL and a.status is not Status.CANCELLED:
        # An operator deciding the quote for the customer: the customer's events.
        approve = a.status is Status.REPAIRING
        events.append(_quote_event(state, actor, approve, None if approve else a.reason))
        if not approve:
            extra["outcome"] = "unrepaired"
    elif a.status is Status.READY_FOR_PICKUP:
        extra["outcome"] = "repaired"
    if a.quote is not None:
        extra["quote"] = {"quote_id": f"q{len(state.quotes) + 1}", "amount": a.quote.amount,
                          "currency": a.quote.currency, "description": a.quote.description}
    events.append(_changed(state, a.status, a.reason, a.internal_reason, **extra))
    return Decision(events, {"status": str(a.status), "from": str(current)})


def _approve(state: RepairState, args: Args, actor: Principal, now_ms: int) -> Decision:
    A.no_args(args)
    _party(state, actor)
    _needs(state, actor, "quote.approve", frozenset({Status.AWAITING_APPROVAL}))
    event = _quote_event(state, actor, True, None)
    events = [event, _changed(state, Status.REPAIRING)]
    return Decision(events, {"status": str(Status.REPAIRING),
                             "quote_id": event.data["quote_id"]})


def _decline(state: RepairState, args: Args, actor: Principal, now_ms: int) -> Decision:
    reason = A.decline_args(args)
    _party(state, actor)
    _needs(state, actor, "quote.decline", frozenset({Status.AWAITING_APPROVAL}))
    event = _quote_event(state, actor, False, reason)
    events = [event, _changed(state, Status.READY_FOR_PICKUP, outcome="unrepaired")]
    return Decision(events, {"status": str(Status.READY_FOR_PICKUP), "outcome": "unrepaired",
                             "quote_id": event.data["quote_id"]})


def _milestone(state: RepairState, args: Args, actor: Principal, now_ms: int) -> Decision:
    title, percent = A.milestone_args(args)
    _party(state, actor)
    _needs(state, actor, "milestone.add", _OPEN)
    if percent < state.progress and not actor.is_operator:
        raise RoomlogError(
            ErrorCode.FORBIDDEN,
            f"progress is {state.progress}% and never goes back; only an admin may set "
            f"{percent}%", details={"progress": state.progress})
    mid = f"m{len(state.milestones) + 1}"
    event = Event("milestone.added", {"milestone_id": mid, "title": title, "percent": percent,
                                      "previous": state.progress})
    return Decision([event], {"milestone_id": mid, "progress": percent})


def _eta(state: RepairState, args: Args, actor: Principal, now_ms: int) -> Decision:
    at = A.eta_args(args)
    _party(state, actor)
    _needs(state, actor, "eta.set", _OPEN)
    if at is not None and at <= now_ms:
        raise A.invalid(f"at must be in the future (now is {now_ms}, got {at})")
    if at == state.eta_ms:
        return Decision([], {"eta_ms": at})
    return Decision([Event("eta.changed", {"at": at, "previous": state.eta_ms})], {"eta_ms": at})


def _photo(state: RepairState, args: Args, actor: Principal, now_ms: int) -> Decision:
    a = A.photo_args(args)
    _party(state, actor)
    _needs(state, actor, "photo.add", _OPEN)
    pid = f"p{len(state.photos) + 1}"
    data: dict[str, Any] = {"photo_id": pid, "category": a.category, "caption": a.caption}
    if a.url is not None:
        data["url"] = a.url
    else:
        data["upload_id"] = a.upload_id
    data["visibility"] = a.visibility
    return Decision([Event("photo.added", data)], {"photo_id": pid})


def _qa(state: RepairState, args: Args, actor: Principal, now_ms: int) -> Decision:
    a = A.qa_args(args)
    _party(state, actor)
    _needs(state, actor, "qa.record", _QA_STATUSES)
    event = Event("qa.recorded", {"item": a.item, "passed": a.passed, "note": a.note,
                                  "required": a.required,
                                  "replaced": qa_key(a.item) in state.qa})
    blockers = [i for i in state.qa_blockers() if qa_key(i) != qa_key(a.item)]
    if a.required and not a.passed:
        blockers.append(a.item)
    return Decision([event], {"item": a.item, "passed": a.passed, "failed": blockers})


def _note(state: RepairState, args: Args, actor: Principal, now_ms: int) -> Decision:
    a = A.note_args(args)
    customer = actor.role is Role.CUSTOMER
    if a.visibility is None and not customer:
        raise A.invalid("visibility is required of staff: customer or internal")
    if customer and a.visibility == "internal":
        raise RoomlogError(ErrorCode.FORBIDDEN,
                            "a customer's notes are always visible to the customer")
    _party(state, actor)
    nid = f"n{len(state.notes) + 1}"
    event = Event("note.added", {"note_id": nid, "text": a.text, "priority": a.priority,
                                 "visibility": a.visibility or "customer",
                                 "from_customer": customer})
    return Decision([event], {"note_id": nid})


HANDLERS: dict[str, Handler] = {
    "ticket.create": _create,
    "ticket.assign": _assign,
    "status.set": _set_status,
    "quote.approve": _approve,
    "quote.decline": _decline,
    "milestone.add": _milestone,
    "eta.set": _eta,
    "photo.add": _photo,
    "qa.record": _qa,
    "note.add": _note,
}

COMMANDS = sorted(HANDLERS)


def decide(state: RepairState, command: Command, actor: Principal, now_ms: int) -> Decision:
    """The events ``command`` causes, or a :class:`RoomlogError` (nothing happens)."""
    handler = HANDLERS.get(command.name)
    if handler is None:
        raise RoomlogError(
            ErrorCode.UNKNOWN_COMMAND,
            f"unknown command {command.name!r}; a repair room takes {', '.join(COMMANDS)}")
    if not isinstance(command.args, dict):
        raise A.invalid("args must be an object")
    roles = COMMAND_ROLES[command.name]
    if actor.role not in roles:
        raise RoomlogError(
            ErrorCode.FORBIDDEN,
            f"{actor.role} may not run {command.name} in repair rooms "
            f"(for {', '.join(sorted(roles))})")
    return handler(state, command.args, actor, now_ms)
