"""The decider of a ``queue:`` room: state + command + actor + now -> events.

Never mutates the state. The rules, who may run what and the error codes are
tabled in :mod:`roomlog.rooms.queue`; this module is their one implementation.
Positions that an event changes are computed here on a :class:`_Draft` (a
cheap copy of the two orders) so that each event carries the orders it leaves.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal, Role
from roomlog.rooms import queue_args as A
from roomlog.rooms.domain import Approval, Command, Decision, Event
from roomlog.rooms.queue_pay import (
    Verified,
    claim,
    new_payment,
    refund_events,
    settle_events,
    verify,
)
from roomlog.rooms.queue_pay_decide import OPERATOR_COMMANDS, tip
from roomlog.rooms.queue_state import (
    ACTIVE,
    HOUR_MS,
    MINUTE_MS,
    TRANSITIONS,
    QueueState,
    Request,
    Status,
    pending_key,
)

__all__ = ["COMMANDS", "DJ_COMMANDS", "GUEST_COMMANDS", "PAID_COMMANDS", "DuplicateRequest",
           "can_run_dj", "decide"]

Args = dict[str, Any]
Handler = Callable[[QueueState, Args, Principal, int], Decision]
# Commands a payment may come with: they see the command hook's approval.
PaidHandler = Callable[[QueueState, Args, Approval | None, Principal, int], Decision]


class DuplicateRequest(RoomlogError):
    """``DUPLICATE_REQUEST``; ``details`` names the guest's existing request.

    A caller that wants to point the guest at it (vote for it, cancel it) reads
    ``details["request_id"]`` instead of parsing the message.
    """

    def __init__(self, existing: Request) -> None:
        super().__init__(
            ErrorCode.DUPLICATE_REQUEST,
            f"you already requested {existing.song_id!r} as {existing.id} "
            f"({existing.status}); wait until it is played or cancel it",
            details={"request_id": existing.id, "status": str(existing.status)},
        )


# ---------------------------------------------------------------------------
# Helpers


class _Draft:
    """The statuses, votes and orders a decision leaves, without touching the state."""

    def __init__(self, state: QueueState) -> None:
        self.state = state
        self.queue = list(state.queue)
        self.playing = state.playing
        self.status: dict[str, Status] = {}
        self.votes: dict[str, int] = {}

    def status_of(self, request: Request) -> Status:
        return self.status.get(request.id, request.status)

    def _key(self, request: Request) -> tuple[int, int, int]:
        return pending_key(request, self.votes.get(request.id, request.votes))

    def pending_position(self, request: Request) -> int:
        """Its 1-based place among pending requests (votes desc, then age).

        One pass, no sort: events carry this position instead of the whole order,
        which a vote in a busy room would otherwise copy to every subscriber.
        """
        key = self._key(request)
        if not self.status:  # only votes changed: bisect the state's sorted keys
            before = bisect.bisect_left(self.state.pending_keys, key)
            if pending_key(request) < key:
                before -= 1  # its own old key sorts before its new one
            return before + 1
        return 1 + sum(1 for r in self.state.requests.values()
                       if r.id != request.id and self.status_of(r) is Status.PENDING
                       and self._key(r) < key)

    def move(self, request: Request, status: Status) -> None:
        if self.status_of(request) is Status.ACCEPTED:
            self.queue.remove(request.id)
        if status is Status.ACCEPTED:
            self.queue.append(request.id)
        if status is Status.PLAYING:
            self.playing = request.id
        elif self.playing == request.id:
            self.playing = None
        self.status[request.id] = status

    def orders(self) -> dict[str, Any]:
        return {"queue": list(self.queue)}


def _find(state: QueueState, rid: str) -> Request:
    request = state.requests.get(rid)
    if request is None:
        raise RoomlogError(ErrorCode.NOT_FOUND, f"no request {rid!r} in {state.room}")
    return request


def _check_transition(draft: _Draft, request: Request, action: str) -> None:
    status = draft.status_of(request)
    allowed = TRANSITIONS[action]
    if status not in allowed:
        wanted = " or ".join(sorted(allowed))
        raise RoomlogError(
            ErrorCode.INVALID_TRANSITION,
            f"{request.id} is {status}; {action} needs a request that is {wanted}",
        )


def _retry_after(stamps: list[int], limit: int, window_ms: int, now_ms: int) -> float | None:
    """None while fewer than ``limit`` stamps are in the sliding window ending at
    ``now_ms``, else the seconds until enough of them have left it."""
    if len(stamps) < limit:  # fewer in all than the window may hold: no need to look
        return None
    recent = sorted(ts for ts in stamps if ts > now_ms - window_ms)
    if len(recent) < limit:
        return None
    return (recent[len(recent) - limit] + window_ms - now_ms) / 1000


def can_run_dj(state: QueueState, who: Principal) -> bool:
    """Admins and services always; a DJ when the room is unclaimed or theirs."""
    if who.is_operator:
        return True
    return who.role is Role.DJ and state.owner in (None, who.user)


def _claim(state: QueueState, actor: Principal, command: str) -> list[Event]:
    """FORBIDDEN unless ``actor`` may run DJ commands; ``queue.created`` on a claim."""
    if not can_run_dj(state, actor):
        runner = f"its DJ {state.owner}" if state.owner else "a DJ"
        raise RoomlogError(
            ErrorCode.FORBIDDEN, f"only {runner} or an admin may run {command} in {state.room}"
        )
    if state.owner is None and actor.role is Role.DJ:
        return [Event("queue.created", {"owner": actor.user})]
    return []


# ---------------------------------------------------------------------------
# Guest commands


def _submit(state: QueueState, args: Args, approval: Approval | None, actor: Principal,
            now_ms: int) -> Decision:
    song = A.submit_args(args)
    verified = verify(state, song.payment, approval)
    try:
        _check_submit(state, song, actor, now_ms)
    except RoomlogError as err:
        if verified is None:
            raise
        return _refused(state, verified, actor, err)
    rid = f"r{state.next_number}"
    jump = song.payment is not None and song.payment.jump
    # No votes and the youngest: after every pending request of its kind (jump or not).
    position = bisect.bisect_left(state.pending_keys, (-int(jump), 0, state.next_number)) + 1
    request = {
        "id": rid, "user": actor.user, "song_id": song.song_id, "title": song.title,
        "artist": song.artist, "note": song.note, "status": str(Status.PENDING), "votes": 0,
    }
    if jump:
        request["jump"] = True
    data: dict[str, Any] = {"request": request, "position": position}
    result: dict[str, Any] = {"request_id": rid, "position": position}
    if verified is None:
        return Decision([Event("request.submitted", data)], result)
    data["payment"] = new_payment(state, verified, kind="request", user=actor.user,
                                  request_id=rid)
    result["payment_id"] = data["payment"]["payment_id"]
    return Decision([Event("request.submitted", data)], result, claims=(claim(verified),))


def _check_submit(state: QueueState, song: A.SongArgs, actor: Principal, now_ms: int) -> None:
    if not state.open:
        raise RoomlogError(
            ErrorCode.QUEUE_CLOSED, f"{state.room} is closed to new requests for now"
        )
    mine = [r for r in state.requests.values() if r.user == actor.user and r.status in ACTIVE]
    for existing in mine:
        if existing.song_id == song.song_id:
            raise DuplicateRequest(existing)
    limit = state.settings.max_active_per_guest
    if len(mine) >= limit:
        raise RoomlogError(
            ErrorCode.TOO_MANY_ACTIVE,
            f"you have {len(mine)} requests pending or accepted (at most {limit}); "
            "cancel one or wait until one is played",
        )
    _check_windows(state, actor, now_ms)


def _refused(state: QueueState, verified: Verified, actor: Principal,
             err: RoomlogError) -> Decision:
    """The room refuses a request whose payment the backend verified already: the
    payment gets its record, refund due, and the guest the room's error (remembered
    for the command's id, so a retry does not pay twice)."""
    body = new_payment(state, verified, kind="request", user=actor.user, request_id=None)
    event = Event("payment.refund_due", {**body, "reason": "refused", "code": str(err.code),
                                         "attempt": 1})
    details = {**(err.details or {}), "payment_id": body["payment_id"], "refund": "due"}
    error = RoomlogError(err.code, f"{err.message}; your payment will be refunded",
                         details=details)
    return Decision([event], {"payment_id": body["payment_id"]}, claims=(claim(verified),),
                    error=error)


def _check_windows(state: QueueState, actor: Principal, now_ms: int) -> None:
    """RATE_LIMITED (the guest's last minute), then CAPACITY_EXCEEDED (the room's hour)."""
    rate = state.settings.submit_rate
    mine = [ts for ts, user in state.submits if user == actor.user]
    wait = _retry_after(mine, rate, MINUTE_MS, now_ms)
    if wait is not None:
        raise RoomlogError(
            ErrorCode.RATE_LIMITED,
            f"at most {rate} requests per minute; try again in {wait:g} s",
            retry_after=wait,
        )
    cap = state.settings.request_cap_per_hour
    wait = _retry_after([ts for ts, _ in state.submits], cap, HOUR_MS, now_ms)
    if wait is not None:
        raise RoomlogError(
            ErrorCode.CAPACITY_EXCEEDED,
            f"{state.room} takes at most {cap} requests per hour; try again in {wait:g} s",
            retry_after=wait,
        )


def _own(state: QueueState, args: Args, actor: Principal) -> Request:
    request = _find(state, A.request_id(args))
    if request.user != actor.user:
        raise RoomlogError(ErrorCode.FORBIDDEN, f"{request.id} is not your request")
    return request


def _cancel(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    request = _own(state, args, actor)
    draft = _Draft(state)
    _check_transition(draft, request, "cancel")
    draft.move(request, Status.CANCELLED)
    events = [Event("request.cancelled", {"request_id": request.id}),
              *refund_events(state, request, "cancelled")]
    return Decision(events, {"request_id": request.id, "status": str(Status.CANCELLED)})


def _votable(state: QueueState, args: Args, actor: Principal) -> tuple[Request, _Draft]:
    if not state.settings.voting:
        raise RoomlogError(ErrorCode.FORBIDDEN, f"voting is off in {state.room}")
    request = _find(state, A.request_id(args))
    if request.user == actor.user:
        raise RoomlogError(ErrorCode.FORBIDDEN, "you may not vote on your own request")
    draft = _Draft(state)
    _check_transition(draft, request, "vote")
    return request, draft


def _vote(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    request, draft = _votable(state, args, actor)
    if actor.user in request.voters:
        raise RoomlogError(ErrorCode.CONFLICT, f"you already voted for {request.id}")
    return _voted(request, draft, actor, request.votes + 1, "request.voted")


def _unvote(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    request, draft = _votable(state, args, actor)
    if actor.user not in request.voters:
        raise RoomlogError(ErrorCode.CONFLICT, f"you have not voted for {request.id}")
    return _voted(request, draft, actor, request.votes - 1, "request.unvoted")


def _voted(request: Request, draft: _Draft, actor: Principal, votes: int, kind: str) -> Decision:
    draft.votes[request.id] = votes
    data: dict[str, Any] = {"request_id": request.id, "user": actor.user, "votes": votes}
    if draft.status_of(request) is Status.PENDING:  # accepted ones keep their queue place
        data["position"] = draft.pending_position(request)
    return Decision([Event(kind, data)], {"request_id": request.id, "votes": votes})


# ---------------------------------------------------------------------------
# DJ commands


def _accept_one(draft: _Draft, rid: str) -> Event:
    request = _find(draft.state, rid)
    _check_transition(draft, request, "accept")
    draft.move(request, Status.ACCEPTED)
    return Event("request.accepted", {
        "request_id": rid, "user": request.user, "position": len(draft.queue), **draft.orders()})


def _veto_one(draft: _Draft, rid: str, reason: str | None, why: str = "vetoed"
              ) -> list[Event]:
    """``request.vetoed``, and ``payment.refund_due`` (for ``why``) if it was paid."""
    request = _find(draft.state, rid)
    _check_transition(draft, request, "veto")
    draft.move(request, Status.VETOED)
    return [Event("request.vetoed", {
        "request_id": rid, "user": request.user, "reason": reason, **draft.orders()}),
        *refund_events(draft.state, request, why)]


def _accept(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    event = _accept_one(_Draft(state), A.request_id(args))
    data = event.data
    result = {"request_id": data["request_id"], "status": "accepted", "position": data["position"]}
    return Decision([event], result)


def _veto(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    rid, reason = A.veto_args(args)
    events = _veto_one(_Draft(state), rid, reason)
    return Decision(events, {"request_id": rid, "status": "vetoed"})


def _batch(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    """Per item: each id is decided on the state the previous items left; a
    failing item is reported in ``result`` and the others still happen."""
    batch = A.batch_args(args)
    draft = _Draft(state)
    events: list[Event] = []
    results: list[dict[str, Any]] = []
    succeeded = 0
    for rid in batch.request_ids:
        try:
            if batch.action == "accept":
                done = [_accept_one(draft, rid)]
            else:
                done = _veto_one(draft, rid, batch.reason)
        except RoomlogError as err:
            results.append({"request_id": rid, "ok": False, "code": str(err.code),
                            "message": err.message})
            continue
        events += done
        succeeded += 1
        item: dict[str, Any] = {"request_id": rid, "ok": True, "status": str(draft.status[rid])}
        if batch.action == "accept":
            item["position"] = done[0].data["position"]
        results.append(item)
    result = {"action": batch.action, "results": results,
              "succeeded": succeeded, "failed": len(results) - succeeded}
    return Decision(events, result)


def _play(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    draft = _Draft(state)
    request = _find(state, A.request_id(args))
    _check_transition(draft, request, "play")
    events: list[Event] = []
    if state.playing is not None:
        previous = state.requests[state.playing]
        draft.move(previous, Status.PLAYED)
        events.append(Event("request.played", {"request_id": state.playing, **draft.orders()}))
        events += settle_events(state, previous)
    draft.move(request, Status.PLAYING)
    events.append(Event("request.playing", {
        "request_id": request.id, "user": request.user, "title": request.title,
        "artist": request.artist, **draft.orders()}))
    return Decision(events, {"request_id": request.id, "status": "playing"})


def _played(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    draft = _Draft(state)
    request = _find(state, A.request_id(args))
    _check_transition(draft, request, "played")
    draft.move(request, Status.PLAYED)
    events = [Event("request.played", {"request_id": request.id, **draft.orders()}),
              *settle_events(state, request)]
    return Decision(events, {"request_id": request.id, "status": "played"})


def _reorder(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    rid, position = A.reorder_args(args)
    request = _find(state, rid)
    _check_transition(_Draft(state), request, "reorder")
    if position > len(state.queue):
        raise A.invalid(f"position must be between 1 and {len(state.queue)} (got {position})")
    result = {"request_id": rid, "position": position}
    if state.queue.index(rid) + 1 == position:
        return Decision([], result)
    queue = [i for i in state.queue if i != rid]
    queue.insert(position - 1, rid)
    event = Event("queue.reordered", {"request_id": rid, "position": position, "queue": queue})
    return Decision([event], result)


def _open(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    A.no_args(args)
    return Decision([] if state.open else [Event("queue.opened", {})], {"open": True})


def _close(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    A.no_args(args)
    return Decision([Event("queue.closed", {})] if state.open else [], {"open": False})


def _end(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    """``queue.end``: the set is over. The queue closes, the song playing counts as
    played, and every request still pending or accepted is vetoed (reason "the set
    ended"), its payment refund due (reason ``set_ended``)."""
    A.no_args(args)
    draft = _Draft(state)
    events = [] if not state.open else [Event("queue.closed", {})]
    if state.playing is not None:
        playing = state.requests[state.playing]
        draft.move(playing, Status.PLAYED)
        events += [Event("request.played", {"request_id": playing.id, **draft.orders()}),
                   *settle_events(state, playing)]
    waiting = [r.id for r in state.requests.values() if r.status in ACTIVE]
    for rid in waiting:
        events += _veto_one(draft, rid, "the set ended", "set_ended")
    return Decision(events, {"open": False, "ended": len(waiting)})


def _settings(state: QueueState, args: Args, actor: Principal, now_ms: int) -> Decision:
    current = state.settings.to_data()
    changed = {k: v for k, v in A.settings_args(args).items() if current[k] != v}
    settings = {**current, **changed}
    if settings["jump_price"] and settings["jump_price"] <= settings["price"]:
        raise A.invalid(f"jump_price must be 0 (no jumping) or above price "
                        f"({settings['price']}); got {settings['jump_price']}")
    events = [Event("queue.settings_changed", {"changed": changed, "settings": settings})]
    return Decision(events if changed else [], {"settings": settings})


PAID_COMMANDS: dict[str, PaidHandler] = {
    "request.submit": _submit,
    "request.tip": tip,
}

GUEST_COMMANDS: dict[str, Handler] = {
    "request.cancel": _cancel,
    "request.vote": _vote,
    "request.unvote": _unvote,
}

DJ_COMMANDS: dict[str, Handler] = {
    "request.accept": _accept,
    "request.veto": _veto,
    "request.batch": _batch,
    "request.play": _play,
    "request.played": _played,
    "queue.reorder": _reorder,
    "queue.open": _open,
    "queue.close": _close,
    "queue.end": _end,
    "queue.settings": _settings,
}

COMMANDS = sorted([*PAID_COMMANDS, *GUEST_COMMANDS, *DJ_COMMANDS, *OPERATOR_COMMANDS])


def decide(state: QueueState, command: Command, actor: Principal, now_ms: int) -> Decision:
    """The events ``command`` causes, or a :class:`RoomlogError` (nothing happens)."""
    name = command.name
    if not isinstance(command.args, dict):
        raise A.invalid("args must be an object")
    paid = PAID_COMMANDS.get(name)
    if paid is not None:
        return paid(state, command.args, command.approval, actor, now_ms)
    operator = OPERATOR_COMMANDS.get(name)
    if operator is not None:
        return operator(state, command.args, actor, now_ms)
    guest = GUEST_COMMANDS.get(name)
    if guest is not None:
        return guest(state, command.args, actor, now_ms)
    dj = DJ_COMMANDS.get(name)
    if dj is None:
        raise RoomlogError(
            ErrorCode.UNKNOWN_COMMAND,
            f"unknown command {name!r}; a queue room takes {', '.join(COMMANDS)}",
        )
    created = _claim(state, actor, name)
    decision = dj(state, command.args, actor, now_ms)
    return Decision(created + decision.events, decision.result)
