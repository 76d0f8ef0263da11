"""Time travel: a domain room as it was at any seq, as each audience saw it. Pure.

The state of a domain room is the fold of its log (``roomlog.rooms.domain``), so
its state at seq N is the fold of its events 1..N; :func:`state_at` folds them
(from a snapshot at or before N when the log's start is trimmed) and shows the
result through the domain's own ``view`` for one *audience*:

======  ==========================================  ===================================
kind    audiences                                   who is looked through (``user``)
======  ==========================================  ===================================
queue   admin, dj, guest                            dj: the room's owner at that seq;
                                                    guest: whose request the event is
                                                    about (their ``mine``)
repair  admin, technician, customer                 technician: the first one assigned
                                                    at that seq; customer: the ticket's
======  ==========================================  ===================================

A ``user`` given by the caller wins over these defaults. The answer also carries
the event at that seq (who caused it, when, and its data as that audience was
sent it: :meth:`Domain.redact`, None for a reader who got a ``skip``), so "who
changed this ticket to ready, and what did the customer see then?" is one look.

Views are the domain's, so a customer's never holds an internal field.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal, Role
from roomlog.rooms.domain import Domain, Event, Meta

__all__ = ["AUDIENCES", "Moment", "check_audience", "fold", "show", "state_at", "viewer_for"]

#: The audiences each domain room kind shows, in the order a console lists them.
AUDIENCES: dict[str, tuple[str, ...]] = {
    "queue": ("admin", "dj", "guest"),
    "repair": ("admin", "technician", "customer"),
}

# Who is looked through when nobody is named and the state names nobody either.
_NOBODY = "console:{role}"


@dataclass(frozen=True, slots=True)
class Moment:
    """The state after one seq and the event that made it."""

    seq: int
    state: Any  # the domain's state after the event at ``seq``
    event: Event | None  # None at seq 0 (before anything happened)
    meta: Meta | None


def check_audience(kind: str, audience: str) -> Role:
    """The role of ``audience`` in rooms of ``kind``; INVALID_ARGS otherwise."""
    known = AUDIENCES.get(kind)
    if known is None:
        raise RoomlogError(ErrorCode.NOT_FOUND, f"{kind} rooms keep no state")
    if audience not in known:
        raise RoomlogError(ErrorCode.INVALID_ARGS,
                            f"'as' must be one of {', '.join(known)} in {kind} rooms")
    return Role(audience)


def fold(domain: Domain[Any], room_id: str, entries: Iterable[tuple[Event, Meta]], at: int,
         *, start: tuple[int, Any] | None = None) -> Moment:
    """The state after every entry with seq <= ``at``, folded over ``start``
    (``(seq, state)`` of a snapshot, or the initial state at 0). Entries must be
    contiguous from ``start``'s seq + 1 (NOT_FOUND otherwise: that history is gone);
    the entry at ``start``'s own seq, when given, names the event that made it."""
    seq, state = start if start is not None else (0, domain.initial(room_id))
    last: tuple[Event, Meta] | None = None
    for event, meta in entries:
        if meta.seq <= seq:
            if meta.seq == seq:  # the snapshot's own event: what made the start state
                last = (event, meta)
            continue
        if meta.seq > at:
            break
        if meta.seq != seq + 1:
            raise RoomlogError(ErrorCode.NOT_FOUND,
                                f"seqs {seq + 1}..{meta.seq - 1} are gone from the log",
                                details={"missing_from": seq + 1})
        domain.apply(state, event, meta)
        seq, last = meta.seq, (event, meta)
    if seq != at:
        raise RoomlogError(ErrorCode.NOT_FOUND, f"the log holds no seq {at}",
                            details={"head": seq})
    return Moment(seq, state, *(last if last is not None else (None, None)))


def viewer_for(kind: str, audience: str, state: Any, moment: Moment,
               user: str | None = None) -> Principal:
    """Whom ``audience`` is looked through at ``moment`` (see the module docstring)."""
    role = check_audience(kind, audience)
    if user:
        return Principal(user, role)
    found: str | None = None
    if kind == "queue" and role is Role.DJ:
        found = getattr(state, "owner", None)
    elif kind == "queue" and role is Role.GUEST and moment.event is not None:
        found = _requester(state, moment.event)
    elif kind == "repair" and role is Role.TECHNICIAN:
        technicians = getattr(state, "technicians", ())
        found = technicians[0] if technicians else None
    elif kind == "repair" and role is Role.CUSTOMER:
        found = getattr(state, "customer_id", None)
    return Principal(found or _NOBODY.format(role=role.value), role)


def _requester(state: Any, event: Event) -> str | None:
    """The guest whose request the event is about (``request`` or ``request_id``)."""
    request = event.data.get("request")
    rid = request.get("id") if isinstance(request, dict) else event.data.get("request_id")
    found = getattr(state, "requests", {}).get(rid) if isinstance(rid, str) else None
    user = getattr(found, "user", None)
    return user if isinstance(user, str) else None


def state_at(domain: Domain[Any], room_id: str, entries: Iterable[tuple[Event, Meta]],
             at: int, audience: str, *, user: str | None = None,
             start: tuple[int, Any] | None = None, head: int | None = None) -> dict[str, Any]:
    """The answer of ``GET /v1/rooms/{room}/state?at=&as=``: the room at ``at`` as
    ``audience`` saw it, and the event that made it."""
    return show(domain, fold(domain, room_id, entries, at, start=start), audience,
                user=user, head=head)


def show(domain: Domain[Any], moment: Moment, audience: str, *, user: str | None = None,
         head: int | None = None) -> dict[str, Any]:
    """A folded moment as ``audience`` saw it (what :func:`state_at` answers); for
    callers that fold page by page, carrying each page's moment into the next."""
    viewer = viewer_for(domain.kind, audience, moment.state, moment, user)
    body: dict[str, Any] = {
        "seq": moment.seq, "as": audience, "viewer": viewer.user,
        "audiences": list(AUDIENCES[domain.kind]),
        "state": domain.view(moment.state, viewer),
        "event": None,
    }
    if head is not None:
        body["head"] = head
    if moment.event is not None and moment.meta is not None:
        body["event"] = {"seq": moment.meta.seq, "by": moment.meta.actor, "ts": moment.meta.ts,
                         "type": moment.event.type,
                         "data": _as_seen(domain, moment.event, viewer)}
    return body


def _as_seen(domain: Domain[Any], event: Event, viewer: Principal) -> dict[str, Any] | None:
    """The event's data as ``viewer`` was sent it: whole, redacted, or None (a skip)."""
    data = event.to_data()
    seen = domain.audience(viewer)
    return data if seen is None else domain.redact(data, seen)
