"""The state of a ``repair:`` room (one repair ticket), its status graph and snapshot format.

A :class:`RepairState` is mutated only by :func:`roomlog.rooms.repair_apply.apply`
(the fold of the log). Everything here is plain data: no clock, no I/O.

The status graph and who may take each edge with ``status.set`` are data
(:data:`EDGES`); :mod:`roomlog.rooms.repair` tables them for readers. A
status outside the graph is an ``INVALID_TRANSITION``; an edge of the graph
that the actor's role may not take is ``FORBIDDEN``. From ``on_hold`` the only
way back is to the status the ticket was held from (``held_from``).
"""

from __future__ import annotations

import copy
import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from roomlog.identity import Principal, Role

__all__ = [
    "CATEGORIES",
    "DECIDERS",
    "EDGES",
    "FINAL",
    "HOLDABLE",
    "OPERATORS",
    "PRIORITIES",
    "VISIBILITIES",
    "WORKERS",
    "Change",
    "Milestone",
    "Note",
    "Photo",
    "QaItem",
    "Quote",
    "RepairState",
    "Status",
    "dump_state",
    "graph_targets",
    "is_party",
    "load_state",
    "moves",
    "qa_key",
]

SNAPSHOT_VERSION = 1


class Status(enum.StrEnum):
    RECEIVED = "received"  # the device is in the shop, nothing done yet
    DIAGNOSING = "diagnosing"  # a technician is finding the fault
    AWAITING_APPROVAL = "awaiting_approval"  # a quote waits for the customer
    REPAIRING = "repairing"  # the work is being done
    QUALITY_CHECK = "quality_check"  # the repair is being checked (QA checklist)
    READY_FOR_PICKUP = "ready_for_pickup"  # repaired (or returned unrepaired), waiting
    COLLECTED = "collected"  # handed back: final
    ON_HOLD = "on_hold"  # work paused (a part, a question); back to ``held_from``
    CANCELLED = "cancelled"  # voided: final


FINAL = frozenset({Status.COLLECTED, Status.CANCELLED})
# Statuses the shop is working in; the waiting ones (awaiting_approval,
# ready_for_pickup) already wait on the customer and are not held.
HOLDABLE = frozenset({Status.RECEIVED, Status.DIAGNOSING, Status.REPAIRING,
                      Status.QUALITY_CHECK})

PRIORITIES = ("low", "normal", "high", "urgent")
VISIBILITIES = ("customer", "internal")
CATEGORIES = ("before", "during", "after", "damage", "part")

WORKERS = frozenset({Role.TECHNICIAN, Role.ADMIN, Role.SERVICE})  # technician: if assigned
OPERATORS = frozenset({Role.ADMIN, Role.SERVICE})
DECIDERS = frozenset({Role.CUSTOMER, Role.ADMIN, Role.SERVICE})  # quote.approve / decline

# from -> {to: the roles whose status.set may take the edge}. Customers take
# awaiting_approval -> repairing / ready_for_pickup with quote.approve / decline.
EDGES: dict[Status, dict[Status, frozenset[Role]]] = {
    Status.RECEIVED: {Status.DIAGNOSING: WORKERS, Status.ON_HOLD: WORKERS,
                      Status.CANCELLED: WORKERS},
    Status.DIAGNOSING: {Status.AWAITING_APPROVAL: WORKERS, Status.ON_HOLD: WORKERS,
                        Status.CANCELLED: OPERATORS},
    Status.AWAITING_APPROVAL: {Status.REPAIRING: OPERATORS, Status.READY_FOR_PICKUP: OPERATORS,
                               Status.CANCELLED: OPERATORS},
    Status.REPAIRING: {Status.QUALITY_CHECK: WORKERS, Status.ON_HOLD: WORKERS,
                       Status.CANCELLED: OPERATORS},
    Status.QUALITY_CHECK: {Status.REPAIRING: WORKERS, Status.READY_FOR_PICKUP: WORKERS,
                           Status.ON_HOLD: WORKERS, Status.CANCELLED: OPERATORS},
    Status.READY_FOR_PICKUP: {Status.COLLECTED: WORKERS, Status.CANCELLED: OPERATORS},
    # Back to held_from only (filtered by graph_targets).
    Status.ON_HOLD: {**{s: WORKERS for s in sorted(HOLDABLE, key=list(Status).index)},
                     Status.CANCELLED: OPERATORS},
    Status.COLLECTED: {},
    Status.CANCELLED: {},
}


def graph_targets(status: Status, held_from: Status | None) -> dict[Status, frozenset[Role]]:
    """The edges out of ``status`` (whoever may take them), in workflow order."""
    edges = EDGES[status]
    if status is Status.ON_HOLD:
        return {s: roles for s, roles in edges.items() if s in (held_from, Status.CANCELLED)}
    return edges


def moves(state: RepairState, role: Role) -> list[Status]:
    """The statuses ``role`` may set from here (relationship to the ticket aside)."""
    if state.status is None:
        return []
    return [s for s, roles in graph_targets(state.status, state.held_from).items()
            if role in roles]


def is_party(state: RepairState, who: Principal) -> bool:
    """Whether ``who`` may act on (and read) the created ticket: operators always,
    its assigned technicians, its customer."""
    if who.is_operator:
        return True
    if who.role is Role.TECHNICIAN:
        return who.user in state.technicians
    return who.role is Role.CUSTOMER and who.user == state.customer_id


def qa_key(item: str) -> str:
    """QA items are one per name, case and spacing aside ("Battery " is "battery")."""
    return " ".join(item.split()).casefold()


@dataclass(slots=True)
class Change:
    """One entry of the status history."""

    status: str
    ts: int
    reason: str | None = None  # customer-visible
    internal_reason: str | None = None  # staff only
    by: str = ""


@dataclass(slots=True)
class Quote:
    id: str
    amount: int | float
    currency: str
    description: str | None
    proposed_ms: int
    by: str
    status: str = "pending"  # pending | approved | declined
    decided_ms: int | None = None
    decided_by: str | None = None
    on_behalf: bool = False  # decided by an operator for the customer
    reason: str | None = None  # the decline reason


@dataclass(slots=True)
class Milestone:
    id: str
    title: str
    percent: int
    ts: int
    by: str


@dataclass(slots=True)
class Photo:
    id: str
    category: str
    caption: str
    url: str | None  # exactly one of url and upload_id
    upload_id: str | None
    visibility: str
    ts: int
    by: str


@dataclass(slots=True)
class QaItem:
    item: str
    passed: bool
    note: str | None
    required: bool
    ts: int
    by: str


@dataclass(slots=True)
class Note:
    id: str
    text: str
    priority: str
    visibility: str
    from_customer: bool
    ts: int
    by: str


@dataclass(slots=True)
class RepairState:
    """One repair ticket. ``status`` is None until ``ticket.created``."""

    ticket_id: str
    status: Status | None = None
    customer_id: str = ""
    device: str = ""
    problem: str = ""
    internal: dict[str, Any] = field(default_factory=dict)  # staff-only free-form fields
    technicians: list[str] = field(default_factory=list)
    held_from: Status | None = None  # set while on_hold
    outcome: str | None = None  # "repaired" | "unrepaired", once ready_for_pickup
    progress: int = 0  # percent of the last milestone
    eta_ms: int | None = None
    history: list[Change] = field(default_factory=list)
    quotes: list[Quote] = field(default_factory=list)  # oldest first; the last is current
    milestones: list[Milestone] = field(default_factory=list)
    photos: list[Photo] = field(default_factory=list)
    qa: dict[str, QaItem] = field(default_factory=dict)  # by qa_key, first recorded first
    notes: list[Note] = field(default_factory=list)
    created_ms: int = 0
    clock_ms: int = 0  # ts of the last applied event

    @property
    def room(self) -> str:
        return f"repair:{self.ticket_id}"

    @property
    def exists(self) -> bool:
        return self.status is not None

    @property
    def quote(self) -> Quote | None:
        return self.quotes[-1] if self.quotes else None

    def qa_blockers(self) -> list[str]:
        """Required QA items recorded as failed, in recording order."""
        return [q.item for q in self.qa.values() if q.required and not q.passed]


def dump_state(state: RepairState) -> dict[str, Any]:
    """JSON-compatible and canonical: equal states dump to equal data."""
    return {
        "version": SNAPSHOT_VERSION,
        "ticket_id": state.ticket_id,
        "status": None if state.status is None else str(state.status),
        "customer_id": state.customer_id,
        "device": state.device,
        "problem": state.problem,
        "internal": copy.deepcopy(state.internal),
        "technicians": list(state.technicians),
        "held_from": None if state.held_from is None else str(state.held_from),
        "outcome": state.outcome,
        "progress": state.progress,
        "eta_ms": state.eta_ms,
        "history": [asdict(c) for c in state.history],
        "quotes": [asdict(q) for q in state.quotes],
        "milestones": [asdict(m) for m in state.milestones],
        "photos": [asdict(p) for p in state.photos],
        "qa": [asdict(q) for q in state.qa.values()],
        "notes": [asdict(n) for n in state.notes],
        "created_ms": state.created_ms,
        "clock_ms": state.clock_ms,
    }


def load_state(data: dict[str, Any]) -> RepairState:
    """The inverse of :func:`dump_state`; ValueError on an unknown snapshot version."""
    if data.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"unknown repair snapshot version {data.get('version')!r}")
    qa = [QaItem(**q) for q in data["qa"]]
    return RepairState(
        ticket_id=str(data["ticket_id"]),
        status=None if data["status"] is None else Status(data["status"]),
        customer_id=str(data["customer_id"]),
        device=str(data["device"]),
        problem=str(data["problem"]),
        internal=copy.deepcopy(dict(data["internal"])),
        technicians=[str(t) for t in data["technicians"]],
        held_from=None if data["held_from"] is None else Status(data["held_from"]),
        outcome=data["outcome"],
        progress=int(data["progress"]),
        eta_ms=data["eta_ms"],
        history=[Change(**c) for c in data["history"]],
        quotes=[Quote(**q) for q in data["quotes"]],
        milestones=[Milestone(**m) for m in data["milestones"]],
        photos=[Photo(**p) for p in data["photos"]],
        qa={qa_key(q.item): q for q in qa},
        notes=[Note(**n) for n in data["notes"]],
        created_ms=int(data["created_ms"]),
        clock_ms=int(data["clock_ms"]),
    )
