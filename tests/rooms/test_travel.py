"""Time travel over hand-made logs: the fold up to a seq, as each audience saw it. Pure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.rooms import DOMAINS
from roomlog.rooms.domain import Event, Meta
from roomlog.rooms.travel import AUDIENCES, fold, state_at

T0 = 1_760_000_000_000
SECRET = "INTERNAL-MARKER-7"  # written only into staff-only fields


def entry(seq: int, actor: str, data: dict[str, Any]) -> tuple[Event, Meta]:
    return Event.from_data(data), Meta(actor, seq, T0 + seq * 1000)


def ticket_log() -> list[tuple[Event, Meta]]:
    """A ticket: created (with an internal note), diagnosed, an internal note, held
    with an internal reason, back to diagnosing, a customer note."""
    return [
        entry(1, "tina", {"event": "ticket.created", "ticket": "t1", "customer_id": "carl",
                          "device": "phone", "problem": "screen", "technicians": ["tina"],
                          "status": "received", "internal": {"cost": SECRET}}),
        entry(2, "tina", {"event": "status.changed", "from": "received", "to": "diagnosing",
                          "reason": None}),
        entry(3, "tina", {"event": "note.added", "note_id": "n1", "text": SECRET,
                          "priority": "normal", "visibility": "internal",
                          "from_customer": False}),
        entry(4, "tina", {"event": "status.changed", "from": "diagnosing", "to": "on_hold",
                          "reason": "waiting for a part", "internal_reason": SECRET}),
        entry(5, "tina", {"event": "status.changed", "from": "on_hold", "to": "diagnosing",
                          "reason": None}),
        entry(6, "carl", {"event": "note.added", "note_id": "n2", "text": "thanks",
                          "priority": "normal", "visibility": "customer",
                          "from_customer": True}),
    ]


def queue_log() -> list[tuple[Event, Meta]]:
    request = {"id": "r1", "user": "gina", "song_id": "s1", "title": "Song", "artist": "Band",
               "note": None, "status": "pending", "votes": 0}
    return [
        entry(1, "dave", {"event": "queue.created", "owner": "dave"}),
        entry(2, "gina", {"event": "request.submitted", "request": request, "position": 1}),
        entry(3, "dave", {"event": "request.vetoed", "request_id": "r1", "reason": "explicit",
                          "queue": []}),
    ]


def travel(log: list[tuple[Event, Meta]], kind: str, at: int, audience: str,
           **kw: Any) -> dict[str, Any]:
    return state_at(DOMAINS[kind], "t1", log, at, audience, **kw)


@pytest.mark.parametrize("at", range(1, 7))
def test_the_customer_never_sees_an_internal_field(at: int) -> None:
    body = travel(ticket_log(), "repair", at, "customer")
    assert body["viewer"] == "carl"
    assert body["state"]["readable"] is True
    assert SECRET not in json.dumps(body)
    assert "internal" not in body["state"]


@pytest.mark.parametrize("at", range(1, 7))
def test_staff_see_what_customers_do_not(at: int) -> None:
    technician = travel(ticket_log(), "repair", at, "technician")
    admin = travel(ticket_log(), "repair", at, "admin", user="root")
    assert technician["viewer"] == "tina"
    assert admin["viewer"] == "root"
    for body in (technician, admin):
        assert SECRET in json.dumps(body["state"])  # internal of ticket.created


def test_each_seq_shows_the_state_and_the_event_that_made_it() -> None:
    statuses = [travel(ticket_log(), "repair", at, "customer")["state"]["status"]
                for at in range(1, 7)]
    assert statuses == ["received", "diagnosing", "diagnosing", "on_hold", "diagnosing",
                        "diagnosing"]
    held = travel(ticket_log(), "repair", 4, "customer")
    assert held["event"]["type"] == "status.changed"
    assert held["event"]["by"] == "tina" and held["event"]["seq"] == 4
    assert held["event"]["data"] == {"event": "status.changed", "from": "diagnosing",
                                     "to": "on_hold", "reason": "waiting for a part"}
    staff = travel(ticket_log(), "repair", 4, "technician")
    assert staff["event"]["data"]["internal_reason"] == SECRET


def test_an_event_the_customer_was_not_sent_is_none() -> None:
    body = travel(ticket_log(), "repair", 3, "customer")
    assert body["event"]["type"] == "note.added" and body["event"]["data"] is None
    assert body["state"]["notes"] == []
    assert travel(ticket_log(), "repair", 3, "technician")["state"]["notes"][0]["id"] == "n1"


def test_seq_zero_is_before_anything() -> None:
    body = travel(ticket_log(), "repair", 0, "technician")
    assert body["event"] is None and body["state"]["exists"] is False


def test_why_was_my_song_vetoed() -> None:
    guest = travel(queue_log(), "queue", 3, "guest")
    assert guest["viewer"] == "gina"
    assert guest["state"]["mine"][0]["status"] == "vetoed"
    assert guest["event"]["data"]["reason"] == "explicit" and guest["event"]["by"] == "dave"
    assert "requests" not in guest["state"]  # every request with voters is the DJ's
    dj = travel(queue_log(), "queue", 2, "dj")
    assert dj["viewer"] == "dave" and dj["state"]["pending"][0]["id"] == "r1"
    assert dj["audiences"] == list(AUDIENCES["queue"])


def test_a_fold_from_a_snapshot_skips_what_it_covers() -> None:
    domain = DOMAINS["repair"]
    log = ticket_log()
    start = fold(domain, "t1", log, 4)
    tail = log[4:]  # seqs 1..4 trimmed
    moment = fold(domain, "t1", tail, 6, start=(4, start.state))
    assert moment.seq == 6 and moment.event is not None and moment.event.type == "note.added"
    at_start = fold(domain, "t1", log[3:], 4, start=(4, fold(domain, "t1", log, 4).state))
    assert at_start.meta is not None and at_start.meta.seq == 4  # its own event, still kept
    assert at_start.state.status.value == "on_hold"


def test_gone_or_future_seqs_are_not_found() -> None:
    with pytest.raises(RoomlogError) as err:
        travel(ticket_log()[2:], "repair", 5, "admin")
    assert err.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(RoomlogError) as err:
        travel(ticket_log(), "repair", 9, "admin")
    assert err.value.code is ErrorCode.NOT_FOUND and err.value.details == {"head": 6}


def test_an_audience_of_another_kind_is_invalid() -> None:
    with pytest.raises(RoomlogError) as err:
        travel(ticket_log(), "repair", 1, "guest")
    assert err.value.code is ErrorCode.INVALID_ARGS
