"""One client's bad item never fails anyone else's write (issue 10, section 2).

Writes to a room are committed in batches, one transaction each. On PostgreSQL
a publish or command ``id`` holding a NUL failed its batch's transaction: one
guest with 10 connections made 200 of 200 publishes of another guest and 50 of
50 of the DJ's commands fail with UNAVAILABLE. A ``ticket.create`` with an
``internal`` nested deeper than the encoder goes, msgpack byte-string keys in
``args`` and NaN in ``data`` were the same kind of hole. Everything is refused
at the edge now, with a code, and the healthy client beside the attacker loses
nothing. On both engines.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from roomlog.identity import Role
from tests.e2e.support import (
    MSGPACK,
    Server,
    WsClient,
    bearer,
    issue_token,
    open_client,
    post_command,
    unique_room,
)


@pytest.fixture(params=["sqlite", "postgres"])
def srv(request: pytest.FixtureRequest) -> Server:
    server: Server = request.getfixturevalue("server" if request.param == "sqlite"
                                             else "pg_server")
    return server


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"k": value}
    return value


async def _bad_frames(attacker: WsClient, n: int) -> list[dict[str, Any]]:
    return [await attacker.expect("error") for _ in range(n)]


async def test_nul_ids_of_one_guest_fail_no_publish_of_another(srv: Server) -> None:
    room = unique_room()
    victim = await open_client(srv.ws_url, user="victim")
    attackers = [await open_client(srv.ws_url, user="mallory") for _ in range(10)]
    for i, attacker in enumerate(attackers):  # queued in the batches the victim's go in
        for j in range(10):
            await attacker.send({"type": "publish", "room": room, "id": f"m\x00{i}-{j}",
                                 "data": {"from": "mallory"}})
    acks = await victim.publish_many(room, [{"n": n} for n in range(200)])
    assert [a["seq"] for a in acks] == list(range(1, 201))
    for attacker in attackers:
        errors = await _bad_frames(attacker, 10)
        assert {e["code"] for e in errors} == {"BAD_FRAME"}, errors
        assert (await attacker.ping())["type"] == "pong"  # theirs stays usable
    for client in (victim, *attackers):
        await client.close()


async def test_nul_ids_of_one_guest_fail_no_command_of_the_dj(srv: Server) -> None:
    room = unique_room("queue")
    dj = await open_client(srv.ws_url, user="dj1", role=Role.DJ)
    attackers = [await open_client(srv.ws_url, user="mallory") for _ in range(10)]
    for i, attacker in enumerate(attackers):
        for j in range(5):
            await attacker.send_command(room, "request.submit", {
                "song_id": f"s{i}-{j}", "title": "T", "artist": "A"}, ident=f"x\x00{i}-{j}")
    idents = [await dj.send_command(room, "queue.settings", {"request_cap_per_hour": 100 + n})
              for n in range(50)]
    replies = [await dj.reply(ident) for ident in idents]
    assert [r["type"] for r in replies] == ["ack"] * 50, [r for r in replies
                                                         if r["type"] != "ack"][:3]
    for attacker in attackers:
        errors = await _bad_frames(attacker, 5)
        assert {e["code"] for e in errors} == {"BAD_FRAME"}, errors
    for client in (dj, *attackers):
        await client.close()


async def test_args_the_encoder_cannot_store_are_invalid_args(srv: Server,
                                                             http: httpx.AsyncClient) -> None:
    room = unique_room("repair")
    args = {"customer_id": "c1", "device": "Phone", "problem": "Cracked",
            "technicians": [], "internal": nested(300)}  # fits in 8 KiB, 300 levels deep
    reply = await post_command(http, srv, room, "ticket.create", args, user="adm",
                               role=Role.ADMIN)
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "INVALID_ARGS", \
        reply.text
    # The room took nothing and works: the same ticket, less deep, is created.
    args["internal"] = nested(10)
    reply = await post_command(http, srv, room, "ticket.create", args, user="adm",
                               role=Role.ADMIN)
    assert reply.status_code == 200, reply.text
    assert reply.json()["seq"] == 1
    # msgpack byte-string keys and NaN in args: INVALID_ARGS (byte keys were INTERNAL).
    client = await open_client(srv.ws_url, fmt=MSGPACK, user="g1")
    queue = unique_room("queue")
    for bad in ({b"song_id": "s", "title": "T", "artist": "A"},
                {"song_id": "s", "title": "T", "artist": "A", "note": float("nan")}):
        answer = await client.command(queue, "request.submit", bad)
        assert (answer["type"], answer["code"]) == ("error", "INVALID_ARGS"), answer
    ok = await client.command(queue, "request.submit", {"song_id": "s", "title": "T",
                                                       "artist": "A"})
    assert ok["type"] == "ack" and ok["seq"] == 1, ok
    await client.close()


async def test_nan_and_infinity_in_data_are_refused_not_stored_as_null(srv: Server) -> None:
    room = unique_room()
    client = await open_client(srv.ws_url, fmt=MSGPACK, user="g1")
    await client.subscribe(room)
    for value in (float("nan"), float("inf"), -float("inf")):
        ident = client.next_id()
        await client.send({"type": "publish", "room": room, "id": ident, "data": {"v": value}})
        error = await client.expect("error", id=ident)
        assert error["code"] == "BAD_FRAME" and "NaN" in error["message"], error
    ack = await client.publish(room, {"v": 1.5})
    assert ack["seq"] == 1  # nothing was stored before it
    (message,) = await client.messages(room, 1)
    assert message["data"] == {"v": 1.5}
    await client.close()


async def test_a_token_whose_user_id_no_column_stores_is_refused(
        srv: Server, http: httpx.AsyncClient) -> None:
    token = issue_token("mallory\x00", Role.GUEST)
    client = await open_client(srv.ws_url, connect_frame=False)
    await client.send({"type": "connect", "token": token})
    assert (await client.expect("error"))["code"] == "UNAUTHORIZED"
    await client.close()
    reply = await http.post(f"{srv.base}/v1/rooms/{unique_room()}/messages",
                            json={"id": "p1", "data": 1},
                            headers={"authorization": f"Bearer {token}"})
    assert reply.status_code == 401, reply.text
    # Neither does it fail anyone else's publish over HTTP.
    replies = await asyncio.gather(*(http.post(
        f"{srv.base}/v1/rooms/{unique_room()}/messages", json={"id": f"p{n}", "data": n},
        headers=bearer("healthy")) for n in range(20)))
    assert [r.status_code for r in replies] == [201] * 20


async def test_http_ids_and_data_are_checked_like_websocket_ones(
        srv: Server, http: httpx.AsyncClient) -> None:
    room = unique_room()
    for body in ({"id": "nul\x00", "data": 1}, {"id": "ok", "data": nested(65)}):
        reply = await http.post(f"{srv.base}/v1/rooms/{room}/messages", json=body,
                                headers=bearer("u1"))
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "BAD_FRAME", \
            reply.text
    reply = await http.post(f"{srv.base}/v1/rooms/{room}/messages",
                            json={"id": "ok", "data": nested(64)}, headers=bearer("u1"))
    assert reply.status_code == 201 and reply.json()["seq"] == 1, reply.text
