"""Paid requests end to end: two instances on PostgreSQL and Redis, the test payment
provider and the operator's backend as real processes (``tests/payments``).

Nobody pays for nothing and nobody gets a song for free: 50 guests pay and submit at
once into ten places; one reference sent twice to two instances funds one request;
the backend down gives UNAVAILABLE and the retry with the same id succeeds;
``kill -9`` between the capture and the commit leaves no paid request without a
record and no record without a decision; vetoes are refunded once, and a failed
refund is retried until the provider confirms it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from roomlog.identity import Role
from roomlog.signing import new_secret
from tests.conftest import fresh_pg_database
from tests.e2e.support import Server, get_state, issue_token, migrate, post_command, unique_room
from tests.payments.processes import backend, provider

PRICE = 500
HOOK_TIMEOUT = 10.0  # seconds the hub waits for the backend (a loaded machine is slow)
DJ = "dj-pay"


def guest(n: int | str = "") -> str:
    return f"payer{n}-{secrets.token_hex(3)}"


def song(n: int | str) -> dict[str, str]:
    return {"song_id": f"song-{n}", "title": f"Title {n}", "artist": "Artist"}


class SongApp:
    """The provider and the operator's backend, both processes."""

    def __init__(self, workdir: Path) -> None:
        self.secret = new_secret()
        self.provider = provider(workdir).start()
        self.backend = backend(workdir, self.provider.url, secret=self.secret,
                               token=issue_token("songapp", Role.SERVICE),
                               provider_timeout=8.0).start()

    def backends_file(self, path: Path) -> str:
        path.write_bytes(orjson.dumps({"backends": [{"name": "songapp", "hooks": [{
            "on": ["queue:request.submit", "queue:request.tip"],
            "url": self.backend.url + "/hook", "secret": self.secret,
            "timeout": HOOK_TIMEOUT}]}]}))
        return str(path)

    def stop(self) -> None:
        for proc in (self.backend, self.provider):
            proc.kill()
            proc.assert_clean_log()


@pytest.fixture(scope="module")
def songapp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SongApp]:
    app = SongApp(tmp_path_factory.mktemp("songapp"))
    yield app
    app.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory,
         songapp: SongApp) -> Iterator[tuple[Server, Server]]:
    """Two instances on a PostgreSQL database of their own (the session's shared
    servers would take part in the webhook's lease) and the machine's Redis (own
    prefix)."""
    with fresh_pg_database() as database:
        migrate(database)
        yield from _pair(tmp_path_factory, database, songapp)


def _pair(tmp_path_factory: pytest.TempPathFactory, pg_migrated: str,
          songapp: SongApp) -> Iterator[tuple[Server, Server]]:
    workdir = tmp_path_factory.mktemp("paid-pair")
    file = songapp.backends_file(workdir / "backends.json")
    prefix = f"pay-{secrets.token_hex(4)}:"
    # Refunds are stuck at once, and reconciled only when a test asks (no timers).
    servers = [Server(workdir / f"instance-{i}", pg_migrated, backends_file=file,
                      redis_url="redis://127.0.0.1:6379/0", redis_prefix=prefix,
                      payment_refund_deadline=0, payment_reconcile_interval=0,
                      webhook_allow_private="true", webhook_poll_interval=0.2,
                      webhook_cursor_flush=0.05, webhook_retry_base=0.05,
                      webhook_retry_max=0.3, webhook_lease_ttl=2.0)
               for i in (1, 2)]
    try:
        for srv in servers:
            srv.launch()
        for srv in servers:
            srv.wait_ready()
        yield servers[0], servers[1]
    finally:
        for srv in servers:
            srv.stop()
        machine = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        for key in machine.scan_iter(f"{prefix}*"):  # the keys these instances left
            machine.delete(key)
        machine.close()
    for srv in servers:
        srv.assert_clean_log()


async def pay(http: httpx.AsyncClient, app: SongApp, amount: int = PRICE) -> str:
    reply = await http.post(app.provider.url + "/payments",
                            json={"amount": amount, "currency": "EUR"})
    return str(reply.json()["reference"])


async def control(http: httpx.AsyncClient, app: SongApp, **body: Any) -> None:
    (await http.post(app.provider.url + "/control", json=body)).raise_for_status()


async def paid_room(http: httpx.AsyncClient, srv: Server, **settings: Any) -> str:
    room = unique_room("queue")
    reply = await post_command(http, srv, room, "queue.settings",
                               {"price": PRICE, **settings}, user=DJ, role=Role.DJ)
    assert reply.status_code == 200, reply.text
    return room


async def submit(http: httpx.AsyncClient, srv: Server, room: str, user: str, n: int | str,
                 reference: str | None, ident: str | None = None) -> httpx.Response:
    args: dict[str, Any] = song(n)
    if reference is not None:
        args["payment"] = {"reference": reference}
    return await post_command(http, srv, room, "request.submit", args, user=user, ident=ident)


async def submit_until_decided(http: httpx.AsyncClient, srv: Server, room: str, user: str,
                               n: int | str, reference: str) -> httpx.Response:
    """As a client does: UNAVAILABLE (the backend or the provider was slow) is retried
    with the same command id until the hub decides."""
    ident = f"pay-{secrets.token_hex(6)}"
    for _ in range(20):  # an upper bound for a broken backend, not a timing assertion
        reply = await submit(http, srv, room, user, n, reference, ident=ident)
        if reply.status_code != 503:
            return reply
        await asyncio.sleep(float(reply.json()["error"].get("retry_after") or 1.0))
    return reply


async def dj_state(http: httpx.AsyncClient, srv: Server, room: str) -> dict[str, Any]:
    return (await get_state(http, srv, room, user=DJ, role=Role.DJ))["state"]  # type: ignore[no-any-return]


async def provider_payment(http: httpx.AsyncClient, app: SongApp, ref: str) -> dict[str, Any]:
    return (await http.get(f"{app.provider.url}/payments/{ref}")).json()  # type: ignore[no-any-return]


async def sync(http: httpx.AsyncClient, app: SongApp, srv: Server, room: str) -> dict[str, int]:
    """The backend reads the room's log and refunds what is due (webhooks' stand-in)."""
    reply = await http.post(app.backend.url + "/sync", json={"room": room, "hub": srv.base})
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def every_paid_request_has_its_record(state: dict[str, Any]) -> None:
    """No paid request without a payment, no payment without a decision."""
    payments = {p["id"]: p for p in state["payments"]}
    for request in state["requests"]:
        if request["payment_id"] is not None:
            assert payments[request["payment_id"]]["request_id"] == request["id"]
    for payment in payments.values():
        if payment["request_id"] is None:
            assert payment["status"] in ("refund_due", "refund_failed", "refunded")


async def test_fifty_guests_pay_at_once_into_ten_places(
        pair: tuple[Server, Server], songapp: SongApp, http: httpx.AsyncClient) -> None:
    """The room checks its rules before the backend is asked (a full room charges
    nobody) and again at the commit: a guest whose payment was captured while the
    last places went gets CAPACITY_EXCEEDED and a refund, never a lost payment."""
    one, two = pair
    room = await paid_room(http, one, request_cap_per_hour=10)
    guests = [guest(i) for i in range(50)]
    refs = await asyncio.gather(*(pay(http, songapp) for _ in guests))
    replies = await asyncio.gather(*(
        submit_until_decided(http, (one, two)[i % 2], room, g, i, ref)
        for i, (g, ref) in enumerate(zip(guests, refs, strict=True))))
    ok = [r for r in replies if r.status_code == 200]
    refused = [r.json()["error"] for r in replies if r.status_code != 200]
    assert len(ok) == 10, [r.text for r in replies]
    assert {e["code"] for e in refused} == {"CAPACITY_EXCEEDED"}
    refunded_later = [e for e in refused if (e.get("details") or {}).get("refund") == "due"]
    state = await dj_state(http, two, room)
    assert len(state["requests"]) == 10
    by_status: dict[str, int] = {}
    for p in state["payments"]:
        by_status[p["status"]] = by_status.get(p["status"], 0) + 1
    assert by_status == {"verified": 10, **({"refund_due": len(refunded_later)}
                                            if refunded_later else {})}
    every_paid_request_has_its_record(state)
    # The provider captured exactly the payments the room recorded; the others are
    # still only authorised (nobody was charged for a refusal before the backend).
    captured = [p for p in [await provider_payment(http, songapp, r) for r in refs]
                if p["status"] != "authorised"]
    assert len(captured) == 10 + len(refunded_later)
    done = await sync(http, songapp, one, room)
    assert done == {"refunded": len(refunded_later), "failed": 0}
    state = await dj_state(http, one, room)
    assert sorted({p["status"] for p in state["payments"]}) == sorted(
        {"verified", *(["refunded"] if refunded_later else [])})


async def test_one_reference_sent_twice_to_two_instances_funds_one_request(
        pair: tuple[Server, Server], songapp: SongApp, http: httpx.AsyncClient) -> None:
    one, two = pair
    room = await paid_room(http, one)
    other_room = await paid_room(http, two)
    for mode in ("ok", "twice"):  # "twice": the provider says captured to both
        ref = await pay(http, songapp)
        await control(http, songapp, reference=ref, mode=mode)
        replies = await asyncio.gather(
            submit(http, one, room, guest("a"), f"a-{mode}", ref),
            submit(http, two, other_room, guest("b"), f"b-{mode}", ref))
        codes = sorted(r.status_code for r in replies)
        assert codes == [200, 409], [r.text for r in replies]
        loser = next(r for r in replies if r.status_code == 409).json()["error"]
        assert loser["code"] == "PAYMENT_ALREADY_USED"
    states = [await dj_state(http, one, r) for r in (room, other_room)]
    refs = [p["reference"] for s in states for p in s["payments"]]
    assert len(refs) == len(set(refs)) == 2
    assert sum(len(s["requests"]) for s in states) == 2
    # Later, anywhere, with another command id: still used.
    again = await submit(http, two, room, guest("c"), "c", refs[0])
    assert again.status_code == 409 and again.json()["error"]["code"] == "PAYMENT_ALREADY_USED"


async def test_the_backend_down_gives_unavailable_and_the_retry_succeeds(
        pair: tuple[Server, Server], songapp: SongApp, http: httpx.AsyncClient) -> None:
    one, two = pair
    room = await paid_room(http, one)
    payer, ref = guest(), await pay(http, songapp)
    songapp.backend.kill()
    try:
        down = await submit(http, one, room, payer, 1, ref, ident="pay-1")
        assert down.status_code == 503 and down.json()["error"]["code"] == "UNAVAILABLE"
    finally:
        songapp.backend.start()
    await control(http, songapp, reference=ref, mode="fail")  # the provider fails now
    failing = await submit(http, two, room, payer, 1, ref, ident="pay-1")
    assert failing.status_code == 503 and failing.json()["error"]["code"] == "UNAVAILABLE"
    await control(http, songapp, reference=ref, mode="ok")
    retried = await submit(http, two, room, payer, 1, ref, ident="pay-1")
    assert retried.status_code == 200, retried.text
    assert (await provider_payment(http, songapp, ref))["status"] == "captured"
    again = await submit(http, one, room, payer, 1, ref, ident="pay-1")
    assert again.json() == retried.json() | {"duplicate": True}
    state = await dj_state(http, one, room)
    assert [p["reference"] for p in state["payments"]] == [ref]
    declined_ref = await pay(http, songapp)
    await control(http, songapp, reference=declined_ref, mode="decline")
    declined = await submit(http, one, room, guest(), 2, declined_ref)
    assert declined.status_code == 402
    assert declined.json()["error"]["code"] == "PAYMENT_DECLINED"
    required = await submit(http, one, room, guest(), 3, None)
    assert required.status_code == 402
    assert required.json()["error"]["code"] == "PAYMENT_REQUIRED"


async def test_kill_9_between_the_capture_and_the_commit(
        pair: tuple[Server, Server], songapp: SongApp, http: httpx.AsyncClient) -> None:
    """The instance dies after the provider captured and before the commit. The retry
    on the other instance asks the backend again with the same hook id: the provider
    captures once, the room records one paid request."""
    one, two = pair
    room = await paid_room(http, two)
    payer, ref = guest(), await pay(http, songapp)
    await control(http, songapp, reference=ref, mode="slow")  # captured, then a 1 s wait
    attempt = asyncio.create_task(submit(http, one, room, payer, 1, ref, ident="k9"))
    for _ in range(400):  # upper bound: the capture arrives within seconds
        if (await provider_payment(http, songapp, ref))["status"] == "captured":
            break
        await asyncio.sleep(0.025)
    await one.akill()
    with pytest.raises(httpx.TransportError):
        await attempt
    try:
        state = await dj_state(http, two, room)
        assert state["requests"] == [] and state["payments"] == []
        retried = await submit(http, two, room, payer, 1, ref, ident="k9")
        assert retried.status_code == 200, retried.text
        state = await dj_state(http, two, room)
        assert [p["reference"] for p in state["payments"]] == [ref]
        every_paid_request_has_its_record(state)
        # The retry's capture got 200, not "already captured": the same key, asked again.
        assert (await provider_payment(http, songapp, ref))["status"] == "captured"
    finally:
        await one.astart()


async def test_vetoes_are_refunded_once_and_failed_refunds_are_retried(
        pair: tuple[Server, Server], songapp: SongApp, http: httpx.AsyncClient) -> None:
    one, two = pair
    room = await paid_room(http, one)
    payers = [guest(i) for i in range(3)]
    refs = [await pay(http, songapp) for _ in payers]
    for i, (payer, ref) in enumerate(zip(payers, refs, strict=True)):
        assert (await submit(http, (one, two)[i % 2], room, payer, i, ref)).status_code == 200
    for rid in ("r1", "r2"):
        vetoed = await post_command(http, two, room, "request.veto", {"request_id": rid},
                                    user=DJ, role=Role.DJ)
        assert vetoed.status_code == 200
    played = await post_command(http, one, room, "request.played", {"request_id": "r3"},
                                user=DJ, role=Role.DJ)
    assert played.status_code == 409  # pending: play it first
    await post_command(http, one, room, "request.play", {"request_id": "r3"}, user=DJ,
                       role=Role.DJ)
    await post_command(http, one, room, "request.played", {"request_id": "r3"}, user=DJ,
                       role=Role.DJ)
    await control(http, songapp, refunds="fail")
    assert await sync(http, songapp, two, room) == {"refunded": 0, "failed": 2}
    assert await sync(http, songapp, two, room) == {"refunded": 0, "failed": 0}  # once
    state = await dj_state(http, one, room)
    statuses = {p["request_id"]: p["status"] for p in state["payments"]}
    assert statuses == {"r1": "refund_failed", "r2": "refund_failed", "r3": "settled"}
    await control(http, songapp, refunds="ok")
    for pid in ("p1", "p2"):  # what the reconciler does for a stuck refund
        retry = await post_command(http, two, room, "payment.retry", {"payment_id": pid},
                                   user="ops", role=Role.ADMIN)
        assert retry.status_code == 200, retry.text
    assert await sync(http, songapp, one, room) == {"refunded": 2, "failed": 0}
    state = await dj_state(http, two, room)
    statuses = {p["request_id"]: p["status"] for p in state["payments"]}
    assert statuses == {"r1": "refunded", "r2": "refunded", "r3": "settled"}
    history = next(p for p in state["payments"] if p["id"] == "p1")["history"]
    assert [h["status"] for h in history] == [
        "verified", "refund_due", "refund_failed", "refund_due", "refunded"]
    for ref in refs[:2]:
        assert (await provider_payment(http, songapp, ref))["status"] == "refunded"
    # The guest's own room told them, in order.
    inbox = f"user:{payers[0]}"
    reply = await http.get(f"{one.base}/v1/rooms/{inbox}/messages", params={"after": 0},
                           headers={"authorization": f"Bearer {issue_token(payers[0])}"})
    told = [f["data"]["notice"] for f in reply.json()["frames"]
            if f["data"].get("payment_id") == "p1"]
    assert told == ["payment.verified", "payment.refund_due", "payment.refund_failed",
                    "payment.refund_retry", "payment.refunded"]
    # Analytics: the set's money, and every set's for operators (JSON and CSV).
    dj = {"authorization": f"Bearer {issue_token(DJ, Role.DJ)}"}
    report = (await http.get(f"{two.base}/v1/rooms/{room}/analytics", headers=dj)).json()
    eur = report["payments"]["currencies"]["EUR"]
    assert report["payments"]["requests"] == {"paid": 3, "free": 0}
    assert (eur["earned"], eur["average_price"], eur["refunds"]) == (
        PRICE, PRICE, {"vetoed": {"count": 2, "amount": 2 * PRICE, "refunded": 2}})
    ops = {"authorization": f"Bearer {issue_token('ops', Role.ADMIN)}"}
    across = (await http.get(f"{one.base}/v1/admin/payments/analytics", headers=ops)).json()
    assert across["sets"][room] == report["payments"]
    csv_text = (await http.get(f"{one.base}/v1/admin/payments/analytics",
                               params={"format": "csv"}, headers=ops)).text
    assert f"{room},refund,vetoed,EUR,2,,{2 * PRICE}" in csv_text
    # Tips after the song: verified by the backend like a request's payment.
    await post_command(http, one, room, "queue.settings", {"tips": True}, user=DJ,
                       role=Role.DJ)
    tip_ref = await pay(http, songapp, 300)
    tipped = await post_command(http, two, room, "request.tip", {
        "request_id": "r3", "payment": {"reference": tip_ref, "amount": 300}}, user=payers[1])
    assert tipped.status_code == 200, tipped.text
    state = await dj_state(http, one, room)
    assert state["earnings"]["EUR"] | {"refunded": 0} == {
        "settled": PRICE + 300, "tips": 300, "waiting": 0, "refunding": 0, "refunded": 0}


async def test_stuck_refunds_are_listed_and_reconciled_once_by_two_instances(
        pair: tuple[Server, Server], songapp: SongApp, http: httpx.AsyncClient) -> None:
    one, two = pair
    room = await paid_room(http, one)
    payer, ref = guest(), await pay(http, songapp)
    assert (await submit(http, one, room, payer, 1, ref)).status_code == 200
    ops = {"authorization": f"Bearer {issue_token('ops', Role.ADMIN)}"}
    used = await http.get(f"{two.base}/v1/admin/payments/references/{ref}", headers=ops)
    assert used.json() | {"ts": 0} == {"reference": ref, "used": True, "room": room, "ts": 0}
    unused = await http.get(f"{two.base}/v1/admin/payments/references/nope", headers=ops)
    assert unused.json()["used"] is False
    forbidden = await http.get(f"{two.base}/v1/admin/payments",
                               headers={"authorization": f"Bearer {issue_token(payer)}"})
    assert forbidden.status_code == 403
    await post_command(http, two, room, "request.veto", {"request_id": "r1"}, user=DJ,
                       role=Role.DJ)
    await control(http, songapp, refunds="fail")
    try:
        assert await sync(http, songapp, one, room) == {"refunded": 0, "failed": 1}
    finally:
        await control(http, songapp, refunds="ok")
    listing = (await http.get(f"{one.base}/v1/admin/payments", headers=ops)).json()
    mine = [p for p in listing["payments"] if p["room"] == room]
    assert [(p["id"], p["status"], p["stuck"]) for p in mine] == [("p1", "refund_failed", True)]
    assert [h["status"] for h in mine[0]["history"]] == ["verified", "refund_due",
                                                         "refund_failed"]
    asked = await asyncio.gather(*(
        http.post(f"{srv.base}/v1/admin/payments/reconcile", headers=ops) for srv in pair))
    assert all(r.status_code == 200 for r in asked)
    state = await dj_state(http, one, room)
    retries = [h for h in state["payments"][0]["history"] if h.get("attempt")]
    assert len(retries) == 1  # two instances at once: one retry (one command id)
    assert await sync(http, songapp, two, room) == {"refunded": 1, "failed": 0}
    listing = (await http.get(f"{two.base}/v1/admin/payments", headers=ops)).json()
    assert [p for p in listing["payments"] if p["room"] == room] == []


async def test_every_veto_gives_one_refund_due_webhook_and_the_refund_closes_it(
        pair: tuple[Server, Server], songapp: SongApp, http: httpx.AsyncClient,
        tmp_path: Path) -> None:
    """The operator's backend follows the room through a webhook (no log reading): each
    veto reaches it as exactly one refund-due message id, it refunds at the provider and
    confirms, and the payment is refunded."""
    one, two = pair
    room = await paid_room(http, one)
    webhook_secret = new_secret()
    receiver = backend(tmp_path / "receiver", songapp.provider.url, secret=songapp.secret,
                       token=issue_token("songapp", Role.SERVICE),
                       webhook_secret=webhook_secret, hub=two.base).start()
    try:
        ops = {"authorization": f"Bearer {issue_token('ops', Role.ADMIN)}"}
        created = await http.post(f"{one.base}/v1/admin/webhooks", headers=ops, json={
            "url": receiver.url + "/webhooks", "rooms": [room], "secret": webhook_secret,
            "events": ["payment.refund_due", "payment.refund_retry", "payment.refunded"]})
        assert created.status_code == 201, created.text
        payers = [guest(i) for i in range(3)]
        for i, payer in enumerate(payers):
            ref = await pay(http, songapp)
            assert (await submit(http, (one, two)[i % 2], room, payer, i, ref)).status_code == 200
        for rid in ("r1", "r2", "r3"):
            vetoed = await post_command(http, (one, two)[int(rid[1]) % 2], room, "request.veto",
                                        {"request_id": rid}, user=DJ, role=Role.DJ)
            assert vetoed.status_code == 200

        async def all_refunded() -> bool:
            state = await dj_state(http, one, room)
            return all(p["status"] == "refunded" for p in state["payments"])

        for _ in range(600):  # upper bound: deliveries come within seconds
            if await all_refunded():
                break
            await asyncio.sleep(0.05)
        assert await all_refunded()
        stats = (await http.get(receiver.url + "/stats")).json()
        for pid in ("p1", "p2", "p3"):
            seen = stats["deliveries"][f"{room}/{pid}"]
            assert len(seen["payment.refund_due"]) == 1, seen  # one message id per veto
            assert "payment.refund_retry" not in seen
        for _ in range(600):  # the confirmations come through the webhook too
            stats = (await http.get(receiver.url + "/stats")).json()
            if all("payment.refunded" in stats["deliveries"][f"{room}/{p}"]
                   for p in ("p1", "p2", "p3")):
                break
            await asyncio.sleep(0.05)
        assert all(len(stats["deliveries"][f"{room}/{p}"]["payment.refunded"]) == 1
                   for p in ("p1", "p2", "p3"))
        assert "bad_webhook_signature" not in stats["calls"]  # verified by standardwebhooks
    finally:
        receiver.kill()
        receiver.assert_clean_log()
