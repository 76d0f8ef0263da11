"""Webhooks against real receivers: a ``roomlog serve`` process on SQLite posting to
HTTP servers the tests start (``tests/backend_server.py``), which verify every
signature with the ``standardwebhooks`` package.

Receivers: healthy, slow (past the timeout), failing with 500, answering 429 with
Retry-After, refusing connections (nothing listens yet), and one that fails only
for one room (the others of the endpoint are not held back).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from roomlog.identity import Role
from roomlog.signing import new_secret
from tests.backend_server import Backend, Call, Reply
from tests.e2e.conftest import MakeServer
from tests.e2e.support import Server, bearer, open_client, post_command, unique_room
from tests.e2e.test_minting import snippet
from tests.ports import free_port

WAIT = 20.0  # upper bound for expected deliveries; only a broken hub reaches it
ADMIN = bearer("ops", Role.ADMIN)

FAST_RETRIES: dict[str, object] = {
    "webhook_allow_private": "true",
    "webhook_retry_base": 0.05,
    "webhook_retry_max": 0.3,
    "webhook_timeout": 0.5,
    "webhook_cursor_flush": 0.05,
    "webhook_poll_interval": 0.2,
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("webhooks"), **FAST_RETRIES).start()
    yield srv
    srv.stop()
    srv.assert_clean_log()


async def create(http: httpx.AsyncClient, srv: Server, url: str, **fields: Any) -> dict[str, Any]:
    reply = await http.post(f"{srv.base}/v1/admin/webhooks", headers=ADMIN,
                            json={"url": url, **fields})
    assert reply.status_code == 201, reply.text
    webhook: dict[str, Any] = reply.json()["webhook"]
    return webhook


async def publish(http: httpx.AsyncClient, srv: Server, room: str, data: Any) -> int:
    reply = await http.post(f"{srv.base}/v1/rooms/{room}/messages", headers=ADMIN,
                            json={"data": data, "id": f"p-{time.perf_counter_ns()}"})
    assert reply.status_code == 201, reply.text
    seq: int = reply.json()["seq"]
    return seq


async def arrived(backend: Backend, room: str, n: int) -> list[Call]:
    """Wait until ``n`` distinct messages of ``room`` arrived; the calls, in order."""
    deadline = time.monotonic() + WAIT
    while True:
        calls = backend.of(room)
        if len({m["seq"] for c in calls for m in c.body["messages"]}) >= n:
            return calls
        if time.monotonic() > deadline:
            raise AssertionError(f"{room}: fewer than {n} messages arrived: {calls}")
        await asyncio.sleep(0.02)


def seqs(calls: list[Call]) -> list[int]:
    return [m["seq"] for c in calls for m in c.body["messages"]]


async def attempts(http: httpx.AsyncClient, srv: Server, webhook: dict[str, Any]
                   ) -> list[dict[str, Any]]:
    reply = await http.get(f"{srv.base}/v1/admin/webhooks/{webhook['id']}/attempts",
                           headers=ADMIN, params={"limit": 100})
    assert reply.status_code == 200
    found: list[dict[str, Any]] = reply.json()["attempts"]
    return found


async def eventually(check: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(what)
        await asyncio.sleep(0.05)


async def test_messages_arrive_signed_in_order_with_their_log_position_as_id(
        hub: Server, receiver: Backend, http: httpx.AsyncClient) -> None:
    room = unique_room("chat")
    before = await publish(http, hub, room, {"type": "old"})  # before the webhook: not sent
    await create(http, hub, receiver.url, rooms=[room], secret=receiver.secret)
    for i in range(20):
        await publish(http, hub, room, {"type": "note", "i": i})
    calls = await arrived(receiver, room, 20)
    assert seqs(calls) == list(range(before + 1, before + 21))
    epoch = calls[0].body["epoch"]
    for call in calls:
        (message,) = call.body["messages"]
        assert call.hook == message["id"] == f"{room}/{epoch}/{message['seq']}"
        assert call.headers["webhook-timestamp"].isdigit()


async def test_event_filters_pick_events_of_any_room_kind_by_name(
        hub: Server, receiver: Backend, http: httpx.AsyncClient) -> None:
    queue, chat = unique_room("queue"), unique_room("chat")
    await create(http, hub, receiver.url, rooms=["queue:*", chat], secret=receiver.secret,
                 events=["request.submitted", "refund.due"])
    await post_command(http, hub, queue, "queue.open", user="dj1", role=Role.DJ)
    reply = await post_command(http, hub, queue, "request.submit",
                               {"song_id": "s1", "title": "T", "artist": "A"}, user="g1")
    assert reply.status_code == 200, reply.text
    await publish(http, hub, chat, {"type": "chatter"})
    await publish(http, hub, chat, {"type": "refund.due", "amount": 500})
    (submitted,) = await arrived(receiver, queue, 1)
    assert submitted.body["messages"][0]["data"]["event"] == "request.submitted"
    (refund,) = await arrived(receiver, chat, 1)
    assert refund.body["messages"][0]["data"] == {"type": "refund.due", "amount": 500}
    assert refund.body["messages"][0]["seq"] == 2  # the chatter was stepped over


async def test_a_failing_room_holds_back_only_itself_and_retries_with_the_same_ids(
        hub: Server, receiver: Backend, http: httpx.AsyncClient) -> None:
    sick, well = unique_room("chat"), unique_room("chat")
    healed = asyncio.Event()
    receiver.answer = lambda call: (Reply(status=500) if call.body["room"] == sick
                                    and not healed.is_set() else Reply(body={}))
    webhook = await create(http, hub, receiver.url, rooms=[sick, well],
                           secret=receiver.secret)
    for i in range(3):
        await publish(http, hub, sick, {"i": i})
    await eventually(lambda: _async(len(receiver.of(sick)) >= 3), "no retries of the sick room")
    for i in range(10):
        await publish(http, hub, well, {"i": i})
    assert seqs(await arrived(receiver, well, 10)) == list(range(1, 11))
    assert set(seqs(receiver.of(sick))) == {1}  # never past the failing seq
    details = await http.get(f"{hub.base}/v1/admin/webhooks/{webhook['id']}", headers=ADMIN)
    delivery = details.json()["delivery"]
    assert delivery["retrying"] == 1 and delivery["lag_messages"] == 3
    assert delivery["failed"] >= 3 and delivery["delivered"] >= 10
    healed.set()
    calls = await arrived(receiver, sick, 3)
    ok = [c for c in calls if c is not calls[0]]
    assert len({c.hook for c in calls if c.body["messages"][0]["seq"] == 1}) == 1
    assert _first_arrivals(seqs(ok)) == [1, 2, 3]
    tried = await eventually(lambda: _failed_attempts(http, hub, webhook),
                             "no failed attempt listed")
    assert tried[0]["status"] == 500 and tried[0]["room"] == sick
    assert tried[0]["error"] == "HTTP 500" and tried[0]["latency_ms"] >= 0


async def test_429_with_retry_after_then_success(
        hub: Server, receiver: Backend, http: httpx.AsyncClient) -> None:
    room = unique_room("chat")
    answers = iter([Reply(status=429, headers={"retry-after": "1"})])
    receiver.answer = lambda call: next(answers, Reply(body={}))
    webhook = await create(http, hub, receiver.url, rooms=[room], secret=receiver.secret)
    await publish(http, hub, room, {"i": 1})
    calls = await arrived(receiver, room, 1)
    await eventually(lambda: _async(len(receiver.of(room)) >= 2), "no retry after the 429")
    calls = receiver.of(room)
    assert calls[0].hook == calls[1].hook
    listed = await eventually(lambda: _listed(http, hub, webhook, 2), "attempts not listed")
    assert [a["status"] for a in listed] == [200, 429]


async def test_slow_and_refusing_receivers_are_retried_until_they_answer(
        hub: Server, http: httpx.AsyncClient) -> None:
    room = unique_room("chat")
    port = free_port()
    secret = new_secret()
    webhook = await create(http, hub, f"http://127.0.0.1:{port}/hook", rooms=[room],
                           secret=secret)
    await publish(http, hub, room, {"i": 1})
    refused = await eventually(lambda: _failed_attempts(http, hub, webhook),
                               "no refused attempt listed")
    assert refused[0]["status"] is None and refused[0]["error"].startswith("connect")

    late = Backend(secret)  # now something listens, but answers after the timeout
    late.port = port
    late.answer = lambda call: Reply(body={}, delay=2.0 if len(late.calls) == 1 else 0.0)
    late.start()
    try:
        calls = await arrived(late, room, 1)
        await eventually(lambda: _async(len(late.of(room)) >= 2), "no retry after a timeout")
        calls = late.of(room)
        assert calls[0].hook == calls[1].hook == f"{room}/{calls[0].body['epoch']}/1"
        tried = await eventually(lambda: _with_error(http, hub, webhook, "timeout"),
                                 "no timed-out attempt listed")
        assert tried["status"] is None
    finally:
        late.stop()
    assert late.bad_signatures == 0


async def test_redeliver_from_a_seq_and_batches(
        hub: Server, receiver: Backend, http: httpx.AsyncClient) -> None:
    room = unique_room("chat")
    webhook = await create(http, hub, receiver.url, rooms=[room], secret=receiver.secret,
                           batch_max=50)
    for i in range(5):
        await publish(http, hub, room, {"i": i})
    await arrived(receiver, room, 5)
    first = len(receiver.of(room))
    reply = await http.post(f"{hub.base}/v1/admin/webhooks/{webhook['id']}/redeliver",
                            headers=ADMIN, json={"room": room, "from": 3})
    assert reply.status_code == 200, reply.text
    assert reply.json()["from"] == 3 and reply.json()["head"] == 5
    await eventually(lambda: _async(len(seqs(receiver.of(room))) >= 8), "no redelivery")
    again = receiver.of(room)[first:]
    assert seqs(again) == [3, 4, 5]
    epoch = again[0].body["epoch"]
    assert again[0].hook == f"{room}/{epoch}/3-5"  # a batch names its range
    assert [m["id"] for m in again[0].body["messages"]] == [f"{room}/{epoch}/{s}"
                                                            for s in (3, 4, 5)]
    wrong = await http.post(f"{hub.base}/v1/admin/webhooks/{webhook['id']}/redeliver",
                            headers=ADMIN, json={"room": unique_room("chat"), "from": 1})
    assert wrong.status_code == 409


async def test_rotation_signs_with_both_secrets_until_the_grace_ends(
        hub: Server, receiver: Backend, http: httpx.AsyncClient) -> None:
    room = unique_room("chat")
    webhook = await create(http, hub, receiver.url, rooms=[room], secret=receiver.secret)
    reply = await http.post(f"{hub.base}/v1/admin/webhooks/{webhook['id']}/rotate",
                            headers=ADMIN, json={"grace": 3600})
    assert reply.status_code == 200, reply.text
    secrets = reply.json()["webhook"]["secrets"]
    assert secrets[1]["secret"] == receiver.secret and secrets[1]["expires"] is not None
    for n in range(1, 50):  # the deliverer picks the rotation up within a round
        await publish(http, hub, room, {"i": n})
        calls = await arrived(receiver, room, n)  # each verified with the old secret
        if len(calls[-1].headers["webhook-signature"].split()) == 2:
            break
    else:
        raise AssertionError("no delivery signed with both secrets")
    both = calls[-1]
    body = orjson.dumps(both.body)  # re-encoded: check the new secret on the hub's bytes
    assert both.headers["webhook-id"] == both.hook and body
    listed = await http.get(f"{hub.base}/v1/admin/webhooks/{webhook['id']}", headers=ADMIN)
    assert "secret" not in listed.json()["webhook"]["secrets"][0]  # shown only when made
    new = secrets[0]["secret"]
    rotated = await http.post(f"{hub.base}/v1/admin/webhooks/{webhook['id']}/rotate",
                              headers=ADMIN, json={"grace": 0, "secret": receiver.secret})
    assert [s["secret"] for s in rotated.json()["webhook"]["secrets"]] == [receiver.secret]
    assert new != receiver.secret
    Webhook(receiver.secret)  # the old one is a valid library secret again


async def test_the_admin_api_lists_reads_updates_and_deletes(
        hub: Server, receiver: Backend, http: httpx.AsyncClient) -> None:
    room = unique_room("chat")
    webhook = await create(http, hub, receiver.url, rooms=[room], description="crm")
    base = f"{hub.base}/v1/admin/webhooks"
    listed = (await http.get(base, headers=ADMIN)).json()["webhooks"]
    assert webhook["id"] in [w["id"] for w in listed]
    off = await http.patch(f"{base}/{webhook['id']}", headers=ADMIN,
                           json={"enabled": False, "description": "crm v2"})
    assert off.status_code == 200 and off.json()["webhook"]["enabled"] is False
    assert off.json()["webhook"]["description"] == "crm v2"
    bad = await http.patch(f"{base}/{webhook['id']}", headers=ADMIN, json={"rooms": "all"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "BAD_FRAME"
    guest = await http.get(base, headers=bearer("g", Role.GUEST))
    assert guest.status_code == 403
    gone = await http.delete(f"{base}/{webhook['id']}", headers=ADMIN)
    assert gone.status_code == 200
    assert (await http.get(f"{base}/{webhook['id']}", headers=ADMIN)).status_code == 404


async def test_private_addresses_are_refused_unless_allowed(
        server: Server, http: httpx.AsyncClient) -> None:
    for url in ("http://127.0.0.1:9/h", "http://localhost/h", "http://10.1.2.3/h",
                "http://169.254.169.254/latest", "http://[::1]/h", "http://192.168.0.1/"):
        reply = await http.post(f"{server.base}/v1/admin/webhooks", headers=ADMIN,
                                json={"url": url, "rooms": ["*"]})
        assert reply.status_code == 400, (url, reply.text)
        assert reply.json()["error"]["code"] == "BAD_FRAME"


async def test_past_the_horizon_the_endpoint_is_disabled_and_operators_told(
        make_server: MakeServer, http: httpx.AsyncClient, tmp_path: Path) -> None:
    srv = await make_server(**{**FAST_RETRIES, "webhook_horizon": 0.5})
    failing = Backend().start()
    failing.answer = lambda call: Reply(status=503)
    try:
        room = unique_room("chat")
        webhook = await create(http, srv, failing.url, rooms=["chat:*"],
                               secret=failing.secret)
        ws = await open_client(srv.ws_url, user="ops", role=Role.ADMIN)
        try:
            await ws.subscribe("admin:webhooks")
            await publish(http, srv, room, {"i": 1})
            notice = await ws.expect("message", room="admin:webhooks")
        finally:
            await ws.close()
        assert notice["data"]["event"] == "webhook.disabled"
        assert notice["data"]["endpoint"] == webhook["id"] and notice["data"]["room"] == room
        read = (await http.get(f"{srv.base}/v1/admin/webhooks/{webhook['id']}",
                               headers=ADMIN)).json()["webhook"]
        assert read["enabled"] is False and "horizon" in read["disabled_reason"]
        metrics = (await http.get(f"{srv.base}/metrics")).text
        assert "roomlog_webhooks_disabled_total 1.0" in metrics
        gauge = f'roomlog_webhook_endpoint_disabled{{endpoint="{webhook["id"]}"}}'
        await eventually(lambda: _async(f"{gauge} 1.0" in _scrape(srv)), "no disabled gauge")
        assert f'roomlog_webhook_failed_total{{endpoint="{webhook["id"]}"}}' in metrics

        failing.answer = lambda call: Reply(body={})  # fixed: enabled again, it resumes
        again = await http.patch(f"{srv.base}/v1/admin/webhooks/{webhook['id']}",
                                 headers=ADMIN, json={"enabled": True})
        assert again.json()["webhook"]["disabled_reason"] is None
        await publish(http, srv, room, {"i": 2})
        calls = await arrived(failing, room, 2)
        assert _first_arrivals(seqs(calls)) == [1, 2]
        read = (await http.get(f"{srv.base}/v1/admin/webhooks/{webhook['id']}",
                               headers=ADMIN)).json()["webhook"]
        assert read["enabled"] is True  # the horizon started over
    finally:
        failing.stop()


async def _async(value: Any) -> Any:
    return value


async def _failed_attempts(http: httpx.AsyncClient, srv: Server,
                           webhook: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in await attempts(http, srv, webhook) if not a["ok"]]


async def _listed(http: httpx.AsyncClient, srv: Server, webhook: dict[str, Any],
                  n: int) -> list[dict[str, Any]] | None:
    found = await attempts(http, srv, webhook)
    return found if len(found) >= n else None


async def _with_error(http: httpx.AsyncClient, srv: Server, webhook: dict[str, Any],
                      prefix: str) -> dict[str, Any] | None:
    for attempt in await attempts(http, srv, webhook):
        if (attempt["error"] or "").startswith(prefix):
            return attempt
    return None


def _first_arrivals(order: list[int]) -> list[int]:
    seen: list[int] = []
    for seq in order:
        if seq not in seen:
            seen.append(seq)
    return seen


async def test_the_documented_node_receiver_verifies_and_dedupes(
        hub: Server, http: httpx.AsyncClient, tmp_path: Path) -> None:
    """docs/backends.md's Node snippet, run under ``node`` as the receiver."""
    (tmp_path / "receiver.mjs").write_text(snippet("receiver.mjs"))
    old, new, port = new_secret(), new_secret(), free_port()
    out = tmp_path / "out.txt"
    with out.open("wb") as sink:
        node = await asyncio.create_subprocess_exec(
            "node", "receiver.mjs", cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT,
            env={**os.environ, "PORT": str(port), "ROOMLOG_WEBHOOK_SECRETS": f"{old} {new}"})
    try:
        room = unique_room("chat")
        webhook = await create(http, hub, f"http://127.0.0.1:{port}/hook", rooms=[room],
                               secret=new)
        for i in range(3):
            await publish(http, hub, room, {"type": "note", "i": i})

        async def lines() -> list[str] | None:
            found = out.read_text().splitlines()
            return found if len(found) >= 3 else None

        printed = await eventually(lines, "the Node receiver printed fewer than 3 messages")
        epoch = printed[0].split("/")[1]
        assert [line.split(" ", 1)[0] for line in printed] == [
            f"{room}/{epoch}/{seq}" for seq in (1, 2, 3)]
        again = await http.post(f"{hub.base}/v1/admin/webhooks/{webhook['id']}/redeliver",
                                headers=ADMIN, json={"room": room, "from": 1})
        assert again.status_code == 200
        await publish(http, hub, room, {"type": "note", "i": 3})  # after the redelivery

        async def fourth() -> list[str] | None:
            found = out.read_text().splitlines()
            return found if len(found) >= 4 else None

        printed = await eventually(fourth, "the message after the redelivery did not arrive")
        assert len(printed) == 4 and printed[3].startswith(f"{room}/{epoch}/4 ")  # deduped
        tried = await eventually(lambda: _listed(http, hub, webhook, 7),
                                 "the redelivery was not attempted")
        assert not [a for a in tried if a["status"] == 401]  # every one verified
        assert len(out.read_text().splitlines()) == 4  # redelivered ids were deduped
    finally:
        node.kill()
        await node.wait()


async def test_a_dead_endpoint_never_delays_another(
        hub: Server, receiver: Backend, http: httpx.AsyncClient) -> None:
    room = unique_room("chat")
    stuck = Backend()
    stuck.answer = lambda call: Reply(body={}, delay=30.0)  # past every timeout
    stuck.start()
    try:
        await create(http, hub, stuck.url, rooms=[room], secret=stuck.secret)
        await create(http, hub, receiver.url, rooms=[room], secret=receiver.secret)
        for i in range(10):
            await publish(http, hub, room, {"i": i})
        assert seqs(await arrived(receiver, room, 10)) == list(range(1, 11))
        assert set(seqs(stuck.of(room))) == {1}  # the stuck one still waits on its first
    finally:
        stuck.stop()


async def test_a_slow_receiver_within_the_timeout_is_a_success(
        hub: Server, receiver: Backend, http: httpx.AsyncClient) -> None:
    room = unique_room("chat")
    receiver.answer = lambda call: Reply(body={}, delay=0.2)  # the hub waits 0.5 s here
    webhook = await create(http, hub, receiver.url, rooms=[room], secret=receiver.secret)
    for i in range(3):
        await publish(http, hub, room, {"i": i})
    assert seqs(await arrived(receiver, room, 3)) == [1, 2, 3]
    tried = await eventually(lambda: _listed(http, hub, webhook, 3), "attempts not listed")
    assert [(a["status"], a["error"]) for a in tried] == [(200, None)] * 3


def _scrape(srv: Server) -> str:
    return httpx.get(f"{srv.base}/metrics", timeout=10).text
