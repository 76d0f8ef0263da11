"""The fold of a ``repair:`` room: apply one event to the state, return notices.

Deterministic: driven only by the event and its :class:`Meta` (``meta.ts`` is
the time of every change, ``meta.actor`` its author), so replaying the log
rebuilds the same state. Notices are returned on every application; the
command path stores them only for freshly decided events (a catch-up replay
drops them), so each occurrence is told once.

Personal notices to the ticket's customer (``user:{customer_id}``), data
``{"notice": kind, "room", "ticket", "seq", "device", ...}``; only
customer-visible data:

==============  =============================================  ========================
notice          when                                           extra data
==============  =============================================  ========================
quote.waiting   the ticket entered awaiting_approval           quote {quote_id, amount,
                                                               currency, description}
ticket.ready    the ticket entered ready_for_pickup            outcome (repaired |
                                                               unrepaired)
note.urgent     an urgent customer-visible note by staff       note_id, text
                (the customer's own notes are not told back)
==============  =============================================  ========================

Staff feeds: every event is also an entry of ``repairs:{technician}`` for each
technician assigned after the event, and of ``repairs:all`` (admins), data
``{"ticket", "room", "seq", "event", ...event data}`` (internal fields
included: feeds are staff rooms). ``ticket.assigned`` differs per feed:
technicians it removes get ``{"ticket", "room", "seq", "event":
"ticket.unassigned"}``; those it adds get the entry plus ``summary``
(:func:`summary`), so a dashboard can show the ticket without subscribing.
Notices come in this order: the customer's, the technicians' (in assignment
order), then ``repairs:all``. A feed notice's ``user`` is its technician (empty
for ``repairs:all``); its ``room`` is the feed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from roomlog.rooms.domain import Event, Meta, Notice
from roomlog.rooms.repair_state import (
    Change,
    Milestone,
    Note,
    Photo,
    QaItem,
    Quote,
    RepairState,
    Status,
    qa_key,
)

__all__ = ["ALL_FEED", "APPLIERS", "apply", "feed_room", "summary"]

ALL_FEED = "repairs:all"

Data = dict[str, Any]
Applier = Callable[[RepairState, Data, Meta], list[Notice]]


def feed_room(technician: str) -> str:
    return f"repairs:{technician}"


def summary(state: RepairState) -> dict[str, Any]:
    """The ticket at a glance, for staff dashboards."""
    quote = state.quote
    return {
        "ticket": state.ticket_id, "room": state.room, "customer_id": state.customer_id,
        "device": state.device, "problem": state.problem,
        "status": None if state.status is None else str(state.status),
        "held_from": None if state.held_from is None else str(state.held_from),
        "outcome": state.outcome, "technicians": list(state.technicians),
        "progress": state.progress, "eta_ms": state.eta_ms,
        "quote": None if quote is None else {"quote_id": quote.id, "amount": quote.amount,
                                             "currency": quote.currency,
                                             "status": quote.status},
        "created_ms": state.created_ms, "updated_ms": state.clock_ms,
    }


def _tell(state: RepairState, kind: str, meta: Meta, **extra: Any) -> Notice:
    """A notice to the ticket's customer, for the customer role only (``for_role``):
    a token of another role that names the same user id does not read it."""
    return Notice(state.customer_id, {
        "notice": kind, "for_role": "customer", "room": state.room,
        "ticket": state.ticket_id, "seq": meta.seq, "device": state.device, **extra})


def _created(state: RepairState, data: Data, meta: Meta) -> list[Notice]:
    state.status = Status.RECEIVED
    state.customer_id = str(data["customer_id"])
    state.device = str(data["device"])
    state.problem = str(data["problem"])
    state.technicians = [str(t) for t in data["technicians"]]
    state.internal = copy.deepcopy(dict(data.get("internal") or {}))
    state.created_ms = meta.ts
    state.history.append(Change(str(Status.RECEIVED), meta.ts, by=meta.actor))
    return []


def _assigned(state: RepairState, data: Data, meta: Meta) -> list[Notice]:
    state.technicians = [str(t) for t in data["technicians"]]
    return []


def _status_changed(state: RepairState, data: Data, meta: Meta) -> list[Notice]:
    to = Status(data["to"])
    quote = state.quote
    if state.status is Status.AWAITING_APPROVAL and quote is not None and (
            quote.status == "pending"):
        quote.status = "withdrawn"  # left without a decision (cancelled)
        quote.decided_ms = meta.ts
        quote.decided_by = meta.actor
    state.held_from = state.status if to is Status.ON_HOLD else None
    state.status = to
    if "outcome" in data:
        state.outcome = data["outcome"]
    state.history.append(Change(str(to), meta.ts, data.get("reason"),
                                data.get("internal_reason"), meta.actor))
    body = data.get("quote")
    if body is not None:
        state.quotes.append(Quote(
            id=str(body["quote_id"]), amount=body["amount"], currency=str(body["currency"]),
            description=body.get("description"), proposed_ms=meta.ts, by=meta.actor))
        return [_tell(state, "quote.waiting", meta, quote=dict(body))]
    if to is Status.READY_FOR_PICKUP:
        return [_tell(state, "ticket.ready", meta, outcome=state.outcome)]
    return []


def _quote(status: str) -> Applier:
    def applier(state: RepairState, data: Data, meta: Meta) -> list[Notice]:
        quote = state.quote
        if quote is not None:
            quote.status = status
            quote.decided_ms = meta.ts
            quote.decided_by = meta.actor
            quote.on_behalf = bool(data.get("on_behalf"))
            quote.reason = data.get("reason")
        return []
    return applier


def _milestone(state: RepairState, data: Data, meta: Meta) -> list[Notice]:
    percent = int(data["percent"])
    state.milestones.append(Milestone(str(data["milestone_id"]), str(data["title"]), percent,
                                      meta.ts, meta.actor))
    state.progress = percent
    return []


def _eta(state: RepairState, data: Data, meta: Meta) -> list[Notice]:
    state.eta_ms = data["at"]
    return []


def _photo(state: RepairState, data: Data, meta: Meta) -> list[Notice]:
    state.photos.append(Photo(
        id=str(data["photo_id"]), category=str(data["category"]), caption=str(data["caption"]),
        url=data.get("url"), upload_id=data.get("upload_id"),
        visibility=str(data["visibility"]), ts=meta.ts, by=meta.actor))
    return []


def _qa(state: RepairState, data: Data, meta: Meta) -> list[Notice]:
    item = str(data["item"])
    state.qa[qa_key(item)] = QaItem(item, bool(data["passed"]), data.get("note"),
                                    bool(data["required"]), meta.ts, meta.actor)
    return []


def _note(state: RepairState, data: Data, meta: Meta) -> list[Notice]:
    note = Note(str(data["note_id"]), str(data["text"]), str(data["priority"]),
                str(data["visibility"]), bool(data["from_customer"]), meta.ts, meta.actor)
    state.notes.append(note)
    if note.priority == "urgent" and note.visibility == "customer" and not note.from_customer:
        return [_tell(state, "note.urgent", meta, note_id=note.id, text=note.text)]
    return []


APPLIERS: dict[str, Applier] = {
    "ticket.created": _created,
    "ticket.assigned": _assigned,
    "status.changed": _status_changed,
    "quote.approved": _quote("approved"),
    "quote.declined": _quote("declined"),
    "milestone.added": _milestone,
    "eta.changed": _eta,
    "photo.added": _photo,
    "qa.recorded": _qa,
    "note.added": _note,
}


def _feeds(state: RepairState, event: Event, meta: Meta) -> list[Notice]:
    """The staff feed entries of ``event``, applied (technicians are the new ones)."""
    head = {"ticket": state.ticket_id, "room": state.room, "seq": meta.seq}
    entry = {**head, **event.to_data()}
    notices: list[Notice] = []
    added: frozenset[str] = frozenset()
    if event.type == "ticket.assigned":
        added = frozenset(str(t) for t in event.data["added"])
        notices += [Notice(str(t), {**head, "event": "ticket.unassigned"},
                           room=feed_room(str(t))) for t in event.data["removed"]]
    glance = summary(state) if added else None
    for technician in state.technicians:
        data = {**entry, "summary": glance} if technician in added else entry
        notices.append(Notice(technician, data, room=feed_room(technician)))
    notices.append(Notice("", entry, room=ALL_FEED))
    return notices


def apply(state: RepairState, event: Event, meta: Meta) -> list[Notice]:
    """Fold ``event`` into ``state``; ValueError for an event type this room never logs."""
    applier = APPLIERS.get(event.type)
    if applier is None:
        raise ValueError(f"unknown repair event {event.type!r}")
    state.clock_ms = meta.ts
    notices = applier(state, event.data, meta)
    return notices + _feeds(state, event, meta)
