"""The operator's console over HTTP, against a real server (issue 16, "The console").

* Time travel: ``GET /v1/rooms/{room}/state?at=&as=`` folds a ticket's log up to
  any seq, as staff and as the customer (who never gets an internal marker), with
  the event that made it; only operators may travel; a seq beyond the head is
  NOT_FOUND; the plain state endpoint is unchanged.
* Rooms: search by name and kind, one room in detail (what a reset loses), its
  log paged with filters.
* Moderation: bans, lifting, disconnects, resets (with their confirmation) and
  closing a queue are each recorded in ``audit:moderation`` with who did it;
  nobody but operators reads that room, nobody publishes in it.
* The overview lists this instance with its figures.
* Over a log retention trimmed, time travel folds from the room's snapshot; seqs
  before it are NOT_FOUND, saying which is the oldest state kept.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx

from roomlog.identity import Role
from tests.e2e.conftest import MakeServer
from tests.e2e.support import Server, bearer, open_client, post_command, unique_room

ADMIN = bearer("root", Role.ADMIN)
MARKER = "SECRET-MARKER-16"


async def command(http: httpx.AsyncClient, srv: Server, room: str, name: str,
                  args: dict[str, Any], user: str, role: Role) -> dict[str, Any]:
    reply = await post_command(http, srv, room, name, args, user=user, role=role)
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


async def travel(http: httpx.AsyncClient, srv: Server, room: str, at: int,
                 audience: str, headers: dict[str, str] = ADMIN) -> httpx.Response:
    return await http.get(f"{srv.base}/v1/rooms/{room}/state",
                          params={"at": at, "as": audience}, headers=headers)


async def ticket(http: httpx.AsyncClient, srv: Server) -> str:
    """A ticket of customer carl worked by tina: 1 created (internal), 2 diagnosing,
    3 an internal note, 4 on hold (internal reason), 5 back to diagnosing."""
    room = f"repair:c-{secrets.token_hex(4)}"
    tina = ("tina", Role.TECHNICIAN)
    await command(http, srv, room, "ticket.create", {
        "customer_id": "carl", "device": "phone", "problem": "screen",
        "technicians": ["tina"], "internal": {"supplier": MARKER}}, *tina)
    await command(http, srv, room, "status.set", {"status": "diagnosing"}, *tina)
    await command(http, srv, room, "note.add", {"text": MARKER, "visibility": "internal"}, *tina)
    await command(http, srv, room, "status.set", {
        "status": "on_hold", "reason": "waiting for a part", "internal_reason": MARKER}, *tina)
    await command(http, srv, room, "status.set", {"status": "diagnosing"}, *tina)
    return room


async def test_time_travel_shows_each_audience_the_state_at_a_seq(
        http: httpx.AsyncClient, server: Server) -> None:
    room = await ticket(http, server)
    for at, status in ((1, "received"), (4, "on_hold"), (5, "diagnosing")):
        customer = await travel(http, server, room, at, "customer")
        assert customer.status_code == 200, customer.text
        body = customer.json()
        assert body["seq"] == at and body["state"]["status"] == status
        assert body["viewer"] == "carl" and MARKER not in customer.text
        staff = (await travel(http, server, room, at, "technician")).json()
        assert staff["viewer"] == "tina" and staff["state"]["status"] == status
        assert MARKER in json.dumps(staff["state"])
        assert staff["event"]["seq"] == at and staff["event"]["by"] == "tina"
    held = (await travel(http, server, room, 4, "technician")).json()
    assert held["event"]["data"]["internal_reason"] == MARKER
    hidden = (await travel(http, server, room, 3, "customer")).json()
    assert hidden["event"]["type"] == "note.added" and hidden["event"]["data"] is None


async def test_time_travel_is_for_operators_and_known_seqs(
        http: httpx.AsyncClient, server: Server) -> None:
    room = await ticket(http, server)
    as_tech = await travel(http, server, room, 2, "customer", bearer("tina", Role.TECHNICIAN))
    assert as_tech.status_code == 403 and as_tech.json()["error"]["code"] == "FORBIDDEN"
    beyond = await travel(http, server, room, 6, "admin")
    assert beyond.status_code == 404 and beyond.json()["error"]["details"] == {"head": 5}
    wrong = await travel(http, server, room, 2, "guest")
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "INVALID_ARGS"
    bad = await travel(http, server, room, -1, "admin")
    assert bad.status_code == 400
    head = await http.get(f"{server.base}/v1/rooms/{room}/state", params={"as": "customer"},
                          headers=ADMIN)
    assert head.json()["seq"] == 5 and MARKER not in head.text
    plain = await http.get(f"{server.base}/v1/rooms/{room}/state",
                           headers=bearer("carl", Role.CUSTOMER))
    assert plain.status_code == 200 and plain.json()["seq"] == 5 and MARKER not in plain.text


async def test_rooms_are_found_by_name_and_kind_and_their_log_is_paged(
        http: httpx.AsyncClient, server: Server) -> None:
    tag = secrets.token_hex(4)
    for name in (f"chat:find-{tag}-a", f"chat:find-{tag}-b", f"feed:find-{tag}"):
        for i in range(3):
            reply = await http.post(f"{server.base}/v1/rooms/{name}/messages",
                                    json={"data": {"n": i, "text": f"hello {i}"},
                                          "id": secrets.token_hex(6)},
                                    headers=bearer(f"user{i}", Role.ADMIN))
            assert reply.status_code == 201, reply.text
    found = (await http.get(f"{server.base}/v1/admin/rooms", params={"q": f"FIND-{tag}"},
                            headers=ADMIN)).json()
    assert [r["room"] for r in found["rooms"]] == [f"chat:find-{tag}-a", f"chat:find-{tag}-b",
                                                   f"feed:find-{tag}"]
    assert found["rooms"][0]["head"] == 3 and found["rooms"][0]["trimmed"] == 0
    chats = (await http.get(f"{server.base}/v1/admin/rooms",
                            params={"q": tag, "kind": "chat", "limit": 1},
                            headers=ADMIN)).json()
    assert [r["room"] for r in chats["rooms"]] == [f"chat:find-{tag}-a"]
    more = (await http.get(f"{server.base}/v1/admin/rooms",
                           params={"q": tag, "kind": "chat", "after": chats["next"]},
                           headers=ADMIN)).json()
    assert [r["room"] for r in more["rooms"]] == [f"chat:find-{tag}-b"]
    wildcard = (await http.get(f"{server.base}/v1/admin/rooms", params={"q": "%"},
                               headers=ADMIN)).json()
    assert wildcard["rooms"] == []  # a LIKE wildcard is a plain character

    room = f"chat:find-{tag}-a"
    detail = (await http.get(f"{server.base}/v1/admin/rooms/{room}", headers=ADMIN)).json()
    assert detail["reset_loses"]["messages"] == 3 and detail["retention"]["max_messages"] > 0
    page = (await http.get(f"{server.base}/v1/admin/rooms/{room}/log", params={"limit": 2},
                           headers=ADMIN)).json()
    assert [m["seq"] for m in page["messages"]] == [2, 3] and page["prev"] == 0
    assert page["next"] is None
    first = (await http.get(f"{server.base}/v1/admin/rooms/{room}/log",
                            params={"after": 0, "limit": 2}, headers=ADMIN)).json()
    assert [m["seq"] for m in first["messages"]] == [1, 2] and first["next"] == 2
    by = (await http.get(f"{server.base}/v1/admin/rooms/{room}/log",
                         params={"by": "user1"}, headers=ADMIN)).json()
    assert [m["seq"] for m in by["messages"]] == [2]
    text = (await http.get(f"{server.base}/v1/admin/rooms/{room}/log",
                           params={"text": "HELLO 2"}, headers=ADMIN)).json()
    assert [m["data"]["n"] for m in text["messages"]] == [2]

    for path in ("/v1/admin/rooms", f"/v1/admin/rooms/{room}", f"/v1/admin/rooms/{room}/log",
                 "/v1/admin/instances"):
        refused = await http.get(server.base + path, headers=bearer("dave", Role.DJ))
        assert refused.status_code == 403, path
    never = await http.get(f"{server.base}/v1/admin/rooms/chat:never-{tag}", headers=ADMIN)
    assert never.status_code == 404


async def audit_entries(http: httpx.AsyncClient, srv: Server) -> list[dict[str, Any]]:
    reply = await http.get(f"{srv.base}/v1/admin/rooms/audit:moderation/log",
                           params={"after": 0, "limit": 200}, headers=ADMIN)
    assert reply.status_code == 200, reply.text
    return [m["data"] | {"author": m["by"]} for m in reply.json()["messages"]]


async def test_every_moderation_action_is_audited(
        http: httpx.AsyncClient, server: Server) -> None:
    user = f"mallory-{secrets.token_hex(3)}"
    made = await http.post(f"{server.base}/v1/admin/bans",
                           json={"user": user, "reason": "spam"}, headers=ADMIN)
    assert made.status_code == 201 and made.json()["audit_seq"] >= 1
    ban_id = made.json()["ban"]["id"]
    lifted = await http.delete(f"{server.base}/v1/admin/bans/{ban_id}", headers=ADMIN)
    again = await http.delete(f"{server.base}/v1/admin/bans/{ban_id}", headers=ADMIN)
    assert lifted.json()["audit_seq"] is not None and again.json()["audit_seq"] is None
    gone = await http.post(f"{server.base}/v1/admin/disconnect",
                           json={"user": user, "reason": "calm down"}, headers=ADMIN)
    assert gone.status_code == 200

    room = unique_room()
    await http.post(f"{server.base}/v1/rooms/{room}/messages", json={"data": 1, "id": "m1"},
                    headers=ADMIN)
    unconfirmed = await http.post(f"{server.base}/v1/admin/rooms/{room}/reset",
                                  json={"confirm": "chat:other"}, headers=ADMIN)
    assert unconfirmed.status_code == 400
    assert unconfirmed.json()["error"]["code"] == "INVALID_ARGS"
    reset = await http.post(f"{server.base}/v1/admin/rooms/{room}/reset",
                            json={"confirm": room, "reason": "cleanup"}, headers=ADMIN)
    assert reset.status_code == 200 and reset.json()["dropped"] == 1

    queue = unique_room("queue")
    closed = await http.post(f"{server.base}/v1/admin/rooms/{queue}/close",
                             json={"reason": "too loud"}, headers=ADMIN)
    assert closed.status_code == 200 and closed.json()["changed"] is True
    state = await http.get(f"{server.base}/v1/rooms/{queue}/state", headers=ADMIN)
    assert state.json()["state"]["open"] is False
    not_queue = await http.post(f"{server.base}/v1/admin/rooms/{room}/close", json={},
                                headers=ADMIN)
    assert not_queue.status_code == 404

    mine = [e for e in await audit_entries(http, server)
            if e["target"].get("user") == user or e["target"].get("room") in (room, queue)]
    assert [e["action"] for e in mine] == ["ban", "unban", "disconnect", "reset",
                                           "close_queue"]
    assert all(e["by"] == {"user": "root", "role": "admin"} and e["author"] == "root"
               for e in mine)
    assert mine[0]["reason"] == "spam" and mine[3]["details"]["dropped"] == 1
    assert mine[4]["reason"] == "too loud"

    for wipe in (http.delete(f"{server.base}/v1/rooms/audit:moderation", headers=ADMIN),
                 http.post(f"{server.base}/v1/admin/rooms/audit:moderation/reset",
                           json={"confirm": "audit:moderation"}, headers=ADMIN)):
        refused = await wipe
        assert refused.status_code == 403, refused.text  # the record is not wiped

    guest = bearer("gina", Role.GUEST)
    read = await http.get(f"{server.base}/v1/rooms/audit:moderation/messages", headers=guest)
    assert read.status_code == 403
    write = await http.post(f"{server.base}/v1/rooms/audit:moderation/messages",
                            json={"data": "forged"}, headers=ADMIN)
    assert write.status_code == 403
    client = await open_client(server.ws_url, user="gina", role=Role.GUEST)
    try:
        await client.send({"type": "subscribe", "room": "audit:moderation",
                           "id": client.next_id()})
        refused = await client.expect("error")
        assert refused["code"] == "FORBIDDEN"
    finally:
        await client.close()


async def test_the_overview_lists_this_instance(http: httpx.AsyncClient,
                                                server: Server) -> None:
    reply = await http.get(f"{server.base}/v1/admin/instances", headers=ADMIN)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    [here] = [i for i in body["instances"] if i["instance"] == body["here"]]
    assert set(here) >= {"connections", "rooms", "messages_in_per_s", "messages_out_per_s",
                         "bus", "database", "stale", "age_s"}
    assert here["database"]["ok"] is True and here["bus"]["kind"] == "MemoryBus"


async def test_time_travel_over_a_trimmed_log_starts_from_the_snapshot(
        http: httpx.AsyncClient, make_server: MakeServer) -> None:
    srv = await make_server(retention_max_messages=2, snapshot_every=2)
    room = await ticket(http, srv)  # 5 events: snapshots at 1, 3, 5; trimmed up to 3
    info = (await http.get(f"{srv.base}/v1/admin/rooms/{room}", headers=ADMIN)).json()
    assert (info["head"], info["snapshot_seq"]) == (5, 5) and info["trimmed"] == 3
    at_snapshot = (await travel(http, srv, room, 5, "customer")).json()
    assert at_snapshot["state"]["status"] == "diagnosing" and MARKER not in str(at_snapshot)
    assert at_snapshot["event"]["seq"] == 5  # the snapshot's own event is still kept
    gone = await travel(http, srv, room, 4, "technician")
    assert gone.status_code == 404
    assert gone.json()["error"]["details"] == {"trimmed": 3, "oldest": 5}
    before = (await travel(http, srv, room, 0, "technician")).json()
    assert before["event"] is None and before["state"]["exists"] is False


async def test_time_travel_folds_page_by_page(http: httpx.AsyncClient,
                                              make_server: MakeServer) -> None:
    srv = await make_server(max_page_size=2)  # 5 events: three pages
    room = await ticket(http, srv)
    for at, status in ((3, "diagnosing"), (4, "on_hold"), (5, "diagnosing")):
        body = (await travel(http, srv, room, at, "customer")).json()
        assert (body["seq"], body["state"]["status"]) == (at, status)
        assert body["event"]["seq"] == at and MARKER not in str(body)
    hidden = (await travel(http, srv, room, 3, "customer")).json()
    assert hidden["event"]["type"] == "note.added" and hidden["event"]["data"] is None
