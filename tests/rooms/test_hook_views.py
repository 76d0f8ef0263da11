"""What each domain tells a command hook (``hook_view``), and where its data may go. Pure."""

from __future__ import annotations

from roomlog.identity import Principal, Role
from roomlog.rooms.domain import Command, Event, Meta
from roomlog.rooms.queue import QueueDomain
from roomlog.rooms.repair import RepairDomain, redact

GUEST = Principal("g1", Role.GUEST)
NOW = 10 * 3_600_000


def submitted(rid: str, user: str, song: str, ts: int) -> tuple[Event, Meta]:
    request = {"id": rid, "user": user, "song_id": song, "title": "T", "artist": "A",
               "note": None, "status": "pending", "votes": 0}
    return Event("request.submitted", {"request": request, "position": 1}), Meta(user, 1, ts)


def test_a_queue_tells_a_submit_hook_the_rules_facts() -> None:
    domain = QueueDomain()
    state = domain.initial("q")
    for event, meta in (submitted("r1", "g1", "s1", NOW - 30_000),
                        submitted("r2", "g2", "s2", NOW - 120_000),
                        submitted("r3", "g1", "s3", NOW - 2 * 3_600_000)):
        domain.apply(state, event, meta)
    view = domain.hook_view(state, Command("request.submit", {"song_id": "s9"}), GUEST, NOW)
    assert view["open"] is True and view["owner"] is None
    assert view["settings"]["max_active_per_guest"] == 3
    assert (view["requests_last_hour"], view["submits_last_minute"]) == (2, 1)
    assert view["active"] == [{"id": "r1", "song_id": "s1", "status": "pending"},
                              {"id": "r3", "song_id": "s3", "status": "pending"}]
    vote = domain.hook_view(state, Command("request.vote", {"request_id": "r2"}), GUEST, NOW)
    assert vote["request"]["id"] == "r2" and vote["request"]["user"] == "g2"
    assert "active" not in vote
    missing = domain.hook_view(state, Command("request.vote", {"request_id": "r9"}), GUEST, NOW)
    assert "request" not in missing


def test_a_paid_submit_or_tip_tells_the_hook_what_to_verify() -> None:
    domain = QueueDomain()
    state = domain.initial("q")
    state.settings.price, state.settings.jump_price, state.settings.currency = 500, 900, "USD"
    song = {"song_id": "s", "title": "T", "artist": "A"}
    view = domain.hook_view(state, Command("request.submit", {
        **song, "payment": {"reference": "pay_1", "jump": True}}), GUEST, NOW)
    assert view["payment"] == {"reference": "pay_1", "amount": 900, "currency": "USD",
                               "kind": "request", "jump": True}
    tip = domain.hook_view(state, Command("request.tip", {
        "request_id": "r1", "payment": {"reference": "t", "amount": 150}}), GUEST, NOW)
    assert tip["payment"] == {"reference": "t", "amount": 150, "currency": "USD",
                              "kind": "tip", "jump": False}
    for bad in ({}, {"payment": "x"}, {"payment": {"reference": ""}}):
        assert "payment" not in domain.hook_view(
            state, Command("request.submit", {**song, **bad}), GUEST, NOW)


def test_a_repair_ticket_tells_its_hook_the_ticket() -> None:
    domain = RepairDomain()
    state = domain.initial("t1")
    assert domain.hook_view(state, Command("ticket.create", {}), GUEST, NOW) == {
        "exists": False, "status": None, "customer_id": "", "technicians": [],
        "progress": 0, "quote": None}


def test_a_hooks_data_in_a_repair_event_is_for_staff_only() -> None:
    note = {"event": "note.added", "note_id": "n1", "text": "hi", "priority": "normal",
            "visibility": "customer", "from_customer": False, "hook": {"checked": True},
            "via": "shop-app"}
    assert redact(note, "customer") == {k: v for k, v in note.items() if k != "hook"}
    assert redact(note, "staff") == note
