"""``repair:{ticket}`` rooms: one repair ticket of a repair shop. Pure.

Technicians move the ticket through its status workflow and post progress;
the customer follows it and sees only what is meant for customers; admins see
and correct everything. :class:`RepairDomain` decides commands
(:mod:`.repair_decide`), folds events (:mod:`.repair_apply`, which also tables
the notices and staff feeds), shows views and redacts events per audience; the
state and the status graph are in :mod:`.repair_state`, argument validation in
:mod:`.repair_args`, statistics in :mod:`.repair_stats`.

Who
    *Operators* (admin, service) act on every ticket. A *technician* acts on
    tickets assigned to them (and creates tickets, listing themself). A
    *customer* acts on their own ticket (``customer_id``): quote decisions and
    notes. Guests and DJs have nothing to do here. Every command checks, in
    this order: UNKNOWN_COMMAND; INVALID_ARGS (args not an object); FORBIDDEN
    (the role never runs the command, column "who"); then the command's own list:

==============  ================  =============================================================
command         who               rejected with (in the order checked)
==============  ================  =============================================================
ticket.create   technician,       INVALID_ARGS; CONFLICT (the ticket exists; ``details.status``
                operator          only for its parties); FORBIDDEN (a technician not among
                                  ``technicians``)
ticket.assign   operator          INVALID_ARGS; NOT_FOUND. Same set of technicians: no events
status.set      technician,       INVALID_ARGS (unknown status; awaiting_approval without a
                operator          quote or a quote with another status; on_hold or cancelled
                                  with neither reason nor internal_reason); NOT_FOUND; FORBIDDEN
                                  (not your ticket); INVALID_TRANSITION (no such edge, or the
                                  status it has); FORBIDDEN (an edge your role may not take);
                                  INVALID_TRANSITION (QA gate: ``details.failed, recorded``)
quote.approve   customer,         INVALID_ARGS (any argument); NOT_FOUND (FORBIDDEN to a
                operator          customer); FORBIDDEN; INVALID_TRANSITION (not awaiting_approval)
quote.decline   customer, op.     as quote.approve; takes ``reason?``
milestone.add   technician, op.   INVALID_ARGS; NOT_FOUND; FORBIDDEN; INVALID_TRANSITION (final);
                                  FORBIDDEN (below the progress, not an operator;
                                  ``details.progress``)
eta.set         technician, op.   INVALID_ARGS; NOT_FOUND; FORBIDDEN; INVALID_TRANSITION
                                  (final); INVALID_ARGS (``at`` not after now). Same ETA: no events
photo.add       technician, op.   INVALID_ARGS; NOT_FOUND; FORBIDDEN; INVALID_TRANSITION (final)
qa.record       technician, op.   INVALID_ARGS; NOT_FOUND; FORBIDDEN; INVALID_TRANSITION (not
                                  repairing or quality_check)
note.add        customer,         INVALID_ARGS (staff without visibility); FORBIDDEN (customer
                technician, op.   asking for internal); NOT_FOUND; FORBIDDEN. Any status
==============  ================  =============================================================

A customer never learns whether a ticket that is not theirs exists: where the
list says NOT_FOUND, a customer gets the FORBIDDEN of someone else's ticket.

Every INVALID_TRANSITION (and the FORBIDDEN of an edge) names the current
status and the moves the actor has from it, with ``details = {"status",
"allowed": [...]}``. An edge outside the graph is INVALID_TRANSITION (nobody
may); an edge of the graph that the role may not take is FORBIDDEN (ask an
admin). The role x transition matrix (``status.set``; "quote" marks the
customer's commands; :data:`~.repair_state.EDGES` is the data):

=================  =================  ==========  ========  ===============
from               to                 technician  customer  admin, service
=================  =================  ==========  ========  ===============
received           diagnosing         yes         -         yes
received           on_hold            yes         -         yes
received           cancelled          yes         -         yes
diagnosing         awaiting_approval  yes         -         yes
diagnosing         on_hold            yes         -         yes
diagnosing         cancelled          -           -         yes
awaiting_approval  repairing          -           quote     yes
awaiting_approval  ready_for_pickup   -           quote     yes
awaiting_approval  cancelled          -           -         yes
repairing          quality_check      yes         -         yes
repairing          on_hold            yes         -         yes
repairing          cancelled          -           -         yes
quality_check      repairing          yes         -         yes
quality_check      ready_for_pickup   yes         -         yes
quality_check      on_hold            yes         -         yes
quality_check      cancelled          -           -         yes
ready_for_pickup   collected          yes         -         yes
ready_for_pickup   cancelled          -           -         yes
on_hold            held_from          yes         -         yes
on_hold            cancelled          -           -         yes
=================  =================  ==========  ========  ===============

Collected and cancelled are final: nobody leaves them.

Choices, so callers know what to expect:

* **On hold** is for the statuses the shop works in (received, diagnosing,
  repairing, quality_check); awaiting_approval and ready_for_pickup already
  wait on the customer. Leave it with ``status.set {status: <held_from>}``
  (``view``'s ``held_from`` and ``moves`` say which) or cancel.
* **Quotes.** Entering awaiting_approval takes a new quote (``q1``, ``q2`` ...),
  told to the customer. An operator's ``status.set`` to repairing or
  ready_for_pickup from there decides the quote for the customer: the same
  ``quote.approved`` / ``quote.declined`` event (``on_behalf: true``).
  Declining makes the outcome "unrepaired"; a quote left by cancelling is
  "withdrawn". Amounts are numbers in the currency's major unit, not rounded.
* **QA gate.** quality_check -> ready_for_pickup needs at least one recorded
  item and no required item failed (an item recorded again replaces it; names
  compare case- and space-insensitively). Failed items stay recorded across
  the rework; re-record them passed. The gate holds for admins too.
* **Cancelling** needs a reason (or internal_reason). Technicians may cancel
  only a received ticket (a ticket opened by mistake); later, work has been
  done and an operator settles it. A technician creating a ticket must list
  themself (they could not see it otherwise); operators may create a ticket
  with no technician (it shows in ``repairs:all`` until assigned).
* A second ``ticket.create`` is CONFLICT (the room is the ticket). Setting the
  current status is INVALID_TRANSITION ("already"), not a silent success:
  its reason would be lost. Progress may stay equal; only operators lower it.
  ETAs must be in the future; ``at: null`` clears.
* Customer notes are always customer-visible (asking for internal is
  FORBIDDEN); any priority; they never notify the customer themself. Staff
  must say the visibility of every note (no default that could leak).

Events (``data`` besides ``event``); every event is also sent to the staff
feeds (:mod:`.repair_apply`):

===============  ===========================================================
ticket.created   ticket, customer_id, device, problem, technicians, status,
                 internal (staff only; only when given)
ticket.assigned  technicians, added, removed
status.changed   from, to, reason, internal_reason (staff only; when given),
                 quote {quote_id, amount, currency, description} (entering
                 awaiting_approval), outcome (entering ready_for_pickup)
quote.approved   quote_id, on_behalf
quote.declined   quote_id, on_behalf, reason
milestone.added  milestone_id, title, percent, previous
eta.changed      at (ms or null), previous
photo.added      photo_id, category, caption, url | upload_id, visibility
qa.recorded      item, passed, note, required, replaced (staff only)
note.added       note_id, text, priority, visibility, from_customer
===============  ===========================================================

Visibility. Customers (audience "customer") never see: ``internal``,
``internal_reason``, internal photos and notes, QA records (their view has only
``qa {total, passed}``). They do see who works on the ticket (``technicians``,
``by``): staff user ids reach them as message authors anyway. Technicians and
operators are "staff" and see everything; any other role is "customer" (fail
closed; it cannot read anyway). :meth:`RepairDomain.redact` is default-deny: an
event type it does not know is hidden from customers. A photo's upload may be
opened by whoever sees the photo (:func:`can_open_upload`).

Who reads (:meth:`RepairDomain.can_read`): operators always; technicians while
assigned, and any technician before the ticket exists (so its creator can
subscribe first); the customer their own ticket once it exists; nobody else.
``can_subscribe`` is the static part (customer, technician, admin, service).
Nobody publishes: the log of a repair room is its fold, and a plain message
would be an event ``apply`` refuses.

A command hook (``roomlog.hooks``) is told the ticket's ``exists``, ``status``,
``customer_id``, ``technicians``, ``progress`` and current ``quote``: the
operator's backend is staff. What a backend's approval adds to an event
(``hook``) is staff-only, like the internal fields.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any

from roomlog.identity import Principal, Role
from roomlog.rooms.domain import Command, Decision, Event, Meta, Notice
from roomlog.rooms.repair_apply import apply
from roomlog.rooms.repair_decide import COMMANDS, actor_moves, decide
from roomlog.rooms.repair_state import (
    EDGES,
    RepairState,
    Status,
    dump_state,
    is_party,
    load_state,
)

__all__ = ["COMMANDS", "EDGES", "RepairDomain", "RepairState", "Status", "audience",
           "can_open_upload", "can_read", "redact", "still_reads", "view"]

CUSTOMER = "customer"
STAFF = "staff"
_STAFF_ROLES = frozenset({Role.TECHNICIAN, Role.ADMIN, Role.SERVICE})
_READERS = frozenset({Role.CUSTOMER, *_STAFF_ROLES})

# What a customer sees of each event type; a type not listed is hidden.
_CUSTOMER_EVENTS = frozenset({
    "ticket.created", "ticket.assigned", "status.changed", "quote.approved", "quote.declined",
    "milestone.added", "eta.changed", "photo.added", "note.added"})
_INTERNAL_FIELDS: dict[str, tuple[str, ...]] = {
    "ticket.created": ("internal",),
    "status.changed": ("internal_reason",),
}
_HOOK_FIELD = "hook"  # a command hook's data, stamped into any event (roomlog.commands)
_BY_VISIBILITY = frozenset({"photo.added", "note.added"})  # hidden unless visibility customer


def can_read(state: RepairState, who: Principal) -> bool:
    """Whether ``who`` may read the ticket's events and state now."""
    if who.is_operator:
        return True
    if not state.exists:
        return who.role is Role.TECHNICIAN
    return is_party(state, who)


def audience(who: Principal) -> str:
    """"staff" for technicians and operators, "customer" for everyone else."""
    return STAFF if who.role in _STAFF_ROLES else CUSTOMER


def redact(data: dict[str, Any], audience: str) -> dict[str, Any] | None:
    """What ``audience`` may see of one stored event (``{"event": type, ...}``):
    ``data`` itself, a copy without internal fields, or None (hidden)."""
    if audience == STAFF:
        return data
    kind = data.get("event")
    if kind not in _CUSTOMER_EVENTS:
        return None
    if kind in _BY_VISIBILITY and data.get("visibility") != CUSTOMER:
        return None
    hidden = (*_INTERNAL_FIELDS.get(str(kind), ()), _HOOK_FIELD)
    if any(key in data for key in hidden):
        return {k: v for k, v in data.items() if k not in hidden}
    return data


def still_reads(data: dict[str, Any], who: Principal) -> bool | None:
    """Whether ``who`` may still read the ticket after this stored event: the events
    that set its parties (``ticket.created``, ``ticket.assigned``) decide for
    technicians and customers; None for every other event (nothing changes).
    A technician who subscribed before the ticket existed, but is not among its
    technicians, and one removed by an assignment, stop reading there."""
    kind = data.get("event")
    if kind not in ("ticket.created", "ticket.assigned") or who.is_operator:
        return None
    if who.role is Role.TECHNICIAN:
        return who.user in data.get("technicians", ())
    if kind == "ticket.created":
        return who.role is Role.CUSTOMER and who.user == data.get("customer_id")
    return None


def can_open_upload(state: RepairState, who: Principal, upload_id: str) -> bool:
    """Whether ``who`` may open the uploaded file ``upload_id`` of this ticket: it
    is a photo of the ticket and ``who`` sees that photo."""
    if not can_read(state, who):
        return False
    staff = audience(who) == STAFF
    return any(p.upload_id == upload_id and (staff or p.visibility == CUSTOMER)
               for p in state.photos)


def view(state: RepairState, viewer: Principal) -> dict[str, Any]:
    """The ticket as ``viewer`` may see it; ``readable: false`` and nothing else
    for someone who may not read it."""
    head: dict[str, Any] = {"room": state.room, "ticket": state.ticket_id}
    if not can_read(state, viewer):
        return {**head, "readable": False}
    if state.status is None:
        return {**head, "readable": True, "exists": False, "moves": []}
    staff = audience(viewer) == STAFF
    history = [asdict(c) for c in state.history]
    if not staff:
        for change in history:
            del change["internal_reason"]
    body: dict[str, Any] = {
        **head, "readable": True, "exists": True,
        "customer_id": state.customer_id, "device": state.device, "problem": state.problem,
        "status": str(state.status),
        "held_from": None if state.held_from is None else str(state.held_from),
        "outcome": state.outcome, "technicians": list(state.technicians),
        "progress": state.progress, "eta_ms": state.eta_ms,
        "quote": None if state.quote is None else asdict(state.quote),
        "quotes": [asdict(q) for q in state.quotes],
        "milestones": [asdict(m) for m in state.milestones],
        "photos": [asdict(p) for p in state.photos if staff or p.visibility == CUSTOMER],
        "notes": [asdict(n) for n in state.notes if staff or n.visibility == CUSTOMER],
        "history": history,
        "created_ms": state.created_ms, "updated_ms": state.clock_ms,
        "moves": actor_moves(state, viewer),
    }
    if staff:
        failed = state.qa_blockers()
        body["internal"] = copy.deepcopy(state.internal)
        body["qa"] = {"items": [asdict(q) for q in state.qa.values()], "failed": failed,
                      "ready": bool(state.qa) and not failed}
    else:
        body["qa"] = {"total": len(state.qa),
                      "passed": sum(1 for q in state.qa.values() if q.passed)}
    return body


class RepairDomain:
    """The ``repair`` room kind: a :class:`~roomlog.rooms.domain.Domain` of RepairState,
    plus the read rules the hub applies per subscriber (``can_read``, ``audience``,
    ``redact``)."""

    kind = "repair"
    commands = COMMANDS
    private = True

    def initial(self, room_id: str) -> RepairState:
        return RepairState(ticket_id=room_id)

    def decide(
        self, state: RepairState, command: Command, actor: Principal, now_ms: int
    ) -> Decision:
        return decide(state, command, actor, now_ms)

    def apply(self, state: RepairState, event: Event, meta: Meta) -> list[Notice]:
        return apply(state, event, meta)

    def view(self, state: RepairState, viewer: Principal) -> dict[str, Any]:
        return view(state, viewer)

    def dump(self, state: RepairState) -> dict[str, Any]:
        return dump_state(state)

    def load(self, data: dict[str, Any]) -> RepairState:
        return load_state(data)

    def can_subscribe(self, who: Principal, room_id: str) -> bool:
        return who.role in _READERS

    def can_publish(self, who: Principal, room_id: str) -> bool:
        return False

    def can_read(self, state: RepairState, who: Principal) -> bool:
        return can_read(state, who)

    def audience(self, who: Principal) -> str | None:
        seen = audience(who)
        return None if seen == STAFF else seen  # staff see every event whole

    def redact(self, data: dict[str, Any], audience: str) -> dict[str, Any] | None:
        return redact(data, audience)

    def still_reads(self, data: dict[str, Any], who: Principal) -> bool | None:
        return still_reads(data, who)

    def hook_view(self, state: RepairState, command: Command, actor: Principal,
                  now_ms: int) -> dict[str, Any]:
        """What a command hook is told (see the module docstring)."""
        return {"exists": state.exists,
                "status": None if state.status is None else str(state.status),
                "customer_id": state.customer_id, "technicians": list(state.technicians),
                "progress": state.progress,
                "quote": None if state.quote is None else asdict(state.quote)}
