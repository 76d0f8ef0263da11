"""Queue rooms live: state on subscribe, resume, resets, and guests' notices.

* Subscribing without ``since`` gives ``subscribed`` with the room's ``state``
  and its ``seq``; the messages that follow are exactly the events after it.
* A guest resuming with ``since`` gets the events it missed, contiguously; one
  resuming from a trimmed seq gets a ``reset`` carrying the state instead.
* An admin reset gives live subscribers a ``reset`` with the empty room's state.
* Notices to a request's guest land in its durable ``user:{id}`` room, live
  and on a later resume.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx

from roomlog.identity import Role
from tests.e2e.conftest import MakeServer
from tests.e2e.support import (
    Server,
    WsClient,
    bearer,
    get_state,
    open_client,
    post_command,
    sse,
    unique_room,
)


def song(n: int | str) -> dict[str, str]:
    return {"song_id": f"song-{n}", "title": f"Title {n}", "artist": f"Artist {n}"}


def users(*names: str) -> list[str]:
    tag = secrets.token_hex(3)
    return [f"{name}-{tag}" for name in names]


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames]


async def ok(reply: Any) -> dict[str, Any]:
    """The ack of a command (an awaited HTTP reply or WebSocket answer)."""
    answer = await reply
    if isinstance(answer, httpx.Response):
        assert answer.status_code == 200, answer.text
        answer = answer.json()
    assert answer["type"] == "ack", answer
    return answer  # type: ignore[no-any-return]


async def quiet(client: WsClient, room: str) -> None:
    """Nothing more for ``room`` is queued: a ping round trip flushes what was on its way."""
    await client.ping()
    assert not [f for f in client.frames if f.get("room") == room], list(client.frames)


async def open_room(http: httpx.AsyncClient, srv: Server, room: str, dj: str) -> None:
    """The DJ claims the room and lifts the limits so a test can submit freely."""
    await ok(post_command(http, srv, room, "queue.settings",
                          {"request_cap_per_hour": 1000, "max_active_per_guest": 50,
                           "submit_rate": 60}, user=dj, role=Role.DJ))


async def test_subscribe_gives_state_and_then_exactly_the_later_events(
    server: Server, http: httpx.AsyncClient,
) -> None:
    room = unique_room("queue")
    owner, watcher = users("owner", "watcher")
    rid = (await ok(post_command(http, server, room, "request.submit", song(1),
                                 user=owner)))["result"]["request_id"]
    voters = users(*(f"v{i}" for i in range(40)))

    # Votes stream in over HTTP while the watcher subscribes in the middle of them.
    async def vote(user: str) -> dict[str, Any]:
        return await ok(post_command(http, server, room, "request.vote",
                                     {"request_id": rid}, user=user))

    first = await asyncio.gather(*(vote(u) for u in voters[:10]))
    rest = asyncio.gather(*(vote(u) for u in voters[10:]))
    sub = await open_client(server.ws_url, user=watcher)
    subscribed = await sub.subscribe(room)
    acks = [*first, *await rest]

    head = max(a["seq"] for a in acks)
    assert head == 41
    at = subscribed["seq"]
    assert set(subscribed) == {"type", "room", "epoch", "head", "replayed", "seq", "state"}
    assert (subscribed["room"], subscribed["epoch"], subscribed["replayed"]) == (
        room, acks[0]["epoch"], 0)
    assert 11 <= at <= head and subscribed["head"] >= at
    state = subscribed["state"]
    [request] = state["pending"]
    assert (request["id"], request["votes"], request["voted"]) == (rid, at - 1, False)
    assert state["counters"]["requests_last_hour"] == 1 and "requests" not in state

    # The events after `at`, each once, in order; each vote counts one more.
    events = await sub.messages(room, head - at)
    assert seqs(events) == list(range(at + 1, head + 1))
    assert [e["data"]["votes"] for e in events] == list(range(at, head))
    assert {e["data"]["event"] for e in events} == {"request.voted"}
    await quiet(sub, room)

    # The state a new subscription shows is GET state, at the head.
    again = await open_client(server.ws_url, user=watcher)
    now = await again.subscribe(room)
    body = await get_state(http, server, room, user=watcher)
    assert (now["seq"], now["epoch"], now["state"]) == (body["seq"], body["epoch"], body["state"])
    assert body["seq"] == head and body["state"]["pending"][0]["votes"] == 40
    for client in (sub, again):
        await client.close()


async def test_resumed_guest_gets_the_missed_events_and_the_same_state(
    server: Server, http: httpx.AsyncClient,
) -> None:
    room = unique_room("queue")
    dj, away, stayer = users("dj", "away", "stayer")
    await open_room(http, server, room, dj)
    guests = users(*(f"g{i}" for i in range(20)))
    # `away` owns a request too, so its own view ("mine") has something in it.
    await ok(post_command(http, server, room, "request.submit", song("away"), user=away))

    left = await open_client(server.ws_url, user=away)
    start = await left.subscribe(room)
    stay = await open_client(server.ws_url, user=stayer)
    assert (await stay.subscribe(room))["seq"] == start["seq"] == 3
    await left.close()  # the guest goes away ...

    # ... and misses 200 events: 20 submissions, 10 accepted at once, 120 moves, 50 votes.
    ids = [(await ok(post_command(http, server, room, "request.submit", song(i), user=g))
            )["result"]["request_id"] for i, g in enumerate(guests)]
    batch = await ok(post_command(http, server, room, "request.batch",
                                  {"action": "accept", "request_ids": ids[:10]},
                                  user=dj, role=Role.DJ))
    assert batch["result"]["succeeded"] == 10
    desk = await open_client(server.ws_url, user=dj, role=Role.DJ)
    queue = list(ids[:10])
    sent = []
    for _ in range(120):  # pipelined: the last of the queue to the top, over and over
        sent.append(await desk.send_command(room, "queue.reorder",
                                            {"request_id": queue[-1], "position": 1}))
        queue.insert(0, queue.pop())
    for ident in sent:
        await ok(desk.reply(ident))
    pending = ["r1", *ids[10:]]  # away's request and the ten not accepted
    voters = users(*(f"fan{i}" for i in range(50)))
    await asyncio.gather(*(
        ok(post_command(http, server, room, "request.vote",
                        {"request_id": pending[i % len(pending)]}, user=v))
        for i, v in enumerate(voters)))

    head = (await get_state(http, server, room, user=away))["seq"]
    assert head == start["seq"] + 200
    back = await open_client(server.ws_url, user=away)
    resumed = await back.subscribe(room, since={"epoch": start["epoch"], "seq": start["seq"]})
    assert (resumed["replayed"], resumed["head"]) == (200, head) and "state" not in resumed
    missed = await back.messages(room, 200)
    assert seqs(missed) == list(range(start["seq"] + 1, head + 1))
    await quiet(back, room)
    # Exactly what the subscriber who never left received.
    live = await stay.messages(room, 200)
    assert missed == live
    await quiet(stay, room)

    # The resumed guest's state is what GET state and a fresh subscription say, and
    # the orders and positions the last events carry are the state's.
    fresh = await open_client(server.ws_url, user=away)
    now = await fresh.subscribe(room)
    body = await get_state(http, server, room, user=away)
    assert (now["seq"], now["epoch"], now["state"]) == (head, body["epoch"], body["state"])
    state = body["state"]
    last_queue = next(m["data"]["queue"] for m in reversed(missed) if "queue" in m["data"])
    assert [r["id"] for r in state["queue"]] == last_queue == queue
    # Events carry a pending request's position, not the whole order: the last vote's
    # position is that request's place in the state's pending order.
    last_vote = missed[-1]["data"]
    pending_ids = [r["id"] for r in state["pending"]]
    assert pending_ids.index(last_vote["request_id"]) + 1 == last_vote["position"]
    votes = {m["data"]["request_id"]: m["data"]["votes"] for m in missed
             if m["data"]["event"] == "request.voted"}
    assert {r["id"]: r["votes"] for r in state["pending"]} == votes
    assert [r["id"] for r in state["mine"]] == ["r1"]
    for client in (stay, desk, back, fresh):
        await client.close()


async def test_resume_from_a_trimmed_seq_resets_with_the_state(
    make_server: MakeServer, http: httpx.AsyncClient,
) -> None:
    srv = await make_server(retention_max_messages=50, snapshot_every=20)
    room = unique_room("queue")
    dj, guest = users("dj", "guest")
    await open_room(http, srv, room, dj)
    away = await open_client(srv.ws_url, user=guest)
    start = await away.subscribe(room)
    await ok(away.command(room, "request.submit", song("mine")))
    await away.close()

    # 96 more events, one command per commit (so snapshots are taken as they come due).
    desk = await open_client(srv.ws_url, user=dj, role=Role.DJ)
    ids = [(await ok(desk.command(room, "request.submit", song(i))))["result"]["request_id"]
           for i in range(8)]
    for rid in ids:
        await ok(desk.command(room, "request.accept", {"request_id": rid}))
    queue = list(ids)
    for _ in range(80):  # the last of the queue to the top: a move every time
        await ok(desk.command(room, "queue.reorder", {"request_id": queue[-1], "position": 1}))
        queue.insert(0, queue.pop())
    info = (await http.get(f"{srv.base}/v1/rooms/{room}", headers=bearer(guest))).json()
    assert info["head"] == start["seq"] + 97
    assert info["trimmed"] > start["seq"] + 1 and info["head"] - info["trimmed"] >= 50

    back = await open_client(srv.ws_url, user=guest)
    resumed = await back.subscribe(room, since={"epoch": start["epoch"],
                                                "seq": start["seq"] + 1})
    assert resumed["replayed"] == 0
    reset = await back.expect("reset", room=room)
    body = await get_state(http, srv, room, user=guest)
    assert reset == {"type": "reset", "room": room, "reason": "trimmed", "epoch": body["epoch"],
                     "seq": body["seq"], "trimmed": info["trimmed"], "state": body["state"]}
    assert body["seq"] == info["head"]
    assert [r["id"] for r in body["state"]["mine"]] == ["r1"]
    await quiet(back, room)

    # The same reset, with the same state, over long-polling and SSE (promise 5).
    since = {"after": start["seq"] + 1, "epoch": start["epoch"]}
    polled = (await http.get(f"{srv.base}/v1/rooms/{room}/messages", params=since,
                             headers=bearer(guest))).json()
    assert polled["frames"] == [reset] and polled["next"] == reset["seq"]
    async with sse(http, srv, room, headers=bearer(guest), params=since) as stream:
        assert (await stream.next())["event"] == "subscribed"
        event = await stream.next()
        assert (event["event"], event["data"]) == ("reset", reset)
    # Live from the reset's seq on: the next event, nothing in between.
    nxt = await ok(desk.command(room, "request.play", {"request_id": ids[0]}))
    got = await back.messages(room, len(nxt["seqs"]))
    assert seqs(got) == nxt["seqs"] == list(range(reset["seq"] + 1, reset["seq"] + 1
                                                  + len(nxt["seqs"])))

    # A restarted server rebuilds the same state from the snapshot and the kept events.
    before = await get_state(http, srv, room, user=dj, role=Role.DJ)
    for client in (back, desk):
        await client.close()
    await srv.arestart()
    assert await get_state(http, srv, room, user=dj, role=Role.DJ) == before


async def test_admin_reset_gives_subscribers_the_empty_room(
    server: Server, http: httpx.AsyncClient,
) -> None:
    room = unique_room("queue")
    dj, guest = users("dj", "guest")
    await open_room(http, server, room, dj)
    await ok(post_command(http, server, room, "request.submit", song(1), user=guest))
    await ok(post_command(http, server, room, "request.accept", {"request_id": "r1"},
                          user=dj, role=Role.DJ))
    clients = {who: await open_client(server.ws_url, user=who, role=role)
               for who, role in ((guest, Role.GUEST), (dj, Role.DJ))}
    for client in clients.values():
        assert (await client.subscribe(room))["state"]["queue"][0]["id"] == "r1"

    reply = await http.delete(f"{server.base}/v1/rooms/{room}", headers=bearer("ops", Role.ADMIN))
    assert reply.status_code == 200
    new = reply.json()
    for who, client in clients.items():
        reset = await client.expect("reset", room=room)
        role = Role.DJ if who == dj else Role.GUEST
        body = await get_state(http, server, room, user=who, role=role)
        assert (body["epoch"], body["seq"]) == (new["epoch"], 0)
        assert reset == {"type": "reset", "room": room, "reason": "epoch",
                         "epoch": new["epoch"], "seq": 0, "trimmed": 0, "state": body["state"]}
        state = reset["state"]
        assert (state["owner"], state["open"], state["now_playing"]) == (None, True, None)
        assert (state["queue"], state["pending"], state["mine"]) == ([], [], [])
        assert state["settings"] == {"request_cap_per_hour": 30, "max_active_per_guest": 3,
                                     "submit_rate": 3, "voting": True, "price": 0,
                                     "jump_price": 0, "currency": "EUR", "tips": False}
        assert state["counters"]["requests_last_hour"] == 0
        assert state["dj"] is (who == dj)  # an unclaimed room: any DJ may claim it
        await quiet(client, room)

    # The room starts over: the next request is r1 again, at seq 1 of the new epoch.
    again = await ok(post_command(http, server, room, "request.submit", song(1), user=guest))
    assert (again["epoch"], again["seqs"], again["result"]["request_id"]) == (
        new["epoch"], [1], "r1")
    for client in clients.values():
        [event] = await client.messages(room, 1)
        assert (event["seq"], event["epoch"], event["data"]["event"]) == (
            1, new["epoch"], "request.submitted")
        await client.close()


async def test_notices_reach_the_guests_user_room_live_and_on_resume(
    server: Server, http: httpx.AsyncClient,
) -> None:
    room = unique_room("queue")
    dj, guest, offline = users("dj", "guest", "offline")
    await open_room(http, server, room, dj)

    me = await open_client(server.ws_url, user=guest)
    inbox = await me.subscribe(f"user:{guest}")
    assert (inbox["head"], inbox["replayed"]) == (0, 0) and "state" not in inbox
    # The offline guest knew its inbox once (its epoch, seq 0), then left.
    gone = await open_client(server.ws_url, user=offline)
    offline_inbox = await gone.subscribe(f"user:{offline}")
    await gone.close()
    # Nobody else may read a guest's inbox.
    await me.send({"type": "subscribe", "room": f"user:{offline}", "id": "peek"})
    assert (await me.expect("error", id="peek"))["code"] == "FORBIDDEN"

    r_mine = (await ok(me.command(room, "request.submit", song("a"))))["result"]["request_id"]
    r_veto = (await ok(me.command(room, "request.submit", song("b"))))["result"]["request_id"]
    r_off = (await ok(post_command(http, server, room, "request.submit", song("c"),
                                   user=offline)))["result"]["request_id"]

    async def run(name: str, **args: Any) -> dict[str, Any]:
        return await ok(post_command(http, server, room, name, args, user=dj, role=Role.DJ))

    accepted = await run("request.accept", request_id=r_mine)  # position 1: also "next"
    vetoed = await run("request.veto", request_id=r_veto, reason="not tonight")
    accepted_off = await run("request.accept", request_id=r_off)  # position 2
    playing = await run("request.play", request_id=r_mine)  # r_off moves up to 1: "next"
    playing_off = await run("request.play", request_id=r_off)  # r_mine played, r_off playing

    def expected(rid: str, n: str, seq: int, kind: str, **extra: Any) -> dict[str, Any]:
        return {"notice": kind, "room": room, "request_id": rid, "title": f"Title {n}",
                "artist": f"Artist {n}", "seq": seq, **extra}

    got = await me.messages(f"user:{guest}", 4)
    assert seqs(got) == [1, 2, 3, 4]
    assert {(m["by"], m["epoch"]) for m in got} == {(dj, inbox["epoch"])}
    assert [m["data"] for m in got] == [
        expected(r_mine, "a", accepted["seq"], "request.accepted", position=1),
        expected(r_mine, "a", accepted["seq"], "request.next", position=1),
        expected(r_veto, "b", vetoed["seq"], "request.vetoed", reason="not tonight"),
        expected(r_mine, "a", playing["seq"], "request.playing"),
    ]
    await quiet(me, f"user:{guest}")  # r_mine being played tells its guest nothing more

    # The offline guest comes back: its notices waited in its inbox, in order.
    back = await open_client(server.ws_url, user=offline)
    resumed = await back.subscribe(f"user:{offline}", since={
        "epoch": offline_inbox["epoch"], "seq": offline_inbox["head"]})
    assert (resumed["replayed"], resumed["head"]) == (3, 3)
    notices = await back.messages(f"user:{offline}", 3)
    assert [m["data"] for m in notices] == [
        expected(r_off, "c", accepted_off["seq"], "request.accepted", position=2),
        expected(r_off, "c", playing["seq"], "request.next", position=1),
        expected(r_off, "c", playing_off["seq"], "request.playing"),
    ]
    await quiet(back, f"user:{offline}")
    # Resuming from the middle gives the rest only.
    later = await open_client(server.ws_url, user=offline)
    await later.subscribe(f"user:{offline}", since={"epoch": offline_inbox["epoch"], "seq": 2})
    assert [m["data"]["notice"] for m in await later.messages(f"user:{offline}", 1)] == [
        "request.playing"]
    for client in (me, back, later):
        await client.close()
