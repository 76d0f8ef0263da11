"""Payments in a queue room as a pure state machine: every transition, the refund rule
on veto, cancel, set end and refusal, and the fold of the log equal to the live state."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal, Role
from roomlog.rooms.domain import Approval, Command, Decision, Event, Meta, Notice
from roomlog.rooms.queue import QueueDomain, QueueState
from roomlog.rooms.queue_pay_analytics import merge, money, money_rows
from roomlog.rooms.queue_payment import TRANSITIONS, Payment, PaymentStatus

D = QueueDomain()
T0 = 1_700_000_000_000
MIN = 60_000

DJ = Principal("dj1", Role.DJ)
SERVICE = Principal("backend", Role.SERVICE)
G1, G2, G3 = (Principal(f"g{i}", Role.GUEST) for i in range(1, 4))


def paid(amount: int = 500, currency: str = "EUR", **extra: Any) -> Approval:
    return Approval({"amount": amount, "currency": currency, **extra})


class Room:
    """Decide, then apply each event, as the command path does; keeps the log."""

    def __init__(self, price: int = 500, **settings: Any) -> None:
        self.state: QueueState = D.initial("set1")
        self.log: list[tuple[Event, Meta]] = []
        self.notices: list[Notice] = []
        self.now = T0
        self.n = 0
        self.run(DJ, "queue.settings", price=price, **settings)

    def run(self, actor: Principal, name: str, approval: Approval | None = None,
            **args: Any) -> Decision:
        before = D.dump(self.state)
        decision = D.decide(self.state, Command(name, args, approval), actor, self.now)
        assert D.dump(self.state) == before, "decide mutated the state"
        for event in decision.events:
            meta = Meta(actor.user, len(self.log) + 1, self.now)
            self.notices += D.apply(self.state, event, meta)
            self.log.append((event, meta))
        return decision

    def reject(self, actor: Principal, name: str, code: ErrorCode,
               approval: Approval | None = None, **args: Any) -> RoomlogError:
        before = D.dump(self.state)
        with pytest.raises(RoomlogError) as err:
            D.decide(self.state, Command(name, args, approval), actor, self.now)
        assert err.value.code is code, err.value.message
        assert D.dump(self.state) == before
        return err.value

    def submit(self, guest: Principal, ref: str | None = None, *, jump: bool = False,
               approval: Approval | None = None) -> Decision:
        self.n += 1
        self.now += MIN
        args: dict[str, Any] = {"song_id": f"s{self.n}", "title": f"T{self.n}", "artist": "A"}
        if ref is not None:
            args["payment"] = {"reference": ref, **({"jump": True} if jump else {})}
        return self.run(guest, "request.submit", approval or paid(), **args)

    def payment(self, pid: str) -> Payment:
        return self.state.payments[pid]

    def events(self) -> list[str]:
        return [e.type for e, _ in self.log]


def test_a_paid_room_wants_a_payment_and_the_backends_word() -> None:
    room = Room(price=500)
    song = {"song_id": "s", "title": "T", "artist": "A"}
    err = room.reject(G1, "request.submit", ErrorCode.PAYMENT_REQUIRED, paid(), **song)
    assert err.details == {"amount": 500, "currency": "EUR", "jump_amount": None}
    pay = {**song, "payment": {"reference": "ref-1"}}
    # Nothing decides payments here: nothing could verify it.
    room.reject(G1, "request.submit", ErrorCode.UNAVAILABLE, None, **pay)
    # The hook failed open: nothing was verified.
    room.reject(G1, "request.submit", ErrorCode.UNAVAILABLE, Approval(failed_open=True), **pay)
    # An allow that does not say what was paid is the backend's bug: asked again.
    room.reject(G1, "request.submit", ErrorCode.UNAVAILABLE, Approval({"amount": 500}), **pay)
    room.reject(G1, "request.submit", ErrorCode.UNAVAILABLE,
                Approval({"amount": True, "currency": "EUR"}), **pay)
    # The gate's probe (not asked yet) passes, with no events.
    probe = D.decide(room.state, Command("request.submit", pay, Approval(pending=True)), G1,
                     room.now)
    assert probe.claims == () and probe.error is None
    for bad in ({"reference": ""}, {"reference": 1}, {"ref": "x"}, "x",
                {"reference": "r", "jump": "yes"}, {"reference": "r", "amount": 5}):
        room.reject(G1, "request.submit", ErrorCode.INVALID_ARGS, paid(), **{**song,
                                                                             "payment": bad})
    room.reject(G1, "request.submit", ErrorCode.INVALID_ARGS, paid(),
                **{**song, "payment": {"reference": "r", "jump": True}})  # no jump price


def test_a_verified_payment_makes_a_paid_request_and_claims_its_reference() -> None:
    room = Room(price=500)
    decision = room.submit(G1, "ref-1", approval=paid(500, provider="test"))
    assert decision.result == {"request_id": "r1", "position": 1, "payment_id": "p1"}
    assert [c.key for c in decision.claims] == ["payment:ref-1"]
    assert decision.claims[0].taken.code is ErrorCode.PAYMENT_ALREADY_USED
    event = room.log[-1][0]
    assert event.data["payment"] == {
        "payment_id": "p1", "kind": "request", "request_id": "r1", "user": "g1",
        "reference": "ref-1", "amount": 500, "currency": "EUR"}
    payment = room.payment("p1")
    assert payment.status is PaymentStatus.VERIFIED and room.state.requests["r1"].payment_id == "p1"
    assert [n.data["notice"] for n in room.notices] == ["payment.verified"]
    # The same reference again, in this room: refused before the backend is asked.
    room.reject(G2, "request.submit", ErrorCode.PAYMENT_ALREADY_USED, Approval(pending=True),
                song_id="x", title="T", artist="A", payment={"reference": "ref-1"})
    view = D.view(room.state, G1)
    assert view["mine"][0]["payment"] == {"id": "p1", "kind": "request", "amount": 500,
                                          "currency": "EUR", "status": "verified",
                                          "reason": None}


def test_free_rooms_take_no_payment_and_a_free_request_has_no_record() -> None:
    room = Room(price=0)
    assert room.submit(G1).result == {"request_id": "r1", "position": 1}
    assert room.state.payments == {}
    room.reject(G1, "request.submit", ErrorCode.INVALID_ARGS, Approval(pending=True),
                song_id="x", title="T", artist="A", payment={"reference": "r"})


def test_played_settles_and_veto_cancel_and_set_end_make_refunds_due() -> None:
    room = Room(price=500)
    for i, guest in enumerate([G1, G2, G3, G1, G2], 1):
        room.submit(guest, f"ref-{i}")
    room.run(DJ, "request.accept", request_id="r1")
    room.run(DJ, "request.play", request_id="r1")
    room.run(DJ, "request.play", request_id="r2")  # r1 is played now
    assert room.payment("p1").status is PaymentStatus.SETTLED
    room.run(DJ, "request.veto", request_id="r3", reason="not tonight")
    assert room.payment("p3").status is PaymentStatus.REFUND_DUE
    assert room.payment("p3").reason == "vetoed"
    room.run(G1, "request.cancel", request_id="r4")
    assert (room.payment("p4").status, room.payment("p4").reason) == ("refund_due", "cancelled")
    room.run(DJ, "queue.end")
    assert room.payment("p2").status is PaymentStatus.SETTLED  # it was playing
    assert (room.payment("p5").status, room.payment("p5").reason) == ("refund_due", "set_ended")
    assert room.state.requests["r5"].status == "vetoed" and not room.state.open
    refunds = [e.data for e, _ in room.log if e.type == "payment.refund_due"]
    assert [(r["payment_id"], r["reason"], r["attempt"]) for r in refunds] == [
        ("p3", "vetoed", 1), ("p4", "cancelled", 1), ("p5", "set_ended", 1)]
    assert refunds[0] | {} == {
        "payment_id": "p3", "kind": "request", "request_id": "r3", "user": "g3",
        "reference": "ref-3", "amount": 500, "currency": "EUR", "reason": "vetoed",
        "attempt": 1}
    told = [(n.user, n.data["notice"]) for n in room.notices if n.data.get("payment_id")]
    assert ("g3", "payment.refund_due") in told and ("g1", "payment.settled") in told
    # Nothing moves a final or refund-due payment by the request again.
    room.reject(DJ, "request.veto", ErrorCode.INVALID_TRANSITION, request_id="r3")


def test_batch_veto_refunds_each_paid_request_once() -> None:
    room = Room(price=300)
    room.submit(G1, "a")
    room.submit(G2, "b")
    room.run(DJ, "queue.settings", price=0)
    room.submit(G3)  # free
    decision = room.run(DJ, "request.batch", action="veto", request_ids=["r1", "r2", "r3", "r9"])
    assert (decision.result["succeeded"], decision.result["failed"]) == (3, 1)
    assert room.events().count("payment.refund_due") == 2


def test_refund_reports_retries_and_their_guards() -> None:
    room = Room(price=500)
    room.submit(G1, "ref-1")
    room.run(DJ, "request.veto", request_id="r1")
    for who in (G1, DJ):
        room.reject(who, "payment.refunded", ErrorCode.FORBIDDEN, payment_id="p1")
    room.reject(SERVICE, "payment.refunded", ErrorCode.NOT_FOUND, payment_id="p9")
    room.reject(SERVICE, "payment.refund_failed", ErrorCode.INVALID_ARGS, payment_id="p1")
    room.run(SERVICE, "payment.refund_failed", payment_id="p1", error="provider down")
    p = room.payment("p1")
    assert (p.status, p.error, p.attempts) == ("refund_failed", "provider down", 1)
    # The same report again changes nothing; a failed refund cannot fail again unasked.
    assert room.run(SERVICE, "payment.refund_failed", payment_id="p1",
                    error="provider down").events == []
    room.reject(SERVICE, "payment.refund_failed", ErrorCode.INVALID_TRANSITION,
                payment_id="p1", error="other")
    retry = room.run(SERVICE, "payment.retry", payment_id="p1")
    assert retry.result == {"payment_id": "p1", "status": "refund_due", "attempt": 2}
    assert room.log[-1][0].data["attempt"] == 2 and room.log[-1][0].data["reason"] == "vetoed"
    room.run(SERVICE, "payment.refund_failed", payment_id="p1", error="again")
    room.run(SERVICE, "payment.refunded", payment_id="p1", refund="rf_1")
    p = room.payment("p1")
    assert (p.status, p.refund, p.final) == ("refunded", "rf_1", True)
    assert room.run(SERVICE, "payment.refunded", payment_id="p1").events == []  # twice: fine
    room.reject(SERVICE, "payment.retry", ErrorCode.INVALID_TRANSITION, payment_id="p1")
    room.reject(SERVICE, "payment.refund_failed", ErrorCode.INVALID_TRANSITION,
                payment_id="p1", error="x")
    assert [h["status"] for h in p.history] == [
        "verified", "refund_due", "refund_failed", "refund_due", "refund_failed", "refunded"]
    assert [n.data["notice"] for n in room.notices if n.user == "g1"] == [
        "payment.verified", "request.vetoed", "payment.refund_due", "payment.refund_failed",
        "payment.refund_retry", "payment.refund_failed", "payment.refunded"]
    # A verified payment is not the backend's to report on.
    room.submit(G2, "ref-2")
    room.reject(SERVICE, "payment.refunded", ErrorCode.INVALID_TRANSITION, payment_id="p2")
    room.reject(SERVICE, "payment.retry", ErrorCode.INVALID_TRANSITION, payment_id="p2")


def test_every_transition_of_the_table() -> None:
    """Each action from each status: allowed exactly where TRANSITIONS says."""
    for action, allowed in TRANSITIONS.items():
        for status in PaymentStatus:
            p = Payment("p1", "request", "g", "ref", 1, "EUR", "r1", 0, status=status)
            if status in allowed:
                p.move(action, ts=5, seq=9)
                assert p.history[-1]["seq"] == 9 and p.updated_ms == 5
            else:
                with pytest.raises(RoomlogError) as err:
                    p.move(action, ts=5, seq=9)
                assert err.value.code is ErrorCode.INVALID_TRANSITION
                assert str(status) in err.value.message and p.status is status


def test_a_refusal_after_verification_records_a_refund_and_is_the_outcome() -> None:
    """Verified, then the room is full (or closed, or a duplicate): the guest gets the
    room's error and the payment a record, refund due, reason refused."""
    room = Room(price=500, request_cap_per_hour=1)
    room.submit(G1, "ok")
    decision = room.submit(G2, "late")
    assert decision.error is not None and decision.error.code is ErrorCode.CAPACITY_EXCEEDED
    assert decision.error.details == {"payment_id": "p2", "refund": "due"}
    assert [c.key for c in decision.claims] == ["payment:late"]
    assert room.events()[-1] == "payment.refund_due"
    p = room.payment("p2")
    assert (p.status, p.reason, p.code, p.request_id) == (
        "refund_due", "refused", "CAPACITY_EXCEEDED", None)
    assert len(room.state.requests) == 1
    room.run(DJ, "queue.close")
    closed = room.submit(G3, "closed")
    assert closed.error is not None and closed.error.code is ErrorCode.QUEUE_CLOSED
    # Not asked yet: the room's own refusal, and the backend is never asked.
    room.reject(G3, "request.submit", ErrorCode.QUEUE_CLOSED, Approval(pending=True),
                song_id="z", title="T", artist="A", payment={"reference": "z"})


def test_jump_goes_before_unpaid_pending_and_prices_are_fixed_when_asked() -> None:
    room = Room(price=200, jump_price=1000)
    room.reject(DJ, "queue.settings", ErrorCode.INVALID_ARGS, jump_price=100)
    room.reject(DJ, "queue.settings", ErrorCode.INVALID_ARGS, currency="eur")
    room.submit(G1, "a")
    room.submit(G2, "b")
    decision = room.submit(G3, "c", jump=True, approval=paid(1000))
    assert decision.result["position"] == 1
    assert [r["id"] for r in D.view(room.state, G1)["pending"]] == ["r3", "r1", "r2"]
    # The DJ raises the price between the backend's check and the commit: the request
    # keeps the price the backend verified (its price was fixed when asked).
    room.run(DJ, "queue.settings", price=900, jump_price=0)
    room.submit(G1, "d", approval=paid(200))
    assert room.payment("p4").amount == 200


def test_tips_after_play_settle_at_once() -> None:
    room = Room(price=0)
    room.submit(G1)
    tip = {"request_id": "r1", "payment": {"reference": "t1", "amount": 250}}
    room.reject(G2, "request.tip", ErrorCode.FORBIDDEN, paid(250), **tip)
    room.run(DJ, "queue.settings", tips=True)
    room.reject(G2, "request.tip", ErrorCode.INVALID_TRANSITION, paid(250), **tip)
    room.run(DJ, "request.play", request_id="r1")
    room.reject(G2, "request.tip", ErrorCode.INVALID_ARGS, paid(250),
                request_id="r1", payment={"reference": "t1"})
    decision = room.run(G2, "request.tip", paid(250), **tip)
    assert decision.result == {"request_id": "r1", "payment_id": "p1", "amount": 250,
                               "currency": "EUR"}
    assert room.events()[-1] == "tip.sent" and room.log[-1][0].data["dj"] == "dj1"
    p = room.payment("p1")
    assert (p.kind, p.status, p.user) == ("tip", "settled", "g2")
    room.reject(G3, "request.tip", ErrorCode.PAYMENT_ALREADY_USED, paid(250), **tip)


def _random_life(seed: int) -> Room:
    rng = random.Random(seed)
    room = Room(price=100, jump_price=500, tips=True, submit_rate=60, max_active_per_guest=50,
                request_cap_per_hour=1000)
    guests = [G1, G2, G3]
    refs = 0
    for _ in range(120):
        room.now += rng.randint(1, 5000)
        step = rng.random()
        requests = list(room.state.requests.values())
        try:
            if step < 0.35 or not requests:
                refs += 1
                room.n += 1
                room.run(rng.choice(guests), "request.submit", paid(rng.choice([100, 500])),
                         song_id=f"s{room.n}", title="T", artist="A",
                         payment={"reference": f"ref{refs}", "jump": rng.random() < 0.2})
            elif step < 0.5:
                r = rng.choice(requests)
                room.run(r.user and Principal(r.user, Role.GUEST), "request.cancel",
                         request_id=r.id)
            elif step < 0.65:
                room.run(DJ, "request.veto", request_id=rng.choice(requests).id)
            elif step < 0.8:
                room.run(DJ, "request.play", request_id=rng.choice(requests).id)
            elif step < 0.85:
                refs += 1
                room.run(rng.choice(guests), "request.tip", paid(50),
                         request_id=rng.choice(requests).id,
                         payment={"reference": f"ref{refs}", "amount": 50})
            else:
                payments = list(room.state.payments)
                if payments:
                    action = rng.choice(["payment.refunded", "payment.retry",
                                         "payment.refund_failed"])
                    extra = {"error": "boom"} if action == "payment.refund_failed" else {}
                    room.run(SERVICE, action, payment_id=rng.choice(payments), **extra)
        except RoomlogError:
            pass
    return room


@pytest.mark.parametrize("seed", range(8))
def test_folding_the_log_gives_the_live_state(seed: int) -> None:
    """Replaying the stored (JSON round-tripped) log from nothing, and from a snapshot
    half way, gives the state the decider worked on, payments and their history
    included."""
    room = _random_life(seed)
    assert room.state.payments, "the random life paid for something"
    shadow = D.initial("set1")
    half = len(room.log) // 2
    for i, (event, meta) in enumerate(room.log):
        D.apply(shadow, Event.from_data(json.loads(json.dumps(event.to_data()))), meta)
        if i == half:
            shadow = D.load(json.loads(json.dumps(D.dump(shadow))))
    assert D.dump(shadow) == D.dump(room.state)
    assert shadow.references == room.state.references
    statuses = {str(p.status) for p in room.state.payments.values()}
    assert "verified" in statuses or "settled" in statuses


def test_an_old_snapshot_without_payments_loads_as_a_free_room() -> None:
    state = D.initial("set1")
    data = D.dump(state)
    del data["payments"], data["next_payment"]
    for key in ("price", "jump_price", "currency", "tips"):
        del data["settings"][key]
    loaded = D.load(data)
    assert loaded.settings.price == 0 and loaded.payments == {}


def test_money_report_of_a_paid_set() -> None:
    """Earnings per hour, paid vs free, refunds by reason, tips, average price; the
    range picks payments by creation; CSV rows of the same."""
    room = Room(price=500, tips=True, request_cap_per_hour=2)
    room.submit(G1, "a")                      # r1, played: settled
    room.submit(G2, "b", approval=paid(700))  # r2, vetoed: refund
    late = room.submit(G3, "c")               # refused (cap 2): refund
    assert late.error is not None
    room.run(DJ, "queue.settings", price=0, request_cap_per_hour=10)
    room.submit(G3)                           # r3, free
    room.run(DJ, "request.play", request_id="r1")
    room.run(DJ, "request.played", request_id="r1")
    room.run(G3, "request.tip", paid(300), request_id="r1",
             payment={"reference": "t", "amount": 300})
    room.run(DJ, "request.veto", request_id="r2")
    room.run(SERVICE, "payment.refunded", payment_id="p2")
    report = money(room.log)
    assert report["requests"] == {"paid": 2, "free": 1}
    eur = report["currencies"]["EUR"]
    assert (eur["earned"], eur["tips"], eur["average_price"], eur["waiting"]) == (
        800, {"count": 1, "amount": 300}, 600, 0)
    assert eur["refunds"] == {"vetoed": {"count": 1, "amount": 700, "refunded": 1},
                              "refused": {"count": 1, "amount": 500, "refunded": 0}}
    assert sum(h["earned"] for h in eur["earned_per_hour"]) == 800
    assert money(room.log, end_ms=T0)["currencies"] == {}
    rows = money_rows(report)
    assert ["refund", "vetoed", "EUR", 1, "", 700] in rows
    across = merge({"queue:set1": report, "queue:set2": report})
    assert across["totals"]["EUR"]["earned"] == 1600
    assert across["requests"] == {"paid": 4, "free": 2}
