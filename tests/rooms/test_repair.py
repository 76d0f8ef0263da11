"""The repair room as a pure state machine: workflow, matrix, commands. Sync, injected clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal, Role
from roomlog.rooms import repair as repair_module
from roomlog.rooms.domain import Command, Decision, Domain, Event, Meta, Notice
from roomlog.rooms.repair import RepairDomain, RepairState, Status
from roomlog.rooms.repair_state import EDGES

D = RepairDomain()
T0 = 1_700_000_000_000
SEC = 1000
MIN = 60 * SEC
HOUR = 60 * MIN

TECH = Principal("tina", Role.TECHNICIAN)
TECH2 = Principal("tom", Role.TECHNICIAN)
STRANGER = Principal("olga", Role.TECHNICIAN)  # a technician not assigned
CUST = Principal("carl", Role.CUSTOMER)
OTHER = Principal("cora", Role.CUSTOMER)
ADMIN = Principal("ada", Role.ADMIN)
SERVICE = Principal("backend", Role.SERVICE)
GUEST = Principal("gus", Role.GUEST)
DJ = Principal("dj1", Role.DJ)

QUOTE = {"amount": 129.5, "currency": "eur", "description": "new screen"}


class Ticket:
    """A repair room driven the way the command path does: decide, then apply each
    (JSON round-tripped) event with its Meta."""

    def __init__(self, ticket_id: str = "t1") -> None:
        self.state: RepairState = D.initial(ticket_id)
        self.log: list[tuple[Event, Meta]] = []
        self.notices: list[Notice] = []
        self.now = T0

    def run(self, actor: Principal, name: str, **args: Any) -> Decision:
        self.now += SEC
        before = D.dump(self.state)
        decision = D.decide(self.state, Command(name, args), actor, self.now)
        assert D.dump(self.state) == before, "decide mutated the state"
        json.dumps(decision.result)
        for event in decision.events:
            stored = Event.from_data(json.loads(json.dumps(event.to_data())))
            meta = Meta(actor.user, len(self.log) + 1, self.now)
            self.notices += D.apply(self.state, stored, meta)
            self.log.append((stored, meta))
        return decision

    def reject(self, actor: Principal, name: str, code: ErrorCode, **args: Any) -> RoomlogError:
        before = D.dump(self.state)
        with pytest.raises(RoomlogError) as err:
            D.decide(self.state, Command(name, args), actor, self.now)
        assert err.value.code is code, err.value.message
        assert D.dump(self.state) == before
        return err.value

    def create(self, actor: Principal = TECH, **extra: Any) -> Decision:
        args: dict[str, Any] = {"customer_id": CUST.user, "device": "Phone X",
                                "problem": "cracked screen", "technicians": [TECH.user]}
        return self.run(actor, "ticket.create", **{**args, **extra})

    def set(self, actor: Principal, status: str, **extra: Any) -> Decision:
        return self.run(actor, "status.set", status=status, **extra)

    def events(self) -> list[str]:
        return [event.type for event, _ in self.log]

    @property
    def status(self) -> str:
        return str(self.state.status)


def drive(status: str, ticket: Ticket | None = None) -> Ticket:
    """A ticket brought to ``status`` the ordinary way (on_hold: held from diagnosing)."""
    t = ticket or Ticket()
    path = {
        "received": [],
        "diagnosing": ["diagnosing"],
        "awaiting_approval": ["diagnosing", "awaiting_approval"],
        "repairing": ["diagnosing", "awaiting_approval", "approve"],
        "quality_check": ["diagnosing", "awaiting_approval", "approve", "quality_check"],
        "ready_for_pickup": ["diagnosing", "awaiting_approval", "approve", "quality_check",
                             "qa", "ready_for_pickup"],
        "collected": ["diagnosing", "awaiting_approval", "approve", "quality_check", "qa",
                      "ready_for_pickup", "collected"],
        "on_hold": ["diagnosing", "on_hold"],
        "cancelled": ["cancelled"],
    }[status]
    t.create()
    for step in path:
        if step == "approve":
            t.run(CUST, "quote.approve")
        elif step == "qa":
            t.run(TECH, "qa.record", item="Function test", passed=True)
        else:
            t.set(TECH, step, **status_extra(step))
    assert t.status == status
    return t


def status_extra(status: str) -> dict[str, Any]:
    if status == "awaiting_approval":
        return {"quote": QUOTE}
    if status in ("on_hold", "cancelled"):
        return {"reason": "waiting for a part"}
    return {}


# ---------------------------------------------------------------------------
# The role x transition matrix, written out independently of EDGES

TECHS, OPS = "technician", "operator"
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("received", "diagnosing"): {TECHS, OPS},
    ("received", "on_hold"): {TECHS, OPS},
    ("received", "cancelled"): {TECHS, OPS},
    ("diagnosing", "awaiting_approval"): {TECHS, OPS},
    ("diagnosing", "on_hold"): {TECHS, OPS},
    ("diagnosing", "cancelled"): {OPS},
    ("awaiting_approval", "repairing"): {OPS},
    ("awaiting_approval", "ready_for_pickup"): {OPS},
    ("awaiting_approval", "cancelled"): {OPS},
    ("repairing", "quality_check"): {TECHS, OPS},
    ("repairing", "on_hold"): {TECHS, OPS},
    ("repairing", "cancelled"): {OPS},
    ("quality_check", "repairing"): {TECHS, OPS},
    ("quality_check", "ready_for_pickup"): {TECHS, OPS},
    ("quality_check", "on_hold"): {TECHS, OPS},
    ("quality_check", "cancelled"): {OPS},
    ("ready_for_pickup", "collected"): {TECHS, OPS},
    ("ready_for_pickup", "cancelled"): {OPS},
    ("on_hold", "diagnosing"): {TECHS, OPS},  # back to where it was held from
    ("on_hold", "cancelled"): {OPS},
}
ROLES = {"technician": TECH, "admin": ADMIN, "service": SERVICE}


def expected_moves(current: str, kind: str) -> list[str]:
    order = [str(s) for s in Status]
    return sorted((to for (f, to), who in EXPECTED.items() if f == current and kind in who),
                  key=order.index)


@pytest.mark.parametrize("actor_name", ["technician", "admin", "service"])
@pytest.mark.parametrize("target", [str(s) for s in Status])
@pytest.mark.parametrize("current", [str(s) for s in Status])
def test_transition_matrix(current: str, target: str, actor_name: str) -> None:
    actor = ROLES[actor_name]
    kind = TECHS if actor_name == "technician" else OPS
    t = drive(current)
    if current == "quality_check":
        t.run(TECH, "qa.record", item="Function test", passed=True)  # the QA gate passes
    args = status_extra(target)
    allowed = expected_moves(current, kind)
    who = EXPECTED.get((current, target))
    if who is not None and kind in who:
        t.set(actor, target, **args)
        assert t.status == target
        assert t.log[-1][0].data["from"] == current
        return
    code = ErrorCode.FORBIDDEN if who else ErrorCode.INVALID_TRANSITION
    err = t.reject(actor, "status.set", code, status=target, **args)
    assert err.details == {"status": current, "allowed": allowed}
    assert f"is {current}" in err.message
    assert ", ".join(allowed) in err.message if allowed else "none" in err.message


@pytest.mark.parametrize("current", [str(s) for s in Status])
def test_customers_never_set_a_status(current: str) -> None:
    t = drive(current)
    for target in ("repairing", "ready_for_pickup", "collected"):
        err = t.reject(CUST, "status.set", ErrorCode.FORBIDDEN, status=target)
        assert "customer may not run status.set" in err.message


@pytest.mark.parametrize("actor", [STRANGER, OTHER])
def test_strangers_are_forbidden_on_every_status(actor: Principal) -> None:
    t = drive("diagnosing")
    code = ErrorCode.FORBIDDEN
    err = t.reject(actor, "status.set", code, status="awaiting_approval", quote=QUOTE)
    assert ("not assigned to you" in err.message) is (actor is STRANGER)


def test_docstring_tables_the_matrix_as_implemented() -> None:
    doc = repair_module.__doc__ or ""
    assert {(str(f), str(to)) for f, edges in EDGES.items() for to in edges} >= {
        k for k in EXPECTED if k[0] != "on_hold"}
    for (current, target), who in EXPECTED.items():
        target = "held_from" if current == "on_hold" and target != "cancelled" else target
        cust = "quote" if current == "awaiting_approval" and target != "cancelled" else "-"
        row = f"{current:<18} {target:<18} {'yes' if TECHS in who else '-':<11} {cust:<9} yes"
        assert row in doc, row


# ---------------------------------------------------------------------------
# Creating and assigning


def test_create_stores_the_ticket_and_a_full_event() -> None:
    t = Ticket()
    decision = t.create(internal={"bin": "B7", "cost": 42})
    assert decision.result == {"ticket": "t1", "status": "received"}
    assert t.log[0][0].to_data() == {
        "event": "ticket.created", "ticket": "t1", "customer_id": "carl", "device": "Phone X",
        "problem": "cracked screen", "technicians": ["tina"], "status": "received",
        "internal": {"bin": "B7", "cost": 42}}
    s = t.state
    assert (s.status, s.customer_id, s.technicians, s.created_ms) == (
        Status.RECEIVED, "carl", ["tina"], t.now)
    assert [(c.status, c.ts) for c in s.history] == [("received", t.now)]


def test_create_rules() -> None:
    t = Ticket()
    t.reject(CUST, "ticket.create", ErrorCode.FORBIDDEN, customer_id="carl")
    t.reject(GUEST, "ticket.create", ErrorCode.FORBIDDEN)
    err = t.reject(TECH2, "ticket.create", ErrorCode.FORBIDDEN, customer_id="carl", device="d",
                   problem="p", technicians=["tina"])
    assert "add your user id" in err.message
    t.run(SERVICE, "ticket.create", customer_id="carl", device="d", problem="p", technicians=[])
    err = t.reject(ADMIN, "ticket.create", ErrorCode.CONFLICT, customer_id="carl", device="d",
                   problem="p", technicians=[])
    assert err.details == {"status": "received"}


@pytest.mark.parametrize("args, needle", [
    ({"device": "d", "problem": "p", "technicians": []}, "missing argument(s) customer_id"),
    ({"customer_id": "c", "device": "d", "problem": "p", "technicians": [], "x": 1},
     "unknown argument(s) x"),
    ({"customer_id": "c d", "device": "d", "problem": "p", "technicians": []}, "user id"),
    ({"customer_id": "c", "device": " ", "problem": "p", "technicians": []}, "device must not"),
    ({"customer_id": "c", "device": "d", "problem": "p", "technicians": "tina"}, "a list"),
    ({"customer_id": "c", "device": "d", "problem": "p", "technicians": ["a", "a"]}, "repeat"),
    ({"customer_id": "c", "device": "d", "problem": "p", "technicians": ["all"]}, "reserved"),
    ({"customer_id": "c", "device": "d", "problem": "p", "technicians": [], "internal": [1]},
     "internal must be an object"),
    ({"customer_id": "c", "device": "d", "problem": "p", "technicians": [],
      "internal": {"x": float("nan")}}, "JSON values"),
])
def test_create_rejects_bad_args(args: dict[str, Any], needle: str) -> None:
    err = Ticket().reject(ADMIN, "ticket.create", ErrorCode.INVALID_ARGS, **args)
    assert needle in err.message


def test_every_other_command_needs_the_ticket() -> None:
    t = Ticket()
    cases: list[tuple[Principal, str, dict[str, Any]]] = [
        (TECH, "status.set", {"status": "diagnosing"}), (CUST, "quote.approve", {}),
        (CUST, "quote.decline", {}), (TECH, "milestone.add", {"title": "x", "percent": 5}),
        (TECH, "eta.set", {"at": None}), (ADMIN, "ticket.assign", {"technicians": []}),
        (TECH, "photo.add", {"category": "before", "caption": "c", "upload_id": "u1"}),
        (TECH, "qa.record", {"item": "x", "passed": True}),
        (CUST, "note.add", {"text": "hi"}),
    ]
    for actor, name, args in cases:
        if actor is CUST:  # a customer cannot tell a missing ticket from someone else's
            err = t.reject(actor, name, ErrorCode.FORBIDDEN, **args)
            assert err.message == "repair:t1 is not yours; ask an admin"
            continue
        err = t.reject(actor, name, ErrorCode.NOT_FOUND, **args)
        assert "ticket.create" in err.message


def test_unknown_command_and_args_shape() -> None:
    t = Ticket()
    err = t.reject(ADMIN, "ticket.dance", ErrorCode.UNKNOWN_COMMAND)
    assert "status.set" in err.message
    with pytest.raises(RoomlogError) as raised:
        D.decide(t.state, Command("status.set", ["x"]), ADMIN, T0)  # type: ignore[arg-type]
    assert raised.value.code is ErrorCode.INVALID_ARGS


def test_assign_is_for_operators_and_a_set() -> None:
    t = drive("diagnosing")
    t.reject(TECH, "ticket.assign", ErrorCode.FORBIDDEN, technicians=["tina"])
    t.run(ADMIN, "ticket.assign", technicians=["tom", "tina"])
    assert t.log[-1][0].data == {"technicians": ["tom", "tina"], "added": ["tom"], "removed": []}
    n = len(t.log)
    assert t.run(ADMIN, "ticket.assign", technicians=["tina", "tom"]).events == []
    t.run(SERVICE, "ticket.assign", technicians=["tom"])
    assert t.log[-1][0].data == {"technicians": ["tom"], "added": [], "removed": ["tina"]}
    assert len(t.log) == n + 1
    t.reject(TECH, "status.set", ErrorCode.FORBIDDEN, status="on_hold", reason="r")
    t.set(TECH2, "on_hold", reason="parts")


# ---------------------------------------------------------------------------
# Status details: quotes, hold, QA gate, reasons


def test_quote_approve_path() -> None:
    t = drive("diagnosing")
    t.set(TECH, "awaiting_approval", quote=QUOTE, internal_reason="margin 40%")
    assert t.state.quote is not None
    assert (t.state.quote.id, t.state.quote.amount, t.state.quote.currency) == ("q1", 129.5, "EUR")
    t.reject(TECH, "quote.approve", ErrorCode.FORBIDDEN)
    t.reject(OTHER, "quote.approve", ErrorCode.FORBIDDEN)
    t.reject(CUST, "quote.approve", ErrorCode.INVALID_ARGS, note="x")
    decision = t.run(CUST, "quote.approve")
    assert decision.result == {"status": "repairing", "quote_id": "q1"}
    assert t.events()[-2:] == ["quote.approved", "status.changed"]
    assert t.log[-2][0].data == {"quote_id": "q1", "on_behalf": False}
    assert (t.state.quote.status, t.state.quote.decided_by) == ("approved", "carl")
    err = t.reject(CUST, "quote.approve", ErrorCode.INVALID_TRANSITION)
    assert err.details == {"status": "repairing", "allowed": []}
    assert "quote.approve needs a ticket that is awaiting_approval" in err.message


def test_quote_decline_path_returns_the_device_unrepaired() -> None:
    t = drive("awaiting_approval")
    decision = t.run(CUST, "quote.decline", reason="too expensive")
    assert decision.result == {"status": "ready_for_pickup", "outcome": "unrepaired",
                               "quote_id": "q1"}
    assert t.log[-2][0].data == {"quote_id": "q1", "on_behalf": False, "reason": "too expensive"}
    assert t.log[-1][0].data == {"from": "awaiting_approval", "to": "ready_for_pickup",
                                 "reason": None, "outcome": "unrepaired"}
    assert (t.state.outcome, t.state.quote and t.state.quote.status) == ("unrepaired", "declined")
    t.set(TECH, "collected")
    t.reject(ADMIN, "status.set", ErrorCode.INVALID_TRANSITION, status="repairing")


@pytest.mark.parametrize("operator", [ADMIN, SERVICE])
def test_operators_decide_quotes_on_behalf(operator: Principal) -> None:
    t = drive("awaiting_approval")
    t.run(operator, "quote.decline")
    assert t.log[-2][0].data["on_behalf"] is True
    t2 = drive("awaiting_approval")
    t2.set(operator, "repairing", reason="customer approved by phone")
    assert t2.events()[-2:] == ["quote.approved", "status.changed"]
    assert t2.state.quote is not None and t2.state.quote.on_behalf is True
    t3 = drive("awaiting_approval")
    t3.set(operator, "ready_for_pickup", reason="declined by phone")
    assert t3.state.outcome == "unrepaired"
    assert t3.log[-2][0].data["reason"] == "declined by phone"


def test_cancelling_a_waiting_quote_withdraws_it() -> None:
    t = drive("awaiting_approval")
    t.set(ADMIN, "cancelled", reason="customer never came back")
    assert t.state.quote is not None and t.state.quote.status == "withdrawn"
    t.reject(CUST, "quote.approve", ErrorCode.INVALID_TRANSITION)


@pytest.mark.parametrize("args, needle", [
    ({"status": "awaiting_approval"}, "needs a quote"),
    ({"status": "diagnosing", "quote": QUOTE}, "only given when setting awaiting_approval"),
    ({"status": "on_hold"}, "needs a reason"),
    ({"status": "cancelled", "reason": "  "}, "needs a reason"),
    ({"status": "fixed"}, "status must be one of"),
    ({"status": "awaiting_approval", "quote": {"amount": 0, "currency": "EUR"}}, "above 0"),
    ({"status": "awaiting_approval", "quote": {"amount": True, "currency": "EUR"}}, "number"),
    ({"status": "awaiting_approval", "quote": {"amount": 5, "currency": "EURO"}}, "3-letter"),
    ({"status": "awaiting_approval", "quote": {"amount": 5}}, "missing argument(s) currency"),
    ({"status": "awaiting_approval", "quote": 5}, "quote must be an object"),
])
def test_status_set_rejects_bad_args_whatever_the_state(args: dict[str, Any],
                                                        needle: str) -> None:
    err = Ticket().reject(TECH, "status.set", ErrorCode.INVALID_ARGS, **args)
    assert needle in err.message


def test_on_hold_round_trip_goes_back_exactly() -> None:
    for held in ("received", "diagnosing", "repairing", "quality_check"):
        t = drive(held)
        t.set(TECH, "on_hold", internal_reason="supplier late")
        assert (t.state.held_from, t.status) == (Status(held), "on_hold")
        others = [s for s in ("received", "diagnosing", "repairing", "quality_check")
                  if s != held]
        for other in others:
            err = t.reject(TECH, "status.set", ErrorCode.INVALID_TRANSITION, status=other)
            assert err.details == {"status": "on_hold", "allowed": [held]}
        assert D.view(t.state, TECH)["moves"] == [held]
        assert D.view(t.state, ADMIN)["moves"] == [held, "cancelled"]
        t.set(TECH, held)
        assert (t.state.held_from, t.status) == (None, held)
    t = drive("on_hold")
    t.reject(TECH, "status.set", ErrorCode.INVALID_TRANSITION, status="on_hold", reason="r")


def test_awaiting_approval_and_ready_for_pickup_are_not_held() -> None:
    for status in ("awaiting_approval", "ready_for_pickup"):
        t = drive(status)
        t.reject(ADMIN, "status.set", ErrorCode.INVALID_TRANSITION, status="on_hold", reason="r")


def test_qa_gate_names_the_failing_items() -> None:
    t = drive("repairing")
    t.set(TECH, "quality_check")
    err = t.reject(TECH, "status.set", ErrorCode.INVALID_TRANSITION, status="ready_for_pickup")
    assert err.details == {"status": "quality_check",
                           "allowed": ["repairing", "ready_for_pickup", "on_hold"],
                           "failed": [], "recorded": 0}
    t.run(TECH, "qa.record", item="Battery", passed=False, note="drains fast")
    t.run(TECH, "qa.record", item="Camera", passed=False, required=False)
    result = t.run(TECH, "qa.record", item="Screen", passed=False).result
    assert result == {"item": "Screen", "passed": False, "failed": ["Battery", "Screen"]}
    err = t.reject(ADMIN, "status.set", ErrorCode.INVALID_TRANSITION, status="ready_for_pickup")
    assert err.details is not None and err.details["failed"] == ["Battery", "Screen"]
    assert "Battery, Screen" in err.message
    t.set(TECH, "repairing", reason="battery swap")  # QA failed: back to work
    t.run(TECH, "qa.record", item=" battery ", passed=True)  # same item: replaced
    t.set(TECH, "quality_check")
    t.run(TECH, "qa.record", item="screen", passed=True)
    assert [q.item for q in t.state.qa.values()] == ["battery", "Camera", "screen"]
    assert t.log[-1][0].data["replaced"] is True
    t.set(TECH, "ready_for_pickup")
    assert (t.state.outcome, t.log[-1][0].data["outcome"]) == ("repaired", "repaired")


def test_qa_is_recorded_while_repairing_or_checking_only() -> None:
    t = drive("diagnosing")
    err = t.reject(TECH, "qa.record", ErrorCode.INVALID_TRANSITION, item="x", passed=True)
    assert "repairing or quality_check" in err.message
    t.reject(TECH, "qa.record", ErrorCode.INVALID_ARGS, item="x", passed="yes")
    t.reject(CUST, "qa.record", ErrorCode.FORBIDDEN, item="x", passed=True)


def test_status_history_keeps_times_and_reasons() -> None:
    t = drive("received")
    t.set(TECH, "diagnosing")
    t.set(TECH, "on_hold", reason="waiting for the customer", internal_reason="no reply")
    t.set(TECH, "diagnosing")
    history = [(c.status, c.reason, c.internal_reason, c.by) for c in t.state.history]
    assert history == [("received", None, None, "tina"), ("diagnosing", None, None, "tina"),
                       ("on_hold", "waiting for the customer", "no reply", "tina"),
                       ("diagnosing", None, None, "tina")]
    assert [c.ts for c in t.state.history] == sorted(c.ts for c in t.state.history)


# ---------------------------------------------------------------------------
# Progress, ETA, photos, notes


def test_percent_never_goes_backwards_except_by_an_operator() -> None:
    t = drive("repairing")
    t.run(TECH, "milestone.add", title="opened", percent=20)
    t.run(TECH, "milestone.add", title="glue drying", percent=20)  # equal is fine
    err = t.reject(TECH, "milestone.add", ErrorCode.FORBIDDEN, title="oops", percent=10)
    assert err.details == {"progress": 20}
    t.run(TECH, "milestone.add", title="screen in", percent=80)
    t.run(ADMIN, "milestone.add", title="correction", percent=60)
    assert t.log[-1][0].data == {"milestone_id": "m4", "title": "correction", "percent": 60,
                                 "previous": 80}
    assert t.state.progress == 60
    t.reject(TECH, "milestone.add", ErrorCode.INVALID_ARGS, title="x", percent=101)
    t.reject(TECH, "milestone.add", ErrorCode.INVALID_ARGS, title="x", percent=5.5)
    done = drive("collected")
    done.reject(ADMIN, "milestone.add", ErrorCode.INVALID_TRANSITION, title="x", percent=100)


def test_eta_changes_and_clears() -> None:
    t = drive("diagnosing")
    at = t.now + 2 * HOUR
    assert t.run(TECH, "eta.set", at=at).result == {"eta_ms": at}
    assert t.log[-1][0].data == {"at": at, "previous": None}
    assert t.run(TECH, "eta.set", at=at).events == []
    err = t.reject(TECH, "eta.set", ErrorCode.INVALID_ARGS, at=t.now - 1)
    assert "future" in err.message
    t.reject(TECH, "eta.set", ErrorCode.INVALID_ARGS, at="tomorrow")
    t.reject(TECH, "eta.set", ErrorCode.INVALID_ARGS)
    t.run(TECH, "eta.set", at=None)
    assert t.state.eta_ms is None and t.log[-1][0].data == {"at": None, "previous": at}


@pytest.mark.parametrize("category", ["before", "during", "after", "damage", "part"])
def test_photo_categories(category: str) -> None:
    t = drive("repairing")
    decision = t.run(TECH, "photo.add", category=category, caption="c", upload_id="up-1.jpg")
    assert decision.result == {"photo_id": "p1"}
    assert t.log[-1][0].data == {"photo_id": "p1", "category": category, "caption": "c",
                                 "upload_id": "up-1.jpg", "visibility": "customer"}


@pytest.mark.parametrize("args, needle", [
    ({"category": "selfie", "caption": "c", "upload_id": "u"}, "category must be one of"),
    ({"category": "before", "caption": "c"}, "exactly one of url and upload_id"),
    ({"category": "before", "caption": "c", "upload_id": "u", "url": "https://x.io/a.jpg"},
     "exactly one"),
    ({"category": "before", "caption": "c", "url": "ftp://x.io/a.jpg"}, "http or https"),
    ({"category": "before", "caption": "c", "url": "https:///a.jpg"}, "http or https"),
    ({"category": "before", "caption": "c", "upload_id": "../etc/passwd"}, "upload_id"),
    ({"category": "before", "caption": "c", "upload_id": "u", "visibility": "public"},
     "visibility must be one of"),
    ({"category": "before", "caption": " ", "upload_id": "u"}, "caption must not be empty"),
])
def test_photo_rejects_bad_args(args: dict[str, Any], needle: str) -> None:
    err = drive("repairing").reject(TECH, "photo.add", ErrorCode.INVALID_ARGS, **args)
    assert needle in err.message


def test_photo_by_url_and_internal() -> None:
    t = drive("diagnosing")
    t.run(TECH, "photo.add", category="damage", caption="dent", url="https://cdn.example/x.png",
          visibility="internal")
    photo = t.state.photos[0]
    assert (photo.url, photo.upload_id, photo.visibility, photo.by) == (
        "https://cdn.example/x.png", None, "internal", "tina")
    t.reject(CUST, "photo.add", ErrorCode.FORBIDDEN, category="damage", caption="c",
             upload_id="u")


def test_notes_priorities_and_visibility() -> None:
    t = drive("repairing")
    for priority in ("low", "normal", "high", "urgent"):
        t.run(TECH, "note.add", text=f"{priority} note", priority=priority,
              visibility="internal")
    assert [n.priority for n in t.state.notes] == ["low", "normal", "high", "urgent"]
    err = t.reject(TECH, "note.add", ErrorCode.INVALID_ARGS, text="no visibility")
    assert "visibility is required" in err.message
    t.reject(TECH, "note.add", ErrorCode.INVALID_ARGS, text="x", priority="asap",
             visibility="customer")
    t.run(ADMIN, "note.add", text="default priority", visibility="customer")
    assert t.state.notes[-1].priority == "normal"


def test_customer_notes_are_always_customer_visible() -> None:
    t = drive("repairing")
    t.run(CUST, "note.add", text="please keep my case", priority="high")
    note = t.state.notes[-1]
    assert (note.visibility, note.from_customer, note.by) == ("customer", True, "carl")
    t.run(CUST, "note.add", text="explicit", visibility="customer")
    err = t.reject(CUST, "note.add", ErrorCode.FORBIDDEN, text="psst", visibility="internal")
    assert "always visible" in err.message
    t.reject(OTHER, "note.add", ErrorCode.FORBIDDEN, text="hi")
    t.reject(GUEST, "note.add", ErrorCode.FORBIDDEN, text="hi")
    done = drive("collected")
    done.run(CUST, "note.add", text="works great, thanks")  # notes are open in any status


def test_satisfies_the_domain_protocol_and_access() -> None:
    domain: Domain[RepairState] = RepairDomain()  # checked by mypy
    assert domain.kind == "repair"
    for who, subscribe in [(CUST, True), (TECH, True), (ADMIN, True), (SERVICE, True),
                           (GUEST, False), (DJ, False)]:
        assert D.can_subscribe(who, "t1") is subscribe
        assert D.can_publish(who, "t1") is False


def test_apply_refuses_an_unknown_event() -> None:
    with pytest.raises(ValueError, match="unknown repair event"):
        D.apply(D.initial("x"), Event("ticket.danced", {}), Meta("u", 1, T0))
