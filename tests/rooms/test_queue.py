"""The queue room as a pure state machine: sync tests, injected clock, no event loop."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal, Role
from roomlog.rooms.domain import Command, Decision, Domain, Event, Meta, Notice
from roomlog.rooms.queue import DuplicateRequest, QueueDomain, QueueState
from roomlog.rooms.queue_state import Status, pending_key, pending_order

D = QueueDomain()
T0 = 1_700_000_000_000
SEC = 1000
MIN = 60 * SEC

DJ = Principal("dj1", Role.DJ)
DJ2 = Principal("dj2", Role.DJ)
ADMIN = Principal("admin1", Role.ADMIN)
SERVICE = Principal("backend", Role.SERVICE)
G1, G2, G3, G4, G5 = (Principal(f"g{i}", Role.GUEST) for i in range(1, 6))


class Room:
    """A queue room driven the way the command path does: decide, then apply each event."""

    def __init__(self) -> None:
        self.state: QueueState = D.initial("set1")
        self.log: list[tuple[Event, Meta]] = []
        self.notices: list[Notice] = []
        self.now = T0

    def run(self, actor: Principal, name: str, at: int | None = None, **args: Any) -> Decision:
        now = self.now if at is None else at
        before = D.dump(self.state)
        decision = D.decide(self.state, Command(name, args), actor, now)
        assert D.dump(self.state) == before, "decide mutated the state"
        for event in decision.events:
            meta = Meta(actor.user, len(self.log) + 1, now)
            self.notices += D.apply(self.state, event, meta)
            self.log.append((event, meta))
        return decision

    def reject(self, actor: Principal, name: str, code: ErrorCode, **args: Any) -> RoomlogError:
        before = D.dump(self.state)
        with pytest.raises(RoomlogError) as err:
            D.decide(self.state, Command(name, args), actor, self.now)
        assert err.value.code is code, err.value.message
        assert D.dump(self.state) == before
        return err.value

    def submit(self, guest: Principal, song: str, **extra: Any) -> str:
        decision = self.run(guest, "request.submit", song_id=song, title=f"T {song}",
                            artist=f"A {song}", **extra)
        return str(decision.result["request_id"])

    def events(self) -> list[str]:
        return [event.type for event, _ in self.log]

    def told(self, user: str) -> list[dict[str, Any]]:
        return [n.data for n in self.notices if n.user == user]

    def status(self, rid: str) -> str:
        return str(self.state.requests[rid].status)


def spaced(room: Room, guests: list[Principal], step: int = MIN) -> list[str]:
    """One request from each guest, a minute apart (clear of the rate limit)."""
    ids = []
    for i, guest in enumerate(guests):
        room.now += step
        ids.append(room.submit(guest, f"s{i}-{guest.user}"))
    return ids


# ---------------------------------------------------------------------------
# Submitting


def test_submit_gives_deterministic_ids_and_a_full_event() -> None:
    room = Room()
    decision = room.run(G1, "request.submit", song_id="s1", title=" Song ", artist="Band",
                        note="for Ann")
    assert decision.result == {"request_id": "r1", "position": 1}
    assert room.submit(G2, "s2") == "r2"
    event, meta = room.log[0]
    assert event.type == "request.submitted"
    assert event.data == {
        "request": {"id": "r1", "user": "g1", "song_id": "s1", "title": "Song", "artist": "Band",
                    "note": "for Ann", "status": "pending", "votes": 0},
        "position": 1,
    }
    assert room.log[1][0].data["position"] == 2
    request = room.state.requests["r1"]
    assert (request.submitted_ms, request.updated_ms) == (meta.ts, meta.ts)


@pytest.mark.parametrize("args, needle", [
    ({"title": "t", "artist": "a"}, "missing argument(s) song_id"),
    ({"song_id": "s", "title": "t", "artist": "a", "extra": 1}, "unknown argument(s) extra"),
    ({"song_id": 5, "title": "t", "artist": "a"}, "song_id must be a string"),
    ({"song_id": "s", "title": "   ", "artist": "a"}, "title must not be empty"),
    ({"song_id": "s", "title": "t" * 201, "artist": "a"}, "at most 200"),
    ({"song_id": "s", "title": "t", "artist": "a", "note": "n" * 281}, "note must be at most"),
    ({"song_id": "s", "title": "t", "artist": "a", "note": 3}, "note must be a string"),
])
def test_submit_rejects_bad_args(args: dict[str, Any], needle: str) -> None:
    err = Room().reject(G1, "request.submit", ErrorCode.INVALID_ARGS, **args)
    assert needle in err.message


def test_blank_note_is_no_note_and_args_must_be_an_object() -> None:
    room = Room()
    room.submit(G1, "s1", note="  ")
    assert room.state.requests["r1"].note is None
    with pytest.raises(RoomlogError) as err:
        D.decide(room.state, Command("request.submit", ["x"]), G1, T0)  # type: ignore[arg-type]
    assert err.value.code is ErrorCode.INVALID_ARGS


def test_unknown_command() -> None:
    err = Room().reject(G1, "request.dance", ErrorCode.UNKNOWN_COMMAND)
    assert "request.submit" in err.message


def test_closed_queue_refuses_submissions_only() -> None:
    room = Room()
    rid = room.submit(G1, "s1")
    room.run(DJ, "queue.close")
    assert not room.state.open
    room.reject(G2, "request.submit", ErrorCode.QUEUE_CLOSED, song_id="s", title="t", artist="a")
    room.run(G2, "request.vote", request_id=rid)
    room.run(DJ, "request.accept", request_id=rid)
    room.run(DJ, "queue.open")
    assert room.submit(G2, "s2") == "r2"


def test_duplicate_names_the_existing_request() -> None:
    room = Room()
    rid = room.submit(G1, "song")
    err = room.reject(G1, "request.submit", ErrorCode.DUPLICATE_REQUEST,
                      song_id="song", title="t", artist="a")
    assert isinstance(err, DuplicateRequest)
    assert err.details == {"request_id": rid, "status": "pending"}
    assert rid in err.message
    room.run(DJ, "request.accept", request_id=rid)
    room.now += MIN
    err = room.reject(G1, "request.submit", ErrorCode.DUPLICATE_REQUEST,
                      song_id="song", title="t", artist="a")
    assert "accepted" in err.message
    assert room.submit(G2, "song") == "r2"  # another guest may ask for it too
    room.run(DJ, "request.play", request_id=rid)
    assert room.submit(G1, "song") == "r3"  # not active any more: may ask again


def test_too_many_active_counts_pending_and_accepted() -> None:
    room = Room()
    a, b, c = (room.submit(G1, f"s{i}", at=T0 + i * MIN) for i in range(3))
    room.run(DJ, "request.accept", request_id=a)
    room.now = T0 + 5 * MIN
    err = room.reject(G1, "request.submit", ErrorCode.TOO_MANY_ACTIVE,
                      song_id="s9", title="t", artist="a")
    assert "at most 3" in err.message
    room.run(G1, "request.cancel", request_id=b)
    assert room.submit(G1, "s9") == "r4"
    room.run(DJ, "request.played", request_id=a)
    room.run(DJ, "queue.settings", max_active_per_guest=1)
    room.reject(G1, "request.submit", ErrorCode.TOO_MANY_ACTIVE, song_id="x", title="t",
                artist="a")
    assert room.status(c) == "pending"  # lowering a limit never touches requests


def test_rate_limit_is_a_sliding_minute_per_guest() -> None:
    room = Room()
    room.run(DJ, "queue.settings", max_active_per_guest=10)
    for i in range(3):
        room.submit(G1, f"s{i}", at=T0 + i * 10 * SEC)
    room.now = T0 + 30 * SEC
    err = room.reject(G1, "request.submit", ErrorCode.RATE_LIMITED, song_id="s3", title="t",
                      artist="a")
    assert err.retry_after == 30.0
    room.submit(G2, "s3")  # another guest is not limited
    room.now = T0 + MIN - 1
    err = room.reject(G1, "request.submit", ErrorCode.RATE_LIMITED, song_id="s3", title="t",
                      artist="a")
    assert err.retry_after == 0.001
    room.now = T0 + MIN  # the first submission has left the window
    room.submit(G1, "s3")
    err = room.reject(G1, "request.submit", ErrorCode.RATE_LIMITED, song_id="s4", title="t",
                      artist="a")
    assert err.retry_after == 10.0  # until the one at T0 + 10 s leaves


def test_capacity_is_a_sliding_hour_per_room() -> None:
    room = Room()
    room.run(DJ, "queue.settings", request_cap_per_hour=3)
    a = room.submit(G1, "s1", at=T0)
    room.submit(G2, "s2", at=T0 + 10 * MIN)
    room.submit(G3, "s3", at=T0 + 20 * MIN)
    room.run(G1, "request.cancel", request_id=a)  # a cancelled submission still counts
    room.now = T0 + 30 * MIN
    err = room.reject(G4, "request.submit", ErrorCode.CAPACITY_EXCEEDED, song_id="s4",
                      title="t", artist="a")
    assert err.retry_after == 30 * 60.0
    assert "at most 3 requests per hour" in err.message
    view = D.view(room.state, G4, now_ms=room.now)
    assert view["counters"] == {"requests_last_hour": 3, "request_cap_per_hour": 3,
                                "as_of_ms": room.now}
    room.now = T0 + 60 * MIN
    room.submit(G4, "s4")
    assert D.view(room.state, G4)["counters"]["requests_last_hour"] == 3


def test_lowered_cap_waits_until_enough_have_left() -> None:
    room = Room()
    for i, guest in enumerate([G1, G2, G3, G4]):
        room.submit(guest, f"s{i}", at=T0 + i * MIN)
    room.run(DJ, "queue.settings", request_cap_per_hour=2)
    room.now = T0 + 10 * MIN
    err = room.reject(G5, "request.submit", ErrorCode.CAPACITY_EXCEEDED, song_id="x",
                      title="t", artist="a")
    # 4 in the window, cap 2: three must leave; the third leaves at T0 + 2 min + 1 h.
    assert err.retry_after == (2 * MIN + 60 * MIN - 10 * MIN) / 1000


def test_rate_limit_is_checked_before_capacity() -> None:
    room = Room()
    room.run(DJ, "queue.settings", request_cap_per_hour=1, max_active_per_guest=5)
    room.submit(G1, "s1")
    room.run(DJ, "queue.settings", submit_rate=1)
    room.reject(G1, "request.submit", ErrorCode.RATE_LIMITED, song_id="x", title="t",
                artist="a")
    room.reject(G2, "request.submit", ErrorCode.CAPACITY_EXCEEDED, song_id="x", title="t",
                artist="a")


# ---------------------------------------------------------------------------
# Cancelling and voting


def test_cancel_own_pending_only() -> None:
    room = Room()
    a, b = spaced(room, [G1, G1])
    room.reject(G2, "request.cancel", ErrorCode.FORBIDDEN, request_id=a)
    room.reject(G1, "request.cancel", ErrorCode.NOT_FOUND, request_id="r99")
    room.run(DJ, "request.accept", request_id=b)
    err = room.reject(G1, "request.cancel", ErrorCode.INVALID_TRANSITION, request_id=b)
    assert "r2 is accepted" in err.message
    room.run(G1, "request.cancel", request_id=a)
    assert room.log[-1][0].data == {"request_id": a}
    assert room.status(a) == "cancelled"
    room.reject(G1, "request.cancel", ErrorCode.INVALID_TRANSITION, request_id=a)


def test_votes_order_the_pending_list() -> None:
    room = Room()
    a, b, c = spaced(room, [G1, G2, G3])
    assert pending_order(room.state.requests) == [a, b, c]
    room.run(G1, "request.vote", request_id=c)
    assert room.log[-1][0].data == {"request_id": c, "user": "g1", "votes": 1,
                                    "position": 1}
    room.run(G2, "request.vote", request_id=c)
    room.run(G3, "request.vote", request_id=b)
    assert pending_order(room.state.requests) == [c, b, a]
    decision = room.run(G1, "request.unvote", request_id=c)
    assert decision.result == {"request_id": c, "votes": 1}
    assert pending_order(room.state.requests) == [b, c, a]  # tie: older first
    view = D.view(room.state, G2)
    assert [(r["id"], r["votes"], r["voted"], r["position"]) for r in view["pending"]] == [
        (b, 1, False, 1), (c, 1, True, 2), (a, 0, False, 3)]


def test_vote_rules() -> None:
    room = Room()
    a, b = spaced(room, [G1, G2])
    room.reject(G1, "request.vote", ErrorCode.FORBIDDEN, request_id=a)  # own
    room.reject(G1, "request.vote", ErrorCode.NOT_FOUND, request_id="r9")
    room.reject(G1, "request.unvote", ErrorCode.CONFLICT, request_id=b)  # not voted
    room.run(G1, "request.vote", request_id=b)
    room.reject(G1, "request.vote", ErrorCode.CONFLICT, request_id=b)  # once
    room.run(DJ, "request.accept", request_id=b)
    room.run(G3, "request.vote", request_id=b)  # accepted requests still take votes
    room.run(DJ, "request.veto", request_id=a)
    err = room.reject(G2, "request.vote", ErrorCode.INVALID_TRANSITION, request_id=a)
    assert "r1 is vetoed" in err.message
    room.run(DJ, "queue.settings", voting=False)
    err = room.reject(G3, "request.unvote", ErrorCode.FORBIDDEN, request_id=b)
    assert "voting is off" in err.message
    room.reject(G4, "request.vote", ErrorCode.FORBIDDEN, request_id=b)
    assert room.state.requests[b].votes == 2


# ---------------------------------------------------------------------------
# Who is the DJ


DJ_COMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("request.accept", {"request_id": "r1"}),
    ("request.veto", {"request_id": "r1"}),
    ("request.play", {"request_id": "r1"}),
    ("request.played", {"request_id": "r1"}),
    ("queue.reorder", {"request_id": "r1", "position": 1}),
    ("request.batch", {"action": "accept", "request_ids": ["r1"]}),
    ("queue.open", {}),
    ("queue.close", {}),
    ("queue.settings", {"voting": False}),
]


@pytest.mark.parametrize("name, args", DJ_COMMANDS)
@pytest.mark.parametrize("who", [G1, Principal("t1", Role.TECHNICIAN),
                                 Principal("c1", Role.CUSTOMER)])
def test_only_a_dj_runs_dj_commands(who: Principal, name: str, args: dict[str, Any]) -> None:
    room = Room()
    room.submit(G1, "s1")
    room.reject(who, name, ErrorCode.FORBIDDEN, **args)


def test_first_dj_command_claims_the_room() -> None:
    room = Room()
    rid = room.submit(G1, "s1")  # an unclaimed room is open with defaults
    assert room.state.owner is None
    room.reject(DJ, "request.accept", ErrorCode.INVALID_ARGS)  # a failed command claims nothing
    assert room.state.owner is None
    room.run(DJ, "request.accept", request_id=rid)
    assert room.events()[-2:] == ["queue.created", "request.accepted"]
    assert room.log[-2][0].data == {"owner": "dj1"}
    assert room.state.owner == "dj1"
    err = room.reject(DJ2, "queue.close", ErrorCode.FORBIDDEN)
    assert "its DJ dj1" in err.message
    room.run(DJ, "queue.open")  # the owner again: no second queue.created, nothing to do
    assert room.events().count("queue.created") == 1
    assert D.view(room.state, DJ)["dj"] and not D.view(room.state, DJ2)["dj"]


@pytest.mark.parametrize("operator", [ADMIN, SERVICE])
def test_operators_act_without_claiming(operator: Principal) -> None:
    room = Room()
    room.run(operator, "queue.close")
    assert room.state.owner is None and room.events() == ["queue.closed"]
    room.run(DJ, "queue.open")
    assert room.state.owner == "dj1"
    room.run(operator, "queue.close")  # in a claimed room too
    assert room.state.owner == "dj1"


# ---------------------------------------------------------------------------
# DJ transitions


def test_accept_and_veto() -> None:
    room = Room()
    a, b, c = spaced(room, [G1, G2, G3])
    decision = room.run(DJ, "request.accept", request_id=b)
    assert decision.result == {"request_id": b, "status": "accepted", "position": 1}
    assert room.log[-1][0].data == {"request_id": b, "user": "g2", "position": 1,
                                    "queue": [b]}
    room.run(DJ, "request.veto", request_id=a, reason="not tonight")
    assert room.log[-1][0].data == {"request_id": a, "user": "g1", "reason": "not tonight",
                                    "queue": [b]}
    err = room.reject(DJ, "request.accept", ErrorCode.INVALID_TRANSITION, request_id=a)
    assert err.message == "r1 is vetoed; accept needs a request that is pending"
    room.run(DJ, "request.veto", request_id=b)  # an accepted request can still be vetoed
    assert room.state.queue == [] and room.state.requests[b].reason is None
    room.reject(DJ, "request.veto", ErrorCode.INVALID_TRANSITION, request_id=b)
    room.reject(DJ, "request.accept", ErrorCode.NOT_FOUND, request_id="r42")
    room.reject(DJ, "request.veto", ErrorCode.INVALID_ARGS, request_id=c, reason="x" * 281)


def test_play_moves_the_previous_to_played() -> None:
    room = Room()
    a, b, c = spaced(room, [G1, G2, G3])
    room.run(DJ, "request.accept", request_id=a)
    room.run(DJ, "request.accept", request_id=b)
    room.run(DJ, "request.play", request_id=a)
    assert room.state.playing == a and room.state.queue == [b]
    assert room.log[-1][0].data == {"request_id": a, "user": "g1", "title": "T s0-g1",
                                    "artist": "A s0-g1", "queue": [b]}
    room.run(DJ, "request.play", request_id=c)  # straight from pending
    assert room.events()[-2:] == ["request.played", "request.playing"]
    assert room.log[-2][0].data == {"request_id": a, "queue": [b]}
    assert (room.status(a), room.status(c), room.state.playing) == ("played", "playing", c)
    room.reject(DJ, "request.play", ErrorCode.INVALID_TRANSITION, request_id=c)  # playing
    room.reject(DJ, "request.play", ErrorCode.INVALID_TRANSITION, request_id=a)  # played
    room.run(DJ, "request.played", request_id=c)
    assert room.state.playing is None and room.status(c) == "played"
    room.run(DJ, "request.played", request_id=b)  # accepted, played without announcing
    assert room.state.queue == [] and room.status(b) == "played"
    d = room.submit(G4, "s4")
    err = room.reject(DJ, "request.played", ErrorCode.INVALID_TRANSITION, request_id=d)
    assert "r4 is pending" in err.message


def test_reorder() -> None:
    room = Room()
    ids = spaced(room, [G1, G2, G3, G4])
    for rid in ids:
        room.run(DJ, "request.accept", request_id=rid)
    room.run(DJ, "queue.reorder", request_id=ids[3], position=1)
    assert room.state.queue == [ids[3], ids[0], ids[1], ids[2]]
    assert room.log[-1][0].data == {"request_id": ids[3], "position": 1,
                                    "queue": room.state.queue}
    room.run(DJ, "queue.reorder", request_id=ids[3], position=4)
    assert room.state.queue == ids
    count = len(room.log)
    assert room.run(DJ, "queue.reorder", request_id=ids[1], position=2).events == []
    assert len(room.log) == count
    err = room.reject(DJ, "queue.reorder", ErrorCode.INVALID_ARGS, request_id=ids[0],
                      position=5)
    assert "between 1 and 4" in err.message
    room.reject(DJ, "queue.reorder", ErrorCode.INVALID_ARGS, request_id=ids[0], position=0)
    room.reject(DJ, "queue.reorder", ErrorCode.INVALID_ARGS, request_id=ids[0], position=True)
    room.reject(DJ, "queue.reorder", ErrorCode.INVALID_ARGS, request_id=ids[0], position="1")
    room.reject(DJ, "queue.reorder", ErrorCode.NOT_FOUND, request_id="r77", position=1)
    e = room.submit(G5, "s5")
    room.reject(DJ, "queue.reorder", ErrorCode.INVALID_TRANSITION, request_id=e, position=1)


def test_batch_is_per_item() -> None:
    room = Room()
    a, b, c, d = spaced(room, [G1, G2, G3, G4])
    room.run(G3, "request.cancel", request_id=c)
    decision = room.run(DJ, "request.batch", action="accept", request_ids=[b, c, "r99", a])
    assert decision.result == {
        "action": "accept", "succeeded": 2, "failed": 2,
        "results": [
            {"request_id": b, "ok": True, "status": "accepted", "position": 1},
            {"request_id": c, "ok": False, "code": "INVALID_TRANSITION",
             "message": "r3 is cancelled; accept needs a request that is pending"},
            {"request_id": "r99", "ok": False, "code": "NOT_FOUND",
             "message": "no request 'r99' in queue:set1"},
            {"request_id": a, "ok": True, "status": "accepted", "position": 2},
        ],
    }
    assert room.events()[-2:] == ["request.accepted", "request.accepted"]
    assert room.log[-1][0].data["queue"] == [b, a]
    assert "pending" not in room.log[-1][0].data  # clients re-sort pending themselves
    decision = room.run(DJ, "request.batch", action="veto", request_ids=[a, d], reason="no")
    assert [r["status"] for r in decision.result["results"]] == ["vetoed", "vetoed"]
    assert room.log[-1][0].data == {"request_id": d, "user": "g4", "reason": "no",
                                    "queue": [b]}
    count = len(room.log)
    decision = room.run(DJ, "request.batch", action="veto", request_ids=[a])
    assert decision.events == [] and decision.result["failed"] == 1 and len(room.log) == count


@pytest.mark.parametrize("args, needle", [
    ({"action": "play", "request_ids": ["r1"]}, "action must be"),
    ({"action": "accept", "request_ids": []}, "list of 1 to 100"),
    ({"action": "accept", "request_ids": "r1"}, "list of 1 to 100"),
    ({"action": "accept", "request_ids": ["r1"] * 101}, "list of 1 to 100"),
    ({"action": "accept", "request_ids": ["r1", "r1"]}, "must not repeat"),
    ({"action": "accept", "request_ids": ["r1"], "reason": "x"}, "only for action 'veto'"),
    ({"action": "veto", "request_ids": [1]}, "must be a string"),
    ({"request_ids": ["r1"]}, "missing argument(s) action"),
])
def test_batch_rejects_bad_args_as_a_whole(args: dict[str, Any], needle: str) -> None:
    room = Room()
    room.submit(G1, "s1")
    err = room.reject(DJ, "request.batch", ErrorCode.INVALID_ARGS, **args)
    assert needle in err.message


def test_open_close_and_settings() -> None:
    room = Room()
    room.run(DJ, "queue.close")
    assert room.run(DJ, "queue.close").events == []
    assert room.run(DJ, "queue.open").result == {"open": True}
    assert room.events() == ["queue.created", "queue.closed", "queue.opened"]
    room.reject(DJ, "queue.open", ErrorCode.INVALID_ARGS, now=True)
    decision = room.run(DJ, "queue.settings", submit_rate=5, voting=True)
    assert room.log[-1][0].data == {
        "changed": {"submit_rate": 5},
        "settings": {"request_cap_per_hour": 30, "max_active_per_guest": 3, "submit_rate": 5,
                     "voting": True, "price": 0, "jump_price": 0, "currency": "EUR",
                     "tips": False}}
    assert decision.result["settings"]["submit_rate"] == 5
    assert room.run(DJ, "queue.settings", submit_rate=5).events == []
    assert room.state.settings.submit_rate == 5


@pytest.mark.parametrize("args, needle", [
    ({}, "at least one"),
    ({"submit_rate": 0}, "between 1 and 60"),
    ({"request_cap_per_hour": 1001}, "between 1 and 1000"),
    ({"max_active_per_guest": True}, "must be an integer"),
    ({"max_active_per_guest": 2.0}, "must be an integer"),
    ({"voting": 1}, "true or false"),
    ({"colour": "red"}, "unknown argument(s) colour"),
])
def test_settings_reject_bad_values(args: dict[str, Any], needle: str) -> None:
    err = Room().reject(DJ, "queue.settings", ErrorCode.INVALID_ARGS, **args)
    assert needle in err.message


# ---------------------------------------------------------------------------
# Notices


def test_status_notices_go_to_the_requests_guest() -> None:
    room = Room()
    a, b = spaced(room, [G1, G2])
    room.run(DJ, "request.accept", request_id=a)
    seq = room.log[-1][1].seq
    assert room.told("g1") == [
        {"notice": "request.accepted", "room": "queue:set1", "request_id": a,
         "title": "T s0-g1", "artist": "A s0-g1", "seq": seq, "position": 1},
        {"notice": "request.next", "room": "queue:set1", "request_id": a,
         "title": "T s0-g1", "artist": "A s0-g1", "seq": seq, "position": 1},
    ]
    room.run(DJ, "request.veto", request_id=b, reason="wrong genre")
    assert [(n["notice"], n.get("reason")) for n in room.told("g2")] == [
        ("request.vetoed", "wrong genre")]
    room.run(DJ, "request.play", request_id=a)
    assert room.told("g1")[-1]["notice"] == "request.playing"
    assert {n.user for n in room.notices} == {"g1", "g2"}


def test_you_are_next_when_reaching_position_one() -> None:
    room = Room()
    a, b, c = spaced(room, [G1, G2, G3])
    for rid in (a, b, c):
        room.run(DJ, "request.accept", request_id=rid)
    assert [n["notice"] for n in room.told("g2")] == ["request.accepted"]
    room.run(DJ, "request.play", request_id=a)
    assert [n["notice"] for n in room.told("g2")] == ["request.accepted", "request.next"]
    assert room.told("g2")[-1]["position"] == 1
    assert [n["notice"] for n in room.told("g3")] == ["request.accepted"]  # 3 -> 2: quiet


def test_moves_are_told_once_per_crossing_never_a_flood() -> None:
    room = Room()
    room.run(DJ, "queue.settings", max_active_per_guest=10, submit_rate=60,
             request_cap_per_hour=100)
    ids = [room.submit(G1 if i % 2 else G2, f"s{i}") for i in range(10)]
    room.run(DJ, "request.batch", action="accept", request_ids=ids)
    last = ids[-1]
    notices = len(room.notices)
    for _ in range(20):  # a DJ shuffling back and forth: small moves are not told
        room.run(DJ, "queue.reorder", request_id=last, position=8)
        room.run(DJ, "queue.reorder", request_id=last, position=10)
    assert len(room.notices) == notices
    room.run(DJ, "queue.reorder", request_id=last, position=6)  # 10 -> 6: moved by 4
    assert room.notices[-1].data | {"seq": 0} == {
        "notice": "request.moved", "room": "queue:set1", "request_id": last, "title": "T s9",
        "artist": "A s9", "seq": 0, "position": 6, "previous": 10}
    assert len(room.notices) == notices + 1
    room.run(DJ, "queue.reorder", request_id=last, position=3)  # 3 from the told 6: quiet
    assert len(room.notices) == notices + 1
    room.run(DJ, "queue.reorder", request_id=last, position=1)
    assert room.notices[-1].data["notice"] == "request.next"
    first = ids[0]  # pushed from 1 to 2: it was told 1, not told again
    for _ in range(10):
        room.run(DJ, "queue.reorder", request_id=first, position=1)
        room.run(DJ, "queue.reorder", request_id=last, position=1)
    nexts = [n for n in room.notices if n.data["notice"] == "request.next"]
    assert [n.data["request_id"] for n in nexts] == [ids[0], last]


def test_replay_gives_the_same_notices() -> None:
    room = Room()
    ids = spaced(room, [G1, G2, G3, G4, G5])
    room.run(DJ, "request.batch", action="accept", request_ids=ids)
    room.run(DJ, "queue.reorder", request_id=ids[4], position=1)
    room.run(DJ, "request.play", request_id=ids[4])
    fresh = D.initial("set1")
    replayed = [n for event, meta in room.log for n in D.apply(fresh, event, meta)]
    assert replayed == room.notices


# ---------------------------------------------------------------------------
# View, snapshots, access


def test_view_for_a_guest_and_for_the_dj() -> None:
    room = Room()
    a, b, c = spaced(room, [G1, G2, G1])
    room.run(G2, "request.vote", request_id=c)
    room.run(DJ, "request.accept", request_id=a)
    room.run(DJ, "request.veto", request_id=b)
    room.run(DJ, "request.play", request_id=a)
    guest = D.view(room.state, G1)
    assert guest["room"] == "queue:set1" and guest["owner"] == "dj1" and guest["open"]
    assert guest["dj"] is False
    assert guest["now_playing"]["id"] == a and guest["queue"] == []
    assert [(r["id"], r["votes"], r["position"]) for r in guest["pending"]] == [(c, 1, 1)]
    assert [r["id"] for r in guest["mine"]] == [a, c]
    assert "requests" not in guest
    assert D.view(room.state, G2)["mine"][0] | {"updated_ms": 0} == {
        "id": b, "user": "g2", "song_id": "s1-g2", "title": "T s1-g2", "artist": "A s1-g2",
        "note": None, "status": "vetoed", "votes": 0, "submitted_ms": T0 + 2 * MIN,
        "updated_ms": 0, "reason": None, "voted": False, "jump": False, "payment_id": None,
        "payment": None}
    dj = D.view(room.state, DJ)
    assert dj["dj"] is True
    assert [(r["id"], r["status"], r["voters"]) for r in dj["requests"]] == [
        (a, "playing", []), (b, "vetoed", []), (c, "pending", ["g2"])]
    assert "requests" in D.view(room.state, ADMIN)
    json.dumps(dj)


def test_view_lists_the_accepted_queue_with_positions() -> None:
    room = Room()
    a, b = spaced(room, [G1, G2])
    room.run(DJ, "request.batch", action="accept", request_ids=[b, a])
    view = D.view(room.state, G3)
    assert [(r["id"], r["position"]) for r in view["queue"]] == [(b, 1), (a, 2)]
    assert view["now_playing"] is None and view["mine"] == []


def test_dump_load_round_trip() -> None:
    room = Room()
    a, b, _ = spaced(room, [G1, G2, G3])
    room.run(G3, "request.vote", request_id=a)
    room.run(DJ, "request.accept", request_id=a)
    room.run(DJ, "request.veto", request_id=b, reason="r")
    data = D.dump(room.state)
    assert json.loads(json.dumps(data)) == data
    loaded = D.load(json.loads(json.dumps(data)))
    assert loaded == room.state
    assert D.dump(loaded) == data
    with pytest.raises(ValueError, match="version"):
        D.load({**data, "version": 99})


@pytest.mark.parametrize("who", [G1, DJ, ADMIN, SERVICE, Principal("c", Role.CUSTOMER)])
def test_everyone_subscribes_nobody_publishes(who: Principal) -> None:
    assert D.kind == "queue"
    assert D.can_subscribe(who, "set1") is True
    assert D.can_publish(who, "set1") is False


def test_satisfies_the_domain_protocol() -> None:
    domain: Domain[QueueState] = QueueDomain()  # checked by mypy
    assert domain.kind == "queue"


def test_apply_refuses_an_unknown_event() -> None:
    with pytest.raises(ValueError, match="unknown queue event"):
        D.apply(D.initial("x"), Event("request.danced", {}), Meta("u", 1, T0))


# ---------------------------------------------------------------------------
# The fold rebuilds what the decider saw


GUESTS = [Principal(f"guest{i}", Role.GUEST) for i in range(6)]
SONGS = [f"song{i}" for i in range(12)]


def random_command(rng: random.Random, state: QueueState) -> tuple[Principal, Command]:
    ids = [*state.requests, "r999"]
    live = [r.id for r in state.requests.values() if r.status in ("pending", "accepted")]
    rid = rng.choice(live if live and rng.random() < 0.8 else ids)
    guest = rng.choice(GUESTS)
    dj = rng.choices([DJ, ADMIN, DJ2], weights=[8, 1, 1])[0] if state.owner else DJ
    roll = rng.random()
    if roll < 0.30:
        song = rng.choice(SONGS)
        args = {"song_id": song, "title": song.title(), "artist": "Band",
                "note": rng.choice([None, "hi"])}
        return guest, Command("request.submit", args)
    if roll < 0.45:
        return guest, Command(rng.choice(["request.vote", "request.unvote"]), {"request_id": rid})
    if roll < 0.50:
        owner = state.requests[rid].user if rid in state.requests else guest.user
        return Principal(owner, Role.GUEST), Command("request.cancel", {"request_id": rid})
    if roll < 0.85:
        name = rng.choice(["request.accept", "request.veto", "request.play", "request.played"])
        return dj, Command(name, {"request_id": rid})
    if roll < 0.90:
        position = rng.randint(1, max(1, len(state.queue)))
        return dj, Command("queue.reorder", {"request_id": rid, "position": position})
    if roll < 0.95:
        sample = rng.sample(ids, k=min(len(ids), rng.randint(1, 4)))
        return dj, Command("request.batch", {"action": rng.choice(["accept", "veto"]),
                                             "request_ids": sample})
    if roll < 0.98:
        name = rng.choices(["queue.open", "queue.close"], weights=[3, 1])[0]
        return dj, Command(name, {})
    key = rng.choice(["request_cap_per_hour", "max_active_per_guest", "submit_rate", "voting"])
    value: Any = rng.random() < 0.7 if key == "voting" else rng.randint(1, 40)
    return dj, Command("queue.settings", {key: value})


def check_orders(state: QueueState, event: Event) -> None:
    """The orders and positions an event carries are those its application leaves."""
    assert state.pending_keys == sorted(  # the derived index the fold keeps in step
        pending_key(r) for r in state.requests.values() if r.status is Status.PENDING)
    if "queue" in event.data:
        assert event.data["queue"] == state.queue
    if event.type in ("request.submitted", "request.voted", "request.unvoted"):
        rid = event.data.get("request_id") or event.data["request"]["id"]
        pending = pending_order(state.requests)
        if rid in pending:
            assert pending.index(rid) + 1 == event.data["position"]
        else:
            assert "position" not in event.data
    if event.type == "request.accepted":
        assert state.queue[event.data["position"] - 1] == event.data["request_id"]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_folding_the_log_rebuilds_the_deciders_state(seed: int) -> None:
    rng = random.Random(seed)
    live = D.initial("set1")
    shadow = D.initial("set1")  # folded from the stored (JSON round-tripped) log only
    log: list[tuple[Event, Meta]] = []
    live_notices: list[Notice] = []
    codes: set[str] = set()
    now = T0
    snapshot: dict[str, Any] | None = None
    for step in range(300):
        if step == 150:
            snapshot = json.loads(json.dumps(D.dump(live)))
            snapshot_at = len(log)
        now += rng.randint(0, 40 * SEC)
        actor, command = random_command(rng, live)
        before = D.dump(live)
        try:
            decision = D.decide(live, command, actor, now)
        except RoomlogError as err:
            codes.add(str(err.code))
            assert D.dump(live) == before
            continue
        assert D.dump(live) == before
        json.dumps(decision.result)
        for event in decision.events:
            meta = Meta(actor.user, len(log) + 1, now)
            live_notices += D.apply(live, event, meta)
            check_orders(live, event)
            stored = Event.from_data(json.loads(json.dumps(event.to_data())))
            D.apply(shadow, stored, meta)
            log.append((stored, meta))
        assert D.dump(shadow) == D.dump(live)
    fresh = D.initial("set1")
    notices = [n for event, meta in log for n in D.apply(fresh, event, meta)]
    assert D.dump(fresh) == D.dump(live)
    assert fresh == live
    assert notices == live_notices
    for viewer in [*GUESTS, DJ, ADMIN]:
        assert D.view(fresh, viewer) == D.view(live, viewer)
    assert D.load(D.dump(live)) == live
    assert snapshot is not None  # a snapshot plus the rest of the log also gets there
    resumed = D.load(snapshot)
    for event, meta in log[snapshot_at:]:
        D.apply(resumed, event, meta)
    assert D.dump(resumed) == D.dump(live)
    # the walk exercised the rules, not just the happy path
    assert len(log) > 100
    assert {"NOT_FOUND", "INVALID_TRANSITION", "FORBIDDEN"} <= codes
    assert {e.type for e, _ in log} >= {"request.submitted", "request.accepted",
                                        "request.vetoed", "request.playing", "request.played"}


def test_the_submit_window_keeps_the_last_hour_even_when_clocks_disagree() -> None:
    # Events are applied in seq order; their times come from the instances' clocks,
    # which may disagree by a little: the window still holds exactly the last hour.
    state = D.initial("clocks")

    def submitted(n: int, ts: int, user: str) -> None:
        body = {"id": f"r{n}", "user": user, "song_id": f"s{n}", "title": "T", "artist": "A",
                "status": "pending", "votes": 0}
        D.apply(state, Event("request.submitted", {"request": body, "position": 1}),
                Meta(user, n, ts))

    t0 = 10 * 60 * MIN
    for n, (ts, user) in enumerate([(t0, "a"), (t0 - 2 * SEC, "b"), (t0 + MIN, "c"),
                                    (t0 + MIN - SEC, "a")], start=1):
        submitted(n, ts, user)
    assert state.submits == [(t0 - 2 * SEC, "b"), (t0, "a"), (t0 + MIN - SEC, "a"),
                             (t0 + MIN, "c")]
    submitted(5, t0 + 60 * MIN, "d")  # an hour after t0: t0 and before leave the window
    assert state.submits == [(t0 + MIN - SEC, "a"), (t0 + MIN, "c"), (t0 + 60 * MIN, "d")]
    # A snapshot of an older version kept them in arrival order: loaded sorted.
    dumped = D.dump(state)
    dumped["submits"] = dumped["submits"][::-1]
    assert D.load(json.loads(json.dumps(dumped))).submits == state.submits
