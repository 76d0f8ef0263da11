"""Queue rooms over HTTP: ``POST /v1/rooms/{room}/commands`` statuses and bodies,
``GET .../state`` and ``GET .../analytics`` (JSON and CSV), against a real server.

Each coded error has its HTTP status (403, 409, 429 with ``Retry-After``, 400)
and the same ``{"error": {code, message, retry_after?, details?}}`` body; a
successful command answers 200 with the same ``ack`` a WebSocket client gets.
"""

from __future__ import annotations

import csv
import io
import secrets
from typing import Any

import httpx

from roomlog.identity import Role
from tests.e2e.support import Server, bearer, get_state, open_client, post_command, unique_room


def song(n: int | str) -> dict[str, str]:
    return {"song_id": f"song-{n}", "title": f"Title {n}", "artist": f"Artist {n}"}


def users(*names: str) -> list[str]:
    """Fresh user ids: the shared server keeps per-user rate buckets across tests."""
    tag = secrets.token_hex(3)
    return [f"{name}-{tag}" for name in names]


def error_of(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, (reply.status_code, reply.text)
    body = reply.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


async def test_command_statuses_over_http(server: Server, http: httpx.AsyncClient) -> None:
    room = unique_room("queue")
    dj, guest, other = users("dj", "guest", "other")

    # 200 with the ack shape, the same as a WebSocket ack.
    ok = await post_command(http, server, room, "request.submit", song(1), user=guest,
                            ident="first")
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("application/json")
    ack = ok.json()
    assert ack == {"type": "ack", "id": "first", "room": room, "epoch": ack["epoch"],
                   "seq": 1, "seqs": [1], "result": {"request_id": "r1", "position": 1},
                   "duplicate": False}
    retried = await post_command(http, server, room, "request.submit", song(1), user=guest,
                                 ident="first")
    assert retried.status_code == 200 and retried.json() == ack | {"duplicate": True}
    ws = await open_client(server.ws_url, user=guest)
    assert await ws.command(room, "request.submit", song(1), ident="first") == ack | {
        "duplicate": True}
    await ws.close()

    # 403: a guest may not run DJ commands.
    denied = await post_command(http, server, room, "request.accept", {"request_id": "r1"},
                                user=other)
    error_of(denied, 403, "FORBIDDEN")

    # 409 DUPLICATE_REQUEST naming the existing request.
    dup = await post_command(http, server, room, "request.submit", song(1), user=guest)
    details = error_of(dup, 409, "DUPLICATE_REQUEST")["details"]
    assert details == {"request_id": "r1", "status": "pending"}

    # 400 INVALID_ARGS: a missing argument, an unknown one, a bad type.
    for args in ({"song_id": "x", "title": "t"}, {**song(2), "colour": "red"},
                 {**song(2), "title": 7}):
        bad = await post_command(http, server, room, "request.submit", args, user=other)
        error_of(bad, 400, "INVALID_ARGS")
    # 400 UNKNOWN_COMMAND, in a queue room and in a room that takes no commands at all.
    error_of(await post_command(http, server, room, "request.dance", {}, user=other),
             400, "UNKNOWN_COMMAND")
    chat = unique_room("chat")
    error_of(await post_command(http, server, chat, "request.submit", song(1), user=other),
             400, "UNKNOWN_COMMAND")

    # 409 CONFLICT: expected_seq no longer holds; the current one passes.
    head = (await get_state(http, server, room, user=dj, role=Role.DJ))["seq"]
    assert head == 1  # nothing refused above stored anything
    stale = await post_command(http, server, room, "queue.settings", {"submit_rate": 1},
                               user=dj, role=Role.DJ, expected_seq=head - 1)
    assert "seq 1" in error_of(stale, 409, "CONFLICT")["message"]
    fresh = await post_command(http, server, room, "queue.settings",
                               {"submit_rate": 1, "request_cap_per_hour": 3},
                               user=dj, role=Role.DJ, expected_seq=head)
    assert fresh.status_code == 200 and fresh.json()["seqs"] == [2, 3]  # created, changed

    # 429 RATE_LIMITED (the guest's minute) with Retry-After.
    limited = await post_command(http, server, room, "request.submit", song(2), user=guest)
    error = error_of(limited, 429, "RATE_LIMITED")
    assert 0 < error["retry_after"] <= 60
    assert limited.headers["retry-after"] == str(max(1, round(error["retry_after"])))

    # 429 CAPACITY_EXCEEDED (the room's hour) with Retry-After.
    for i, user in enumerate(users("g1", "g2"), 3):
        assert (await post_command(http, server, room, "request.submit", song(i),
                                   user=user)).status_code == 200
    full = await post_command(http, server, room, "request.submit", song(9), user=other)
    error = error_of(full, 429, "CAPACITY_EXCEEDED")
    assert 3500 < error["retry_after"] <= 3600
    assert full.headers["retry-after"] == str(max(1, round(error["retry_after"])))

    # Another DJ may not take over a claimed room.
    [rival] = users("rival")
    error_of(await post_command(http, server, room, "queue.close", {}, user=rival,
                                role=Role.DJ), 403, "FORBIDDEN")
    # Not a transition the request can make: 409 INVALID_TRANSITION; no such request: 404.
    assert (await post_command(http, server, room, "request.veto", {"request_id": "r1"},
                               user=dj, role=Role.DJ)).status_code == 200
    error_of(await post_command(http, server, room, "request.accept", {"request_id": "r1"},
                                user=dj, role=Role.DJ), 409, "INVALID_TRANSITION")
    error_of(await post_command(http, server, room, "request.accept", {"request_id": "r99"},
                                user=dj, role=Role.DJ), 404, "NOT_FOUND")
    # No token at all: 401.
    anonymous = await http.post(f"{server.base}/v1/rooms/{room}/commands",
                                json={"name": "queue.open", "args": {}, "id": "x"})
    error_of(anonymous, 401, "UNAUTHORIZED")


async def test_state_endpoint_shows_each_viewer_its_view(
    server: Server, http: httpx.AsyncClient,
) -> None:
    room = unique_room("queue")
    dj, guest, fan = users("dj", "guest", "fan")
    await post_command(http, server, room, "request.submit", song(1), user=guest)
    await post_command(http, server, room, "request.vote", {"request_id": "r1"}, user=fan)

    as_guest = await get_state(http, server, room, user=guest)
    assert (as_guest["room"], as_guest["seq"]) == (room, 2)
    state = as_guest["state"]
    assert "requests" not in state  # only staff see every request with its voters
    assert [(r["id"], r["votes"], r["voted"]) for r in state["pending"]] == [("r1", 1, False)]
    assert [r["id"] for r in state["mine"]] == ["r1"]
    assert (state["owner"], state["dj"], state["open"]) == (None, False, True)

    as_fan = (await get_state(http, server, room, user=fan))["state"]
    assert (as_fan["pending"][0]["voted"], as_fan["mine"]) == (True, [])
    as_dj = (await get_state(http, server, room, user=dj, role=Role.DJ))["state"]
    assert as_dj["dj"] is True and as_dj["requests"][0]["voters"] == [fan]

    chat = await http.get(f"{server.base}/v1/rooms/{unique_room('chat')}/state",
                          headers=bearer(guest))
    error_of(chat, 404, "NOT_FOUND")


async def test_analytics_of_a_small_session(server: Server, http: httpx.AsyncClient) -> None:
    room = unique_room("queue")
    dj, g1, g2, g3, g4, fan = users("dj", "g1", "g2", "g3", "g4", "fan")

    async def run(name: str, args: dict[str, Any], user: str = dj,
                  role: Role = Role.DJ) -> dict[str, Any]:
        reply = await post_command(http, server, room, name, args, user=user, role=role)
        assert reply.status_code == 200, reply.text
        return reply.json()["result"]  # type: ignore[no-any-return]

    await run("queue.open", {})  # claims the room
    ids = [(await run("request.submit", song(n), user=g, role=Role.GUEST))["request_id"]
           for n, g in [("a", g1), ("b", g2), ("a", g3), ("c", g4)]]
    await run("request.vote", {"request_id": ids[0]}, user=fan, role=Role.GUEST)
    await run("request.vote", {"request_id": ids[2]}, user=fan, role=Role.GUEST)
    await run("request.accept", {"request_id": ids[0]})
    await run("request.accept", {"request_id": ids[1]})
    await run("request.veto", {"request_id": ids[2], "reason": "played already"})
    await run("request.play", {"request_id": ids[0]})

    url = f"{server.base}/v1/rooms/{room}/analytics"
    reply = await http.get(url, headers=bearer(dj, Role.DJ))
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    report = reply.json()
    assert report["room"] == room
    assert (report["requests"], report["accepted"], report["vetoed"], report["decided"]) == (
        4, 2, 1, 3)
    assert report["acceptance_rate"] == round(2 / 3, 4)
    assert report["waits_counted"] == 1 and report["median_wait_ms"] >= 0
    assert report["by_status"] == {"pending": 1, "accepted": 1, "playing": 1, "played": 0,
                                   "vetoed": 1, "cancelled": 0}
    assert sum(h["requests"] for h in report["requests_per_hour"]) == 4
    assert report["top_songs"][0] == {"song_id": "song-a", "title": "Title a",
                                      "artist": "Artist a", "requests": 2, "votes": 2}
    assert sorted(g["user"] for g in report["top_guests"]) == sorted([g1, g2, g3, g4])
    assert report["veto_reasons"] == [{"reason": "played already", "vetoed": 1}]
    assert report["votes"] == 2 and report["top_artists"][0]["artist"] == "Artist a"
    assert [s["requests"] for s in report["sets"]] == [4]
    assert report["payments"] == {"requests": {"paid": 0, "free": 4}, "currencies": {}}
    # The hour-of-day chart reads in the reader's clock: tz shifts it, nothing else.
    shifted = (await http.get(url, params={"tz": "-180"}, headers=bearer(dj, Role.DJ))).json()
    hours = report["requests_by_hour_of_day"]
    assert shifted["requests_by_hour_of_day"] == hours[3:] + hours[:3]  # 3 h west
    assert shifted["requests"] == report["requests"]

    # A range that ends before the session saw nothing.
    empty = (await http.get(url, params={"to": 1}, headers=bearer(dj, Role.DJ))).json()
    assert (empty["requests"], empty["decided"], empty["acceptance_rate"]) == (0, 0, None)

    as_csv = await http.get(url, params={"format": "csv"}, headers=bearer("ops", Role.ADMIN))
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    summary = {r["key"]: r["value"] for r in rows if r["section"] == "summary"}
    assert (summary["requests"], summary["accepted"], summary["vetoed"]) == ("4", "2", "1")
    statuses = {r["key"]: int(r["requests"]) for r in rows if r["section"] == "status"}
    assert statuses == report["by_status"]
    assert [r["key"] for r in rows if r["section"] == "top_song"] == [
        "song-a", "song-b", "song-c"]

    error_of(await http.get(url, headers=bearer(g1)), 403, "FORBIDDEN")
    error_of(await http.get(url, params={"format": "csv"}, headers=bearer(g1)), 403,
             "FORBIDDEN")
    error_of(await http.get(f"{server.base}/v1/rooms/{unique_room('chat')}/analytics",
                            headers=bearer(dj, Role.DJ)), 404, "NOT_FOUND")
    # Only the room's own DJ and operators: not another DJ, not other staff.
    error_of(await http.get(url, headers=bearer("another-dj", Role.DJ)), 403, "FORBIDDEN")
    error_of(await http.get(url, headers=bearer("tech", Role.TECHNICIAN)), 403, "FORBIDDEN")
    assert (await http.get(url, headers=bearer("boss", Role.ADMIN))).status_code == 200
