"""Queue rooms under races between two server processes on one PostgreSQL database.

Two ``roomlog serve`` instances (``pg_pair``) take commands for the same
queue room at the same moment, over WebSockets and HTTP. The room row lock
serializes them: the hourly cap, idempotent command ids and one vote per
guest hold across instances exactly, not approximately. An instance whose
cached state fell behind what retention trimmed rebuilds it from the snapshot.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
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
    unique_room,
)

DJ = "dj-" + secrets.token_hex(3)


def song(n: int | str) -> dict[str, str]:
    return {"song_id": f"song-{n}", "title": f"Title {n}", "artist": f"Artist {n}"}


def answer(reply: httpx.Response | dict[str, Any]) -> dict[str, Any]:
    """An HTTP reply or a WebSocket frame as one shape: the ack, or
    ``{"type": "error", "code", "retry_after"?, "details"?, "status"?, "header"?}``."""
    if isinstance(reply, dict):
        return reply
    body = reply.json()
    if reply.status_code == 200:
        assert body["type"] == "ack", body
        return body  # type: ignore[no-any-return]
    error = body["error"]
    return {"type": "error", **error, "status": reply.status_code,
            "header": reply.headers.get("retry-after")}


class Guest:
    """A guest on one instance, over its own WebSocket or over HTTP."""

    def __init__(self, user: str, srv: Server, http: httpx.AsyncClient, ws: WsClient | None):
        self.user, self.srv, self.http, self.ws = user, srv, http, ws

    @classmethod
    async def join(cls, user: str, srv: Server, http: httpx.AsyncClient, *,
                   websocket: bool) -> Guest:
        ws = await open_client(srv.ws_url, user=user) if websocket else None
        return cls(user, srv, http, ws)

    async def command(self, room: str, name: str, args: dict[str, Any], *,
                      ident: str | None = None, srv: Server | None = None) -> dict[str, Any]:
        """Over this guest's WebSocket, or over HTTP (to ``srv`` if given)."""
        if self.ws is not None and srv is None:
            return await self.ws.command(room, name, args, ident=ident)
        return answer(await post_command(self.http, srv or self.srv, room, name, args,
                                         user=self.user, ident=ident))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def crowd(prefix: str, n: int, pair: tuple[Server, Server],
                http: httpx.AsyncClient) -> list[Guest]:
    """``n`` guests: even ones on the first instance, odd ones on the second; every
    other pair over a WebSocket, the rest over HTTP. Connected before anything races."""
    return list(await asyncio.gather(*(
        Guest.join(f"{prefix}{i}", pair[i % 2], http, websocket=(i // 2) % 2 == 0)
        for i in range(n))))


async def dj(http: httpx.AsyncClient, srv: Server, room: str, name: str,
             args: dict[str, Any]) -> dict[str, Any]:
    reply = await post_command(http, srv, room, name, args, user=DJ, role=Role.DJ)
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


async def same_state(http: httpx.AsyncClient, pair: tuple[Server, Server], room: str,
                     **who: Any) -> dict[str, Any]:
    """GET state from both instances: they fold the same log to the same view."""
    first, second = [await get_state(http, srv, room, **who) for srv in pair]
    assert first == second
    return first


async def test_hourly_cap_admits_exactly_the_cap_across_instances(
    pg_pair: tuple[Server, Server], http: httpx.AsyncClient,
) -> None:
    room = unique_room("queue")
    a, _ = pg_pair
    ack = await dj(http, a, room, "queue.settings", {"request_cap_per_hour": 10})
    assert ack["result"]["settings"]["request_cap_per_hour"] == 10
    assert ack["seqs"] == [1, 2]  # queue.created (the DJ claims the room), settings_changed

    guests = await crowd("cap-guest-", 50, pg_pair, http)
    answers = await asyncio.gather(*(
        g.command(room, "request.submit", song(i)) for i, g in enumerate(guests)))

    acks = [r for r in answers if r["type"] == "ack"]
    errors = [r for r in answers if r["type"] == "error"]
    assert (len(acks), len(errors)) == (10, 40), Counter(r.get("code") for r in errors)
    ids = {r["result"]["request_id"] for r in acks}
    assert len(ids) == 10
    # Decided one after the other under the room lock: seqs 3..12, positions 1..10.
    assert sorted(s for r in acks for s in r["seqs"]) == list(range(3, 13))
    assert sorted(r["result"]["position"] for r in acks) == list(range(1, 11))
    assert {(r["room"], r["duplicate"], r["epoch"]) for r in acks} == {
        (room, False, acks[0]["epoch"])}
    for error in errors:
        assert error["code"] == "CAPACITY_EXCEEDED", error
        assert 3500 < error["retry_after"] <= 3600, error
        if "status" in error:  # over HTTP
            assert error["status"] == 429 and error["header"] is not None
            assert int(error["header"]) == round(error["retry_after"])
    # Both transports and both instances got admissions and refusals alike.
    assert len({e.get("status") for e in errors}) == 2  # 429 over HTTP, None over WS

    body = await same_state(http, pg_pair, room, user=DJ, role=Role.DJ)
    state = body["state"]
    assert body["seq"] == 12
    assert {r["id"] for r in state["requests"]} == ids
    assert [r["id"] for r in state["pending"]] == sorted(ids, key=lambda i: int(i[1:]))
    assert state["counters"]["requests_last_hour"] == 10
    winners = {r["user"] for r in state["requests"]}
    assert len(winners) == 10
    # One more after the race: still refused, on either instance.
    late = await post_command(http, pg_pair[1], room, "request.submit", song("late"),
                              user="cap-late")
    assert late.status_code == 429 and late.json()["error"]["code"] == "CAPACITY_EXCEEDED"
    for g in guests:
        await g.close()


async def test_same_command_id_on_both_instances_at_once_runs_once(
    pg_pair: tuple[Server, Server], http: httpx.AsyncClient,
) -> None:
    room = unique_room("queue")
    a, b = pg_pair
    rounds = 6
    # Rounds alternate: WebSocket on A + HTTP on B, then HTTP on both.
    users = [f"twice-{i}" for i in range(rounds)]
    sockets = await asyncio.gather(*(open_client(a.ws_url, user=u) for u in users[::2]))
    results = []
    for i, user in enumerate(users):
        ident = f"submit-{i}-{secrets.token_hex(3)}"
        guest = Guest(user, a, http, sockets[i // 2] if i % 2 == 0 else None)
        results.append(await asyncio.gather(
            guest.command(room, "request.submit", song(i), ident=ident),
            guest.command(room, "request.submit", song(i), ident=ident, srv=b)))

    seen_ids = set()
    for first, second in results:
        assert first["type"] == second["type"] == "ack", (first, second)
        assert sorted([first["duplicate"], second["duplicate"]]) == [False, True]
        assert first["result"] == second["result"]
        assert (first["seqs"], first["seq"], first["epoch"]) == (
            second["seqs"], second["seq"], second["epoch"])
        assert len(first["seqs"]) == 1
        seen_ids.add(first["result"]["request_id"])
    assert len(seen_ids) == rounds

    state = (await same_state(http, pg_pair, room, user="admin", role=Role.ADMIN))["state"]
    assert sorted((r["id"], r["user"]) for r in state["requests"]) == sorted(
        (r[0]["result"]["request_id"], user) for r, user in zip(results, users, strict=True))
    # A retry long after (another instance than the one that stored it) is a duplicate too.
    retry = answer(await post_command(http, a, room, "request.submit", song(1),
                                      user=users[1], ident=results[1][0]["id"]))
    assert retry == results[1][0] | {"duplicate": True}
    for ws in sockets:
        await ws.close()


async def test_concurrent_votes_across_instances_count_once_per_guest(
    pg_pair: tuple[Server, Server], http: httpx.AsyncClient,
) -> None:
    room = unique_room("queue")
    a, b = pg_pair
    submitted = answer(await post_command(http, a, room, "request.submit", song("hit"),
                                          user="vote-owner"))
    rid = submitted["result"]["request_id"]
    guests = await crowd("voter-", 30, pg_pair, http)

    # Every guest votes twice at the same moment, with two different command ids:
    # once on its own instance (its WebSocket or HTTP), once over HTTP on the other.
    def other(g: Guest) -> Server:
        return b if g.srv is a else a

    answers = await asyncio.gather(*(
        call for g in guests for call in (
            g.command(room, "request.vote", {"request_id": rid}),
            g.command(room, "request.vote", {"request_id": rid}, srv=other(g)))))
    per_guest = [answers[i:i + 2] for i in range(0, len(answers), 2)]
    counted = []
    for g, pair in zip(guests, per_guest, strict=True):
        kinds = sorted(r["type"] for r in pair)
        assert kinds == ["ack", "error"], (g.user, pair)
        ok = next(r for r in pair if r["type"] == "ack")
        refused = next(r for r in pair if r["type"] == "error")
        assert refused["code"] == "CONFLICT", refused
        assert refused.get("status", 409) == 409
        counted.append(ok["result"]["votes"])
    # Each vote was decided on the state the previous one left: counts 1..30, once each.
    assert sorted(counted) == list(range(1, 31))

    state = (await same_state(http, pg_pair, room, user=DJ, role=Role.DJ))["state"]
    [request] = state["requests"]
    assert (request["id"], request["votes"]) == (rid, 30)
    assert request["voters"] == sorted(g.user for g in guests)
    assert state["pending"][0]["votes"] == 30
    # And a guest's own view says it voted.
    mine = (await get_state(http, b, room, user=guests[0].user))["state"]
    assert mine["pending"][0]["voted"] is True

    # Voting a third time, later: still CONFLICT; unvote then works once.
    again = await guests[3].command(room, "request.vote", {"request_id": rid})
    assert again["type"] == "error" and again["code"] == "CONFLICT"
    undo = await guests[3].command(room, "request.unvote", {"request_id": rid})
    assert undo["type"] == "ack" and undo["result"]["votes"] == 29
    for g in guests:
        await g.close()


async def test_an_instance_whose_cached_state_fell_behind_the_trim_rebuilds_it(
    make_server: MakeServer, pg_migrated: str, http: httpx.AsyncClient,
) -> None:
    """Instance A caches the room's state; B moves the room on so far that retention
    trims past A's cached seq. A must not fold the kept tail onto its stale state."""
    a, b = await asyncio.gather(*(
        make_server(pg_migrated, retention_max_messages=50, snapshot_every=20)
        for _ in range(2)))
    room = unique_room("queue")
    await dj(http, a, room, "queue.settings", {"max_active_per_guest": 50, "submit_rate": 60})
    ids = [(await dj(http, a, room, "request.submit", song(i)))["result"]["request_id"]
           for i in range(8)]
    await dj(http, a, room, "request.batch", {"action": "accept", "request_ids": ids})
    cached = await get_state(http, a, room, user=DJ, role=Role.DJ)  # A holds seq 18

    desk = await open_client(b.ws_url, user=DJ, role=Role.DJ)
    assert (await desk.command(room, "queue.settings", {"voting": False}))["seqs"] == [19]
    queue = list(ids)
    for _ in range(80):  # on B, one commit each: snapshots come due, retention trims
        ack = await desk.command(room, "queue.reorder", {"request_id": queue[2], "position": 1})
        assert ack["type"] == "ack", ack
        queue.insert(0, queue.pop(2))
    await desk.close()
    info = (await http.get(f"{b.base}/v1/rooms/{room}", headers=bearer(DJ, Role.DJ))).json()
    assert info["head"] == 99 and info["trimmed"] > cached["seq"] + 1

    on_b = await get_state(http, b, room, user=DJ, role=Role.DJ)
    on_a = await get_state(http, a, room, user=DJ, role=Role.DJ)
    assert [r["id"] for r in on_b["state"]["queue"]] == queue
    assert on_b["state"]["settings"]["voting"] is False
    assert on_a == on_b
    # And A decides on the right state: moving the third to the top is one more event.
    moved = await dj(http, a, room, "queue.reorder", {"request_id": queue[2], "position": 1})
    assert moved["seqs"] == [100]
