"""``queue:{id}`` rooms: the live song-request queue of one DJ set. Pure.

Guests submit and upvote song requests; the DJ works the queue live. The room
is a :class:`~roomlog.rooms.domain.Domain`: :class:`QueueDomain` decides
commands (:mod:`.queue_decide`), folds events (:mod:`.queue_apply`) and shows
views; the state and its snapshot format are in :mod:`.queue_state`, argument
validation in :mod:`.queue_args`.

Who is the DJ
    Admins and services may run every DJ command in every queue room. A
    principal with role ``dj`` may run them while the room has no owner or
    owns it: the first successful DJ command by a ``dj`` claims the room
    (event ``queue.created {owner}`` before its own events). Operators never
    claim. Other DJs get FORBIDDEN. An unclaimed room is open, with default
    settings: guests can submit before the DJ shows up.

Guest commands may be run by any authenticated principal (the DJ too, as a
guest: rules and limits apply to them like to anyone). Any other command name
is UNKNOWN_COMMAND; ``args`` that is not an object is INVALID_ARGS.

===================  =====  ==================================================================
command              who    rejected with (in the order checked)
===================  =====  ==================================================================
request.submit       any    INVALID_ARGS; QUEUE_CLOSED; DUPLICATE_REQUEST (same song_id
                            pending or accepted for this guest; ``details["request_id"]``);
                            TOO_MANY_ACTIVE (pending + accepted >= max_active_per_guest);
                            RATE_LIMITED (submit_rate in the last 60 s, per guest);
                            CAPACITY_EXCEEDED (request_cap_per_hour in the last 60 min)
request.cancel       own    INVALID_ARGS; NOT_FOUND; FORBIDDEN (not yours);
                            INVALID_TRANSITION (not pending)
request.vote         any    FORBIDDEN (voting off); INVALID_ARGS; NOT_FOUND; FORBIDDEN (your
                            own); INVALID_TRANSITION (not pending/accepted); CONFLICT (voted)
request.unvote       any    as request.vote, CONFLICT when not voted
request.accept       DJ     FORBIDDEN; INVALID_ARGS; NOT_FOUND; INVALID_TRANSITION (not pending)
request.veto         DJ     FORBIDDEN; INVALID_ARGS; NOT_FOUND; INVALID_TRANSITION (not
                            pending/accepted)
request.batch        DJ     FORBIDDEN; INVALID_ARGS (whole command); then per item:
                            NOT_FOUND, INVALID_TRANSITION (reported in ``result``)
request.play         DJ     FORBIDDEN; INVALID_ARGS; NOT_FOUND; INVALID_TRANSITION (not
                            pending/accepted). The previous now-playing becomes played.
request.played       DJ     FORBIDDEN; INVALID_ARGS; NOT_FOUND; INVALID_TRANSITION (not
                            playing/accepted)
queue.reorder        DJ     FORBIDDEN; INVALID_ARGS; NOT_FOUND; INVALID_TRANSITION (not
                            accepted); INVALID_ARGS (position not in 1..len(queue))
queue.open / close   DJ     FORBIDDEN; INVALID_ARGS (any argument). Idempotent.
queue.settings       DJ     FORBIDDEN; INVALID_ARGS (unknown key, out of range, none given,
                            jump_price not above price)
queue.end            DJ     FORBIDDEN; INVALID_ARGS. Closes the queue, the playing song is
                            played, pending and accepted requests are vetoed ("the set ended")
request.tip          any    INVALID_ARGS; FORBIDDEN (tips off); NOT_FOUND; INVALID_TRANSITION
                            (not playing/played); then the payment checks (below)
payment.refunded     op     FORBIDDEN (not a service or admin); INVALID_ARGS; NOT_FOUND;
payment.refund_failed       INVALID_TRANSITION (see ``queue_payment``); a report that changes
payment.retry               nothing succeeds with no events
===================  =====  ==================================================================

Paid requests (``queue_pay``): in a room with a ``price`` (or with ``payment.jump``),
``request.submit`` checks its ``payment`` first: PAYMENT_REQUIRED, PAYMENT_ALREADY_USED,
UNAVAILABLE (nothing verifies payments, the hook failed open, or its allow did not say
what was paid); a backend's deny gives PAYMENT_DECLINED. A verified payment that the
room's rules then refuse is recorded refund due, and the refusal is the outcome.
Payments move along :data:`roomlog.rooms.queue_payment.TRANSITIONS`; each move is an
event (``payment.*``, ``tip.sent``) and a notice to the paying guest.

Choices, so callers know what to expect:

* **Windows are sliding.** ``submit_rate`` counts the guest's submissions in the
  60 s before ``now_ms``, ``request_cap_per_hour`` the room's submissions in the
  60 min before it (cancelled, vetoed or not: a submission is a submission).
  ``retry_after`` is the seconds until enough of them have left the window.
* **Batch is per item**, not all-or-nothing: a live DJ who selected ten
  requests, one of which its guest cancelled a second ago, wants the other
  nine. Items are decided in order, each on the state the earlier ones left;
  ``result = {"action", "results": [{"request_id", "ok": true, "status",
  "position"?} | {"request_id", "ok": false, "code", "message"}], "succeeded",
  "failed"}``. Only malformed args or a non-DJ reject the whole batch.
* A closed queue refuses new requests only; voting, cancelling and all DJ
  work go on. ``voting: false`` freezes votes (vote and unvote are FORBIDDEN).
* ``request.play`` also takes a pending request (the DJ may skip accepting);
  ``request.played`` also takes an accepted one (played without announcing).
* Commands that change nothing (open an open queue, move a request to where it
  is, set a setting to its value) succeed with no events.
* Settings ranges: ``request_cap_per_hour`` 1..1000, ``max_active_per_guest``
  1..50, ``submit_rate`` 1..60, ``voting`` a bool. Lowering a limit never
  touches existing requests; it only gates new submissions.

Events (``data`` of each, besides ``event``); ``queue`` is the accepted queue in
order *after* the event; ``position`` of a pending request is its place in the
pending order (votes desc, age asc) after the event. Events do not carry the
whole pending order: in a busy room a vote would copy it to every subscriber
(measured: 3.4 KB per delivery at 500 pending). Clients re-sort pending by votes
and age; the full orders come with the state (subscribe, reset, GET state).

==========================  =====================================================
queue.created               owner
request.submitted           request {id, user, song_id, title, artist, note, status,
                            votes}, position (pending)
request.cancelled           request_id
request.voted / unvoted     request_id, user, votes, position (if still pending)
request.accepted            request_id, user, position (queue), queue
request.vetoed              request_id, user, reason, queue
request.playing             request_id, user, title, artist, queue
request.played              request_id, queue
queue.reordered             request_id, position, queue
queue.opened / closed       (nothing)
queue.settings_changed      changed {key: value}, settings (all of them)
payment.settled, ...        see docs/queue.md, "Paid requests"; request.submitted
                            carries ``payment`` for a paid request
==========================  =====================================================

Notices are tabled in :mod:`.queue_apply`. Everyone authenticated may
subscribe; nobody publishes (queue rooms take commands only).

A command hook (``roomlog.hooks``) is told ``open``, ``owner`` and ``settings``;
for ``request.submit`` also the room's ``requests_last_hour`` and the actor's
``active`` requests and ``submits_last_minute``; for a command naming a
``request_id`` that exists, that ``request`` (as every subscriber sees it).
"""

from __future__ import annotations

from typing import Any

from roomlog.errors import RoomlogError
from roomlog.identity import Principal, Role
from roomlog.rooms.domain import Command, Decision, Event, Meta, Notice
from roomlog.rooms.queue_apply import apply
from roomlog.rooms.queue_decide import COMMANDS, DuplicateRequest, can_run_dj, decide
from roomlog.rooms.queue_pay import earnings, pay_args, required
from roomlog.rooms.queue_state import (
    ACTIVE,
    HOUR_MS,
    MINUTE_MS,
    QueueState,
    Request,
    Settings,
    Status,
    dump_state,
    load_state,
    pending_order,
)

__all__ = ["COMMANDS", "DuplicateRequest", "QueueDomain", "QueueState", "Settings", "Status"]

_SEE_ALL = frozenset({Role.DJ, Role.ADMIN, Role.SERVICE})


class QueueDomain:
    """The ``queue`` room kind: a :class:`~roomlog.rooms.domain.Domain` of QueueState."""

    kind = "queue"
    commands = COMMANDS
    private = False  # every reader sees every event (see the docstring)

    def initial(self, room_id: str) -> QueueState:
        return QueueState(room_id=room_id)

    def decide(
        self, state: QueueState, command: Command, actor: Principal, now_ms: int
    ) -> Decision:
        return decide(state, command, actor, now_ms)

    def apply(self, state: QueueState, event: Event, meta: Meta) -> list[Notice]:
        return apply(state, event, meta)

    def view(
        self, state: QueueState, viewer: Principal, *, now_ms: int | None = None
    ) -> dict[str, Any]:
        """The room as ``viewer`` may see it.

        Everyone sees settings, owner, now playing, the accepted queue, the
        pending requests (with ``voted`` for the viewer), the hourly counter and
        their own requests (``mine``, every status). DJs, admins and services
        also get ``requests``: every request with its voters. The hourly
        counter is as of ``now_ms`` (default: the last event's time, ``as_of_ms``).
        """
        now = state.clock_ms if now_ms is None else now_ms
        requests = state.requests

        def row(request: Request, position: int | None = None) -> dict[str, Any]:
            body = request.public()
            body["voted"] = viewer.user in request.voters
            paid = state.payments.get(request.payment_id) if request.payment_id else None
            body["payment"] = None if paid is None else paid.public()
            if position is not None:
                body["position"] = position
            return body

        recent = sum(1 for ts, _ in state.submits if ts > now - HOUR_MS)
        body: dict[str, Any] = {
            "room": state.room,
            "owner": state.owner,
            "open": state.open,
            "settings": state.settings.to_data(),
            "dj": can_run_dj(state, viewer),
            "now_playing": row(requests[state.playing]) if state.playing else None,
            "queue": [row(requests[rid], i) for i, rid in enumerate(state.queue, 1)],
            "pending": [row(requests[rid], i)
                        for i, rid in enumerate(pending_order(requests), 1)],
            "counters": {
                "requests_last_hour": recent,
                "request_cap_per_hour": state.settings.request_cap_per_hour,
                "as_of_ms": now,
            },
            "mine": [row(r) for r in requests.values() if r.user == viewer.user],
        }
        if state.payments:
            body["my_payments"] = [p.public() for p in state.payments.values()
                                   if p.user == viewer.user]
        if viewer.role in _SEE_ALL:
            body["requests"] = [
                {**row(r), "voters": sorted(r.voters)} for r in requests.values()]
            body["payments"] = [p.to_data() for p in state.payments.values()]
            body["earnings"] = earnings(state)
        return body

    def dump(self, state: QueueState) -> dict[str, Any]:
        return dump_state(state)

    def load(self, data: dict[str, Any]) -> QueueState:
        return load_state(data)

    def can_subscribe(self, who: Principal, room_id: str) -> bool:
        return True

    def can_read(self, state: QueueState, who: Principal) -> bool:
        return True

    def audience(self, who: Principal) -> str | None:
        return None

    def redact(self, data: dict[str, Any], audience: str) -> dict[str, Any] | None:
        return data

    def still_reads(self, data: dict[str, Any], who: Principal) -> bool | None:
        return None

    def can_publish(self, who: Principal, room_id: str) -> bool:
        return False

    def hook_view(self, state: QueueState, command: Command, actor: Principal,
                  now_ms: int) -> dict[str, Any]:
        """What a command hook is told (see the module docstring)."""
        body: dict[str, Any] = {"open": state.open, "owner": state.owner,
                                "settings": state.settings.to_data()}
        if command.name == "request.submit":
            body["requests_last_hour"] = sum(1 for ts, _ in state.submits
                                             if ts > now_ms - HOUR_MS)
            body["submits_last_minute"] = sum(1 for ts, user in state.submits
                                              if user == actor.user and ts > now_ms - MINUTE_MS)
            body["active"] = [{"id": r.id, "song_id": r.song_id, "status": str(r.status)}
                              for r in state.requests.values()
                              if r.user == actor.user and r.status in ACTIVE]
        rid = command.args.get("request_id") if isinstance(command.args, dict) else None
        if isinstance(rid, str) and rid in state.requests:
            body["request"] = state.requests[rid].public()
        payment = _payment_asked(state, command)
        if payment is not None:
            body["payment"] = payment
        return body


def _payment_asked(state: QueueState, command: Command) -> dict[str, Any] | None:
    """What the backend must verify of a submit's or tip's payment: the reference and
    the amount due now (the request's price is fixed here; see ``queue_pay``)."""
    if command.name not in ("request.submit", "request.tip"):
        return None
    try:
        pay = pay_args(command.args.get("payment"), tip=command.name == "request.tip")
        amount = required(state, pay)
    except RoomlogError:  # the probe refused such a command already
        return None
    kind = "tip" if command.name == "request.tip" else "request"
    return {"reference": pay.reference, "amount": amount, "currency": state.settings.currency,
            "kind": kind, "jump": pay.jump}
