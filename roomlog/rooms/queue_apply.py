"""The fold of a ``queue:`` room: apply one event to the state, return notices.

Deterministic: driven only by the event and its :class:`Meta` (``meta.ts`` is
the time of every change), so replaying the log rebuilds the same state,
notice bookkeeping included.

Personal notices (to the request's guest, in ``user:{id}``), data
``{"notice": kind, "room", "request_id", "title", "artist", "seq", ...}``:

==================  ==============================================  ==================
notice              when                                            extra data
==================  ==============================================  ==================
request.accepted    the DJ accepted the request                     position
request.vetoed      the DJ vetoed it                                reason
request.playing     it is now playing                               -
request.next        it reached position 1 of the accepted queue     position (1)
request.moved       its queue position is more than 3 away from     position, previous
                    the last position its guest was told
==================  ==============================================  ==================

Payment notices (``payment.verified`` with a paid request's submission, then one per
payment event, ``tip.sent`` included) go to the paying guest: see
:func:`roomlog.rooms.queue_pay.notice`.

"Told" is ``Request.told_position``: set to the position the accepted notice
carries (accepted straight into position 1, a ``next`` notice follows it) and by
every ``next``/``moved`` notice. Small moves are not told, so
a DJ shuffling the queue never floods a guest: ``next`` fires once per arrival
at position 1 from a told position other than 1, ``moved`` once per crossing
of the distance 3.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from roomlog.rooms.domain import Event, Meta, Notice
from roomlog.rooms.queue_pay import PAYMENT_EVENTS, apply_payment, create, notice
from roomlog.rooms.queue_state import (
    HOUR_MS,
    QueueState,
    Request,
    Settings,
    Status,
    add_pending,
    drop_pending,
)

__all__ = ["MOVE_THRESHOLD", "apply"]

MOVE_THRESHOLD = 3  # tell a guest when their position moved by more than this

Data = dict[str, Any]
Applier = Callable[[QueueState, Data, Meta], list[Notice]]


def _notice(state: QueueState, request: Request, kind: str, meta: Meta, **extra: Any) -> Notice:
    return Notice(request.user, {
        "notice": kind, "room": state.room, "request_id": request.id, "title": request.title,
        "artist": request.artist, "seq": meta.seq, **extra})


def _move(state: QueueState, request: Request, status: Status, ts: int) -> None:
    """The one place a request's status changes (the decider's draft mirrors it)."""
    if request.status is Status.PENDING:
        drop_pending(state, request)
    if request.status is Status.ACCEPTED:
        state.queue.remove(request.id)
    if status is Status.ACCEPTED:
        state.queue.append(request.id)
        request.told_position = None
    if status is Status.PLAYING:
        state.playing = request.id
    elif state.playing == request.id:
        state.playing = None
    request.status = status
    request.updated_ms = ts


def _created(state: QueueState, data: Data, meta: Meta) -> list[Notice]:
    state.owner = str(data["owner"])
    return []


def _submitted(state: QueueState, data: Data, meta: Meta) -> list[Notice]:
    body = data["request"]
    request = Request(
        id=str(body["id"]), number=state.next_number, user=str(body["user"]),
        song_id=str(body["song_id"]), title=str(body["title"]), artist=str(body["artist"]),
        note=body.get("note"), submitted_ms=meta.ts, updated_ms=meta.ts,
        jump=bool(body.get("jump", False)),
    )
    notices: list[Notice] = []
    if "payment" in data:
        payment = create(state, data["payment"], meta)
        request.payment_id = payment.id
        notices.append(notice(state, payment, "payment.verified", meta))
    state.requests[request.id] = request
    add_pending(state, request)
    state.next_number += 1
    horizon = meta.ts - HOUR_MS
    del state.submits[:bisect.bisect_right(state.submits, horizon, key=_ts)]
    bisect.insort(state.submits, (meta.ts, request.user))  # at the end, unless clocks differ
    return notices


def _ts(submit: tuple[int, str]) -> int:
    return submit[0]


def _status(status: Status) -> Applier:
    def applier(state: QueueState, data: Data, meta: Meta) -> list[Notice]:
        _move(state, state.requests[data["request_id"]], status, meta.ts)
        return []
    return applier


def _voted(state: QueueState, data: Data, meta: Meta) -> list[Notice]:
    _revote(state, state.requests[data["request_id"]], lambda r: r.voters.add(str(data["user"])))
    return []


def _unvoted(state: QueueState, data: Data, meta: Meta) -> list[Notice]:
    request = state.requests[data["request_id"]]
    _revote(state, request, lambda r: r.voters.discard(str(data["user"])))
    return []


def _revote(state: QueueState, request: Request, change: Callable[[Request], None]) -> None:
    """Change a request's voters, keeping the sorted pending keys in step."""
    pending = request.status is Status.PENDING
    if pending:
        drop_pending(state, request)
    change(request)
    if pending:
        add_pending(state, request)


def _accepted(state: QueueState, data: Data, meta: Meta) -> list[Notice]:
    request = state.requests[data["request_id"]]
    _move(state, request, Status.ACCEPTED, meta.ts)
    position = len(state.queue)
    return [_notice(state, request, "request.accepted", meta, position=position)]


def _vetoed(state: QueueState, data: Data, meta: Meta) -> list[Notice]:
    request = state.requests[data["request_id"]]
    _move(state, request, Status.VETOED, meta.ts)
    request.reason = data.get("reason")
    return [_notice(state, request, "request.vetoed", meta, reason=request.reason)]


def _playing(state: QueueState, data: Data, meta: Meta) -> list[Notice]:
    request = state.requests[data["request_id"]]
    _move(state, request, Status.PLAYING, meta.ts)
    return [_notice(state, request, "request.playing", meta)]


def _reordered(state: QueueState, data: Data, meta: Meta) -> list[Notice]:
    rid = str(data["request_id"])
    state.queue.remove(rid)
    state.queue.insert(int(data["position"]) - 1, rid)
    return []


def _opened(open_: bool) -> Applier:
    def applier(state: QueueState, data: Data, meta: Meta) -> list[Notice]:
        state.open = open_
        return []
    return applier


def _settings_changed(state: QueueState, data: Data, meta: Meta) -> list[Notice]:
    state.settings = Settings.from_data({**state.settings.to_data(), **data["changed"]})
    return []


def _payment(kind: str) -> Applier:
    def applier(state: QueueState, data: Data, meta: Meta) -> list[Notice]:
        return apply_payment(state, kind, data, meta)
    return applier


def _position_notices(state: QueueState, meta: Meta) -> list[Notice]:
    """``next`` and ``moved`` notices for the accepted queue as it now stands."""
    notices: list[Notice] = []
    for position, rid in enumerate(state.queue, start=1):
        request = state.requests[rid]
        told = request.told_position
        if position == 1 and told != 1:
            notices.append(_notice(state, request, "request.next", meta, position=1))
        elif told is None:
            pass  # just accepted: the accepted notice carried this position
        elif abs(position - told) > MOVE_THRESHOLD:
            notices.append(_notice(
                state, request, "request.moved", meta, position=position, previous=told))
        else:
            continue
        request.told_position = position
    return notices


APPLIERS: dict[str, Applier] = {
    "queue.created": _created,
    "request.submitted": _submitted,
    "request.cancelled": _status(Status.CANCELLED),
    "request.voted": _voted,
    "request.unvoted": _unvoted,
    "request.accepted": _accepted,
    "request.vetoed": _vetoed,
    "request.playing": _playing,
    "request.played": _status(Status.PLAYED),
    "queue.reordered": _reordered,
    "queue.opened": _opened(True),
    "queue.closed": _opened(False),
    "queue.settings_changed": _settings_changed,
    **{kind: _payment(kind) for kind in PAYMENT_EVENTS},
}

# Events that can change positions in the accepted queue.
_QUEUE_EVENTS = frozenset({
    "request.accepted", "request.vetoed", "request.playing", "request.played", "queue.reordered"})


def apply(state: QueueState, event: Event, meta: Meta) -> list[Notice]:
    """Fold ``event`` into ``state``; ValueError for an event type this room never logs."""
    applier = APPLIERS.get(event.type)
    if applier is None:
        raise ValueError(f"unknown queue event {event.type!r}")
    state.clock_ms = meta.ts
    notices = applier(state, event.data, meta)
    if event.type in _QUEUE_EVENTS:
        notices += _position_notices(state, meta)
    return notices
