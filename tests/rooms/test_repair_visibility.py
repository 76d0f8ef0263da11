"""Repair rooms: who reads what. Notices, staff feeds, redact, view; no leak to customers."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from roomlog.errors import RoomlogError
from roomlog.identity import Principal, Role
from roomlog.rooms.domain import Command, Event, Meta, Notice
from roomlog.rooms.repair import (
    RepairState,
    audience,
    can_open_upload,
    can_read,
    redact,
    still_reads,
)
from roomlog.rooms.repair_state import FINAL, Status, graph_targets
from tests.rooms.test_repair import (
    ADMIN,
    CUST,
    DJ,
    GUEST,
    OTHER,
    QUOTE,
    SERVICE,
    STRANGER,
    T0,
    TECH,
    TECH2,
    D,
    Ticket,
    drive,
)

SECRET = "SECRET-7f3a"  # put only into internal fields, notes, photos and QA records


def customer_notices(t: Ticket) -> list[dict[str, Any]]:
    return [n.data for n in t.notices if n.room is None]


def feed(t: Ticket, room: str) -> list[dict[str, Any]]:
    return [n.data for n in t.notices if n.room == room]


# ---------------------------------------------------------------------------
# Customer notices: once per occurrence


def test_quote_and_ready_notices_once_each() -> None:
    t = drive("awaiting_approval")
    assert customer_notices(t) == [{
        "notice": "quote.waiting", "for_role": "customer", "room": "repair:t1", "ticket": "t1",
        "seq": 3, "device": "Phone X",
        "quote": {"quote_id": "q1", "amount": 129.5, "currency": "EUR",
                  "description": "new screen"}}]
    assert all(n.target == "user:carl" for n in t.notices if n.room is None)
    t.run(CUST, "quote.approve")
    t.set(TECH, "quality_check")
    t.run(TECH, "qa.record", item="Screen", passed=True)
    t.set(TECH, "ready_for_pickup")
    t.set(TECH, "collected")
    kinds = [n["notice"] for n in customer_notices(t)]
    assert kinds == ["quote.waiting", "ticket.ready"]
    assert customer_notices(t)[-1]["outcome"] == "repaired"


def test_declined_quote_is_ready_unrepaired() -> None:
    t = drive("awaiting_approval")
    t.run(CUST, "quote.decline")
    assert customer_notices(t)[-1] | {"seq": 0} == {
        "notice": "ticket.ready", "for_role": "customer", "room": "repair:t1", "ticket": "t1",
        "seq": 0, "device": "Phone X", "outcome": "unrepaired"}


def test_urgent_customer_visible_staff_notes_only() -> None:
    t = drive("repairing")
    t.run(TECH, "note.add", text="call us", priority="urgent", visibility="customer")
    t.run(TECH, "note.add", text=SECRET, priority="urgent", visibility="internal")
    t.run(TECH, "note.add", text="fyi", priority="high", visibility="customer")
    t.run(CUST, "note.add", text="my own urgent note", priority="urgent")
    urgent = [n for n in customer_notices(t) if n["notice"] == "note.urgent"]
    assert urgent == [{"notice": "note.urgent", "for_role": "customer",
                       "room": "repair:t1", "ticket": "t1", "seq": t.log[-4][1].seq,
                       "device": "Phone X", "note_id": "n1", "text": "call us"}]


def test_replay_gives_the_same_notices() -> None:
    t = drive("collected")
    t.run(ADMIN, "ticket.assign", technicians=["tom"])
    fresh = D.initial("t1")
    assert [n for e, m in t.log for n in D.apply(fresh, e, m)] == t.notices


# ---------------------------------------------------------------------------
# Staff feeds


def test_every_event_reaches_the_assigned_feeds_and_all() -> None:
    t = Ticket()
    t.create(technicians=["tina", "tom"], internal={"bin": SECRET})
    t.set(TECH, "diagnosing", internal_reason=SECRET)
    for seq, (event, _) in enumerate(t.log, start=1):
        entry = {"ticket": "t1", "room": "repair:t1", "seq": seq, **event.to_data()}
        assert feed(t, "repairs:tina")[seq - 1] == entry
        assert feed(t, "repairs:tom")[seq - 1] == entry
        assert feed(t, "repairs:all")[seq - 1] == entry
    assert SECRET in json.dumps(feed(t, "repairs:all"))  # staff feeds carry internal data
    assert {n.target for n in t.notices} == {"repairs:tina", "repairs:tom", "repairs:all"}


def test_assign_moves_the_ticket_between_feeds() -> None:
    t = drive("diagnosing")
    t.run(ADMIN, "eta.set", at=t.now + 3_600_000)
    t.notices.clear()
    t.run(ADMIN, "ticket.assign", technicians=["tom"])
    seq = t.log[-1][1].seq
    assert feed(t, "repairs:tina") == [
        {"ticket": "t1", "room": "repair:t1", "seq": seq, "event": "ticket.unassigned"}]
    (added,) = feed(t, "repairs:tom")
    assert added["event"] == "ticket.assigned" and added["added"] == ["tom"]
    assert added["summary"] | {"updated_ms": 0, "created_ms": 0} == {
        "ticket": "t1", "room": "repair:t1", "customer_id": "carl", "device": "Phone X",
        "problem": "cracked screen", "status": "diagnosing", "held_from": None,
        "outcome": None, "technicians": ["tom"], "progress": 0, "eta_ms": t.state.eta_ms,
        "quote": None, "created_ms": 0, "updated_ms": 0}
    (plain,) = feed(t, "repairs:all")
    assert "summary" not in plain and plain["removed"] == ["tina"]
    t.notices.clear()
    t.run(ADMIN, "ticket.assign", technicians=["tom", "tina"])
    assert "summary" not in feed(t, "repairs:tom")[0]
    assert "summary" in feed(t, "repairs:tina")[0]
    t.notices.clear()
    t.set(TECH, "on_hold", reason="r")
    assert len(feed(t, "repairs:tina")) == len(feed(t, "repairs:tom")) == 1
    assert [n.target for n in t.notices] == ["repairs:tom", "repairs:tina", "repairs:all"]


# ---------------------------------------------------------------------------
# Read rules


@pytest.mark.parametrize("who, before, after", [
    (CUST, False, True), (OTHER, False, False), (TECH, True, True), (TECH2, True, False),
    (STRANGER, True, False), (ADMIN, True, True), (SERVICE, True, True), (GUEST, False, False),
    (DJ, False, False),
])
def test_can_read(who: Principal, before: bool, after: bool) -> None:
    t = Ticket()
    assert can_read(t.state, who) is before and D.can_read(t.state, who) is before
    t.create()
    assert can_read(t.state, who) is after


def test_read_follows_assignment() -> None:
    t = drive("diagnosing")
    t.run(ADMIN, "ticket.assign", technicians=["tom"])
    assert not can_read(t.state, TECH) and can_read(t.state, TECH2)
    assert D.view(t.state, TECH) == {"room": "repair:t1", "ticket": "t1", "readable": False}


def test_audience() -> None:
    assert [audience(p) for p in (CUST, TECH, ADMIN, SERVICE)] == [
        "customer", "staff", "staff", "staff"]
    assert audience(GUEST) == audience(DJ) == "customer"  # fail closed
    assert D.audience(CUST) == "customer"


def test_redact_rules() -> None:
    created = {"event": "ticket.created", "ticket": "t1", "customer_id": "carl", "device": "d",
               "problem": "p", "technicians": ["tina"], "status": "received",
               "internal": {"bin": SECRET}}
    assert redact(created, "staff") is created
    assert redact(created, "customer") == {k: v for k, v in created.items() if k != "internal"}
    assert "internal" in created  # not mutated
    changed = {"event": "status.changed", "from": "a", "to": "b", "reason": None}
    assert redact(changed, "customer") is changed  # nothing to strip: no copy
    assert redact({**changed, "internal_reason": SECRET}, "customer") == changed
    for kind in ("photo.added", "note.added"):
        assert redact({"event": kind, "visibility": "internal"}, "customer") is None
        assert redact({"event": kind, "visibility": "customer"}, "customer") is not None
        assert redact({"event": kind}, "customer") is None
    assert redact({"event": "qa.recorded", "item": "x"}, "customer") is None
    assert redact({"event": "ticket.rewritten"}, "customer") is None  # default deny
    assert redact({"event": "ticket.rewritten"}, "nobody") is None
    assert D.redact(created, "staff") is created


def test_views_for_customer_and_staff() -> None:
    t = Ticket()
    assert D.view(t.state, TECH) == {"room": "repair:t1", "ticket": "t1", "readable": True,
                                     "exists": False, "moves": []}
    t.create(internal={"bin": SECRET})
    t.set(TECH, "diagnosing", internal_reason=SECRET)
    t.set(TECH, "awaiting_approval", quote=QUOTE)
    t.run(CUST, "quote.approve")
    t.run(TECH, "photo.add", category="damage", caption=SECRET, upload_id="u1",
          visibility="internal")
    t.run(TECH, "photo.add", category="before", caption="front", upload_id="u2")
    t.run(TECH, "note.add", text=SECRET, visibility="internal")
    t.run(TECH, "note.add", text="going well", visibility="customer")
    t.run(TECH, "qa.record", item="Battery", passed=False, note=SECRET)
    t.run(TECH, "milestone.add", title="opened", percent=30)
    mine = D.view(t.state, CUST)
    assert SECRET not in json.dumps(mine)
    assert mine["readable"] and mine["status"] == "repairing" and mine["moves"] == []
    assert [p["id"] for p in mine["photos"]] == ["p2"]
    assert [n["text"] for n in mine["notes"]] == ["going well"]
    assert mine["qa"] == {"total": 1, "passed": 0}
    assert "internal" not in mine and all("internal_reason" not in c for c in mine["history"])
    assert mine["quote"]["status"] == "approved" and mine["progress"] == 30
    staff = D.view(t.state, TECH)
    assert staff["internal"] == {"bin": SECRET}
    assert len(staff["photos"]) == 2 and len(staff["notes"]) == 2
    assert staff["qa"]["failed"] == ["Battery"] and staff["qa"]["ready"] is False
    assert staff["history"][1]["internal_reason"] == SECRET
    assert staff["moves"] == ["quality_check", "on_hold"]
    assert D.view(t.state, OTHER)["readable"] is False
    json.dumps(staff)


# ---------------------------------------------------------------------------
# Property: random command sequences never leak internal data to the customer


_WEIGHTS = {Status.CANCELLED: 0.05, Status.ON_HOLD: 0.2}  # keep walks moving forward


def random_command(rng: random.Random, state: RepairState, now: int) -> tuple[Principal, Command]:
    """A random, often valid command; internal places carry SECRET, visible ones never."""
    actor = rng.choices([TECH, TECH2, CUST, ADMIN, SERVICE, OTHER], weights=[6, 2, 3, 2, 1, 1])[0]
    if state.status is None or rng.random() < 0.02:
        return rng.choice([TECH, ADMIN]), Command("ticket.create", {
            "customer_id": "carl", "device": "Laptop", "problem": "no boot",
            "technicians": ["tina"], "internal": {"cost": SECRET, "n": rng.randint(0, 9)}})
    roll = rng.random()
    if roll < 0.35:
        edges = list(graph_targets(state.status, state.held_from))
        weights = [_WEIGHTS.get(s, 1.0) for s in edges]
        target = (rng.choices(edges, weights)[0] if edges and rng.random() < 0.85
                  else rng.choice(list(Status)))
        args: dict[str, Any] = {"status": str(target)}
        if target is Status.AWAITING_APPROVAL:
            args["quote"] = {"amount": rng.choice([10, 99.99]), "currency": "usd"}
        if rng.random() < 0.5:
            args["internal_reason"] = f"{SECRET} why"
        if rng.random() < 0.5 or (target in (Status.ON_HOLD, Status.CANCELLED)
                                  and "internal_reason" not in args):
            args["reason"] = "customer-visible reason"
        return actor, Command("status.set", args)
    if roll < 0.45:
        name = rng.choice(["quote.approve", "quote.decline"])
        return rng.choice([CUST, CUST, ADMIN]), Command(name, {})
    if roll < 0.55:
        return actor, Command("qa.record", {
            "item": rng.choice(["Battery", "Screen", f"{SECRET} probe"]),
            "passed": rng.random() < 0.7, "note": rng.choice([None, SECRET]),
            "required": rng.random() < 0.8})
    if roll < 0.70:
        visibility = rng.choice(["customer", "internal"])
        # a customer's note is customer-visible whatever they ask: never a secret
        secret = visibility == "internal" and actor.role is not Role.CUSTOMER
        text = SECRET if secret else "visible note"
        args = {"text": text, "priority": rng.choice(["low", "normal", "high", "urgent"])}
        if actor.role is not Role.CUSTOMER or rng.random() < 0.2:
            args["visibility"] = visibility
        return actor, Command("note.add", args)
    if roll < 0.80:
        visibility = rng.choice(["customer", "internal"])
        secret = visibility == "internal"
        args = {"category": rng.choice(["before", "during", "after", "damage", "part"]),
                "caption": SECRET if secret else "visible", "visibility": visibility}
        if rng.random() < 0.5:
            args["upload_id"] = f"{SECRET}-up" if secret else "up-1"
        else:
            args["url"] = f"https://cdn.example/{SECRET if secret else 'ok'}.jpg"
        return actor, Command("photo.add", args)
    if roll < 0.88:
        return actor, Command("milestone.add", {"title": "step", "percent": rng.randint(0, 100)})
    if roll < 0.94:
        at = rng.choice([None, now + rng.randint(-1000, 10_000_000)])
        return actor, Command("eta.set", {"at": at})
    techs = rng.sample(["tina", "tom", "olga"], k=rng.randint(0, 3))
    return rng.choice([ADMIN, TECH]), Command("ticket.assign", {"technicians": techs})


@pytest.mark.parametrize("seed", range(8))
def test_customers_never_see_internal_data(seed: int) -> None:
    rng = random.Random(seed)
    state = D.initial("t1")
    notices: list[Notice] = []
    stored: list[dict[str, Any]] = []
    now = T0
    tickets = 1
    for seq_step in range(400):
        now += rng.randint(0, 600_000)
        if state.status in FINAL and rng.random() < 0.2:  # next ticket, same customer
            tickets += 1
            state = D.initial(f"t{tickets}")
        actor, command = random_command(rng, state, now)
        try:
            decision = D.decide(state, command, actor, now)
        except RoomlogError:
            continue
        for event in decision.events:
            data = json.loads(json.dumps(event.to_data()))
            notices += D.apply(state, Event.from_data(data), Meta(actor.user, seq_step, now))
            stored.append(data)
            shown = redact(data, "customer")
            assert shown is None or SECRET not in json.dumps(shown), shown
            assert redact(data, "staff") is data
        assert SECRET not in json.dumps(D.view(state, CUST))
    personal = [n.data for n in notices if n.target == "user:carl"]
    assert SECRET not in json.dumps(personal)
    # The walk put secrets in many places, and the customer still saw plenty.
    assert SECRET in json.dumps(stored) and SECRET in json.dumps(D.view(state, ADMIN))
    hidden = {d["event"] for d in stored if redact(d, "customer") is None}
    assert {"qa.recorded", "note.added"} <= hidden
    assert sum(redact(d, "customer") is not None for d in stored) > 10


def test_uploads_open_for_whoever_sees_the_photo() -> None:
    t = drive("repairing")
    t.run(TECH, "photo.add", category="part", caption="invoice", upload_id="up-int",
          visibility="internal")
    t.run(TECH, "photo.add", category="after", caption="shiny", upload_id="up-pub")
    assert can_open_upload(t.state, CUST, "up-pub") and not can_open_upload(t.state, CUST,
                                                                            "up-int")
    assert can_open_upload(t.state, TECH, "up-int") and can_open_upload(t.state, ADMIN, "up-int")
    assert not can_open_upload(t.state, OTHER, "up-pub")
    assert not can_open_upload(t.state, STRANGER, "up-pub")
    assert not can_open_upload(t.state, ADMIN, "up-unknown")  # not a photo of this ticket


def test_still_reads_says_who_loses_the_ticket_at_the_events_that_set_its_parties() -> None:
    tech1, tech2 = Principal("t1", Role.TECHNICIAN), Principal("t2", Role.TECHNICIAN)
    cust, other = Principal("c1", Role.CUSTOMER), Principal("c2", Role.CUSTOMER)
    admin = Principal("a", Role.ADMIN)
    created = {"event": "ticket.created", "customer_id": "c1", "technicians": ["t1"]}
    assigned = {"event": "ticket.assigned", "technicians": ["t2"], "added": ["t2"],
                "removed": ["t1"]}
    assert [still_reads(created, who) for who in (tech1, tech2, cust, other, admin)] == [
        True, False, True, False, None]
    assert [still_reads(assigned, who) for who in (tech1, tech2, cust, admin)] == [
        False, True, None, None]
    note = {"event": "note.added", "text": "x", "visibility": "internal"}
    assert still_reads(note, tech2) is None  # other events change nothing
