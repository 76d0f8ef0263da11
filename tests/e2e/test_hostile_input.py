"""Hostile input an attacker or a broken client sends (issue 10, section 9), against
real server processes. Each gets a coded error or a documented close, never a 500,
a traceback or a silent failure; a healthy client beside the attacker loses nothing.

* Numeric query parameters of every endpoint: ``nan``, infinities, huge and
  negative numbers are ``BAD_FRAME`` (400), also under property-based fuzzing.
* A client that disconnects in the middle of its request body: no ERROR, no 500
  built for nobody; counted in ``roomlog_http_aborted``.
* Token ``exp`` claims a client crafts (a string, 1e300, 2^64, NaN, far in the
  future): ``UNAUTHORIZED``, and the connection stays usable.
* Frames before ``connect`` get their error with the frame's ``id``.
* Photos: PNG and JPEG files with HTML appended (or otherwise malformed) are
  refused; served photos carry headers that stop sniffing and scripting.
* Repair rooms do not tell a customer whether a ticket exists, nor an unassigned
  technician what status it has; a guest token with a customer's user id does not
  read that customer's repair notices.

Each test runs against SQLite (the module's ``srv``); the photo and role tests
also against PostgreSQL where storage differs (``pg_server``).
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from roomlog.identity import Role
from tests.conftest import SECRET
from tests.e2e.healthy import Bystander
from tests.e2e.support import (
    TIMEOUT,
    Server,
    bearer,
    issue_token,
    open_client,
    sse,
    unique_room,
)
from tests.images import jpeg, png, webp

MAX_UPLOAD = 8192
HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("hostile")
    server = Server(workdir, max_upload_bytes=MAX_UPLOAD, media_dir=str(workdir / "photos"))
    server.start()
    yield server
    server.stop()
    server.assert_clean_log()


@pytest.fixture
async def bystander(srv: Server) -> Any:
    healthy = await Bystander.join(srv)
    await healthy.beat()
    yield healthy
    await healthy.check()
    await healthy.close()


def error_of(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, (reply.status_code, reply.text)
    body = reply.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------
# Numeric query parameters

NOT_NUMBERS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "", " ", "0x10", "1_0",
               "9" * 5000, "½", "٣", "1e3", "--1", "+-1", "null"]
FLOATS_OUT_OF_RANGE = ["-1", "-0.5", "-1e-300"]


def numeric_params(room: str) -> list[tuple[str, dict[str, str], str]]:
    """(path, fixed params, the parameter under test) of every numeric parameter."""
    messages = f"/v1/rooms/{room}/messages"
    return [
        (messages, {}, "after"),
        (messages, {"after": "0"}, "limit"),
        (messages, {"after": "0"}, "wait"),
        (f"/v1/rooms/{room}/events", {}, "after"),
        (f"/v1/rooms/queue:{room.split(':')[1]}/analytics", {}, "from"),
        (f"/v1/rooms/queue:{room.split(':')[1]}/analytics", {}, "to"),
        (f"/v1/rooms/queue:{room.split(':')[1]}/analytics", {}, "tz"),
        ("/v1/repairs/stats", {}, "from"),
        ("/v1/repairs/stats", {}, "to"),
    ]


async def test_numeric_query_parameters_are_refused_with_bad_frame(
    srv: Server, http: httpx.AsyncClient, bystander: Bystander,
) -> None:
    room = unique_room()
    headers = bearer("admin-q", Role.ADMIN)
    for path, fixed, name in numeric_params(room):
        out_of_range = {"wait": FLOATS_OUT_OF_RANGE, "tz": ["-961", "961"]}.get(name, ["-1"])
        for value in NOT_NUMBERS + out_of_range:
            reply = await http.get(srv.base + path, params=fixed | {name: value},
                                   headers=headers)
            error = error_of(reply, 400, "BAD_FRAME")
            assert name in error["message"], (path, name, value, error)
        await bystander.beat()
    # Last-Event-ID is a number too.
    for value in ("nan", "1e3", "", "0x1"):
        reply = await http.get(f"{srv.base}/v1/rooms/{room}/events", headers=headers | {
            "last-event-id": value})
        error_of(reply, 400, "BAD_FRAME")
    # A wait above max_wait is capped, not refused; a fraction is fine.
    reply = await http.get(f"{srv.base}/v1/rooms/{room}/messages",
                           params={"after": "0", "wait": "0.01"}, headers=headers)
    assert reply.status_code == 200 and reply.json()["frames"] == []


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(params=st.dictionaries(
    st.sampled_from(["after", "limit", "wait", "epoch", "from", "to", "tz", "format", "token"]),
    st.one_of(st.text(max_size=30), st.integers().map(str),
              st.floats(allow_nan=True, allow_infinity=True).map(repr)),
    max_size=4))
@example(params={"wait": "nan", "after": "0"})  # a 500 and a traceback before the fix
@example(params={"after": "1e999", "limit": "nan"})
def test_fuzzed_query_parameters_never_give_a_500(srv: Server, params: dict[str, str]) -> None:
    room = "chat:fuzz-q"
    headers = bearer("fuzzer", Role.ADMIN)
    with httpx.Client(timeout=TIMEOUT) as client:
        for path in (f"/v1/rooms/{room}/messages", "/v1/repairs/stats",
                     "/v1/rooms/queue:fuzz-q/analytics", "/v1/admin/bans"):
            wait = _wait_or_none(params.get("wait", ""))
            if wait is not None and wait > 0.05:  # a valid wait: do not hold the request
                params = params | {"wait": "0"}
            reply = client.get(srv.base + path, params=params, headers=headers)
            assert reply.status_code < 500, (path, params, reply.text)
            if reply.status_code >= 400:
                assert reply.json()["error"]["code"] in ("BAD_FRAME", "UNAUTHORIZED",
                                                          "NOT_FOUND"), reply.text


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6)


@pytest.mark.parametrize("on", ["sqlite", "postgres"])
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.dictionaries(
    st.sampled_from(["user", "role", "jti", "reason", "duration", "until", "extra"]),
    JSON | st.sampled_from(["guest", "customer", "fuzzed-user", "nul\x00user"]),
    max_size=5) | JSON)
@example(body={"user": "fuzzed-user", "reason": "a\x00b"})
def test_fuzzed_ban_requests_never_give_a_500(srv: Server, pg_server: Server, on: str,
                                              body: Any) -> None:
    """Whatever the body, a ban request is made (and lifted here at once) or refused
    with a coded error; never a 500 (nor a 503 from a value the database refuses)."""
    server = srv if on == "sqlite" else pg_server
    with httpx.Client(timeout=TIMEOUT) as client:
        reply = client.post(f"{server.base}/v1/admin/bans", json=body,
                            headers=bearer("fuzz-admin", Role.ADMIN))
        assert reply.status_code in (201, 400), (body, reply.text)
        if reply.status_code == 201:
            made = reply.json()["ban"]
            lifted = client.delete(f"{server.base}/v1/admin/bans/{made['id']}",
                                   headers=bearer("fuzz-admin", Role.ADMIN))
            assert lifted.json()["ban"]["status"] == "lifted"
        else:
            assert reply.json()["error"]["code"] == "BAD_FRAME", reply.text


def _wait_or_none(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------
# A body cut short


async def aborted(http: httpx.AsyncClient, srv: Server) -> int:
    reply = await http.get(f"{srv.base}/metrics")
    match = re.search(r"^roomlog_http_aborted_total (\S+)$", reply.text, re.M)
    return int(float(match[1])) if match else -1


async def send_half_a_body(srv: Server, path: str, headers: dict[str, str],
                           body: bytes, declared: int) -> None:
    """Send the request line, the headers and part of the body; then hang up."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", srv.port))
    head = [f"POST {path} HTTP/1.1", f"host: 127.0.0.1:{srv.port}",
            f"content-length: {declared}"] + [f"{k}: {v}" for k, v in headers.items()]
    await loop.sock_sendall(sock, ("\r\n".join(head) + "\r\n\r\n").encode() + body)
    sock.close()


async def test_a_client_leaving_mid_body_is_no_error(
    srv: Server, http: httpx.AsyncClient, bystander: Bystander,
) -> None:
    room = unique_room()
    before = await aborted(http, srv)
    assert before >= 0, "roomlog_http_aborted_total is not exported"
    service = bearer("backend-cut", Role.SERVICE)
    await send_half_a_body(srv, f"/v1/rooms/{room}/messages",
                           service | {"content-type": "application/json"},
                           b'{"id": "half", "data": "xxxxxxxx', 4000)
    ticket = await new_ticket(http, srv, "tech-cut", "cust-cut")
    await send_half_a_body(srv, f"/v1/rooms/{ticket}/photos",
                           bearer("tech-cut", Role.TECHNICIAN) | {"content-type": "image/png"},
                           png()[:20], 2000)
    deadline = time.monotonic() + TIMEOUT
    while await aborted(http, srv) < before + 2:
        assert time.monotonic() < deadline, "the aborted requests were not counted"
        await asyncio.sleep(0.05)
    # Nothing was stored; the server logged no error (checked at teardown too).
    reply = await http.get(f"{srv.base}/v1/rooms/{room}/messages", params={"after": 0},
                           headers=service)
    assert reply.json()["head"] == 0
    assert "ERROR" not in srv.output() and "Traceback" not in srv.output()
    await bystander.beat()


# ---------------------------------------------------------------------------
# Crafted token expiries


def crafted(**claims: Any) -> str:
    return jwt.encode({"sub": "alice", "role": "guest", **claims}, SECRET, algorithm="HS256")


NOW = int(time.time())
BAD_EXPIRIES = {
    "a string": crafted(exp=str(NOW + 600)),
    "1e300": crafted(exp=1e300),
    "2^64": crafted(exp=2**64),
    "2^63": crafted(exp=2**63),
    "NaN": crafted(exp=float("nan")),
    "infinity": crafted(exp=float("inf")),
    "a list": crafted(exp=[NOW + 600]),
    "a boolean": crafted(exp=True),
    "ten years ahead": crafted(exp=NOW + 10 * 365 * 86400),
    "a jti that is no string": crafted(exp=NOW + 600, jti=5),
}


@pytest.mark.parametrize("case", list(BAD_EXPIRIES), ids=list(BAD_EXPIRIES))
async def test_crafted_expiry_is_unauthorized_and_the_connection_stays(
    srv: Server, http: httpx.AsyncClient, case: str, bystander: Bystander,
) -> None:
    token = BAD_EXPIRIES[case]
    client = await open_client(srv.ws_url, connect_frame=False)
    await client.send({"type": "connect", "token": token, "id": "c1"})
    error = await client.expect("error")
    assert (error["code"], error.get("id")) == ("UNAUTHORIZED", "c1"), error
    connected = await client.connect(issue_token("alice"))
    assert connected["user"] == "alice"
    assert (await client.ping())["type"] == "pong"
    # A session already open does not take it as a refresh either.
    await client.send({"type": "connect", "token": token, "id": "c2"})
    error = await client.expect("error")
    assert (error["code"], error.get("id")) == ("UNAUTHORIZED", "c2"), error
    assert (await client.ping())["type"] == "pong"
    await client.close()
    reply = await http.get(f"{srv.base}/v1/rooms/chat:x/messages",
                           headers={"authorization": f"Bearer {token}"})
    error_of(reply, 401, "UNAUTHORIZED")
    await bystander.beat()


async def test_a_frame_before_connect_gets_its_id_back(srv: Server,
                                                      bystander: Bystander) -> None:
    client = await open_client(srv.ws_url, connect_frame=False)
    await client.send({"type": "ping", "id": "early-1"})
    frames = [frame async for frame in client]
    assert [(f["type"], f["code"], f.get("id")) for f in frames] == [
        ("error", "UNAUTHORIZED", "early-1")]
    assert client.close_code == 4001


# ---------------------------------------------------------------------------
# Photos


async def upload(http: httpx.AsyncClient, srv: Server, room: str, body: bytes,
                 content_type: str, who: str) -> httpx.Response:
    return await http.post(f"{srv.base}/v1/rooms/{room}/photos", content=body,
                           headers=bearer(who, Role.TECHNICIAN) | {"content-type": content_type})


async def new_ticket(http: httpx.AsyncClient, srv: Server, tech: str, customer: str) -> str:
    room = f"repair:T-{secrets.token_hex(5)}"
    reply = await http.post(f"{srv.base}/v1/rooms/{room}/commands", headers=bearer(
        tech, Role.TECHNICIAN), json={"name": "ticket.create", "id": secrets.token_hex(6),
                                      "args": {"customer_id": customer, "device": "Phone",
                                               "problem": "Screen", "technicians": [tech]}})
    assert reply.status_code == 200, reply.text
    return room


def polyglots() -> list[tuple[str, bytes, str]]:
    image, photo = png(), jpeg()
    no_eoi = photo[:-2]
    return [
        ("PNG with HTML appended", image + HTML, "image/png"),
        ("PNG with a byte appended", image + b"\x00", "image/png"),
        ("PNG cut short", image[:-6], "image/png"),
        ("PNG with a bad CRC", image[:-1] + bytes([image[-1] ^ 1]), "image/png"),
        ("PNG without IDAT", image[:33] + image[-12:], "image/png"),
        ("PNG signature then HTML", image[:8] + HTML, "image/png"),
        ("JPEG with HTML appended", photo + HTML, "image/jpeg"),
        ("JPEG without its end", no_eoi, "image/jpeg"),
        ("JPEG header then HTML", photo[:20] + HTML, "image/jpeg"),
        ("JPEG with a second image after it", photo + photo, "image/jpeg"),
        ("WebP with HTML appended", webp() + HTML, "image/webp"),
        ("WebP whose size lies", webp()[:4] + b"\xff\xff\x00\x00" + webp()[8:], "image/webp"),
    ]


@pytest.mark.parametrize("on", ["sqlite", "postgres"])
async def test_images_with_something_else_inside_are_refused_and_photos_are_inert(
    srv: Server, pg_server: Server, http: httpx.AsyncClient, on: str,
) -> None:
    server = srv if on == "sqlite" else pg_server
    healthy = await Bystander.join(server)
    tech, customer = f"tech-{secrets.token_hex(3)}", f"cust-{secrets.token_hex(3)}"
    room = await new_ticket(http, server, tech, customer)
    for case, body, kind in polyglots():
        reply = await upload(http, server, room, body, kind, tech)
        assert reply.status_code in (400, 413), (case, reply.text)
        if reply.status_code == 400:
            error_of(reply, 400, "INVALID_ARGS")
        await healthy.beat()
    for body, kind in ((png(), "image/png"), (jpeg(), "image/jpeg"), (webp(), "image/webp")):
        reply = await upload(http, server, room, body, kind, tech)
        assert reply.status_code == 201, (kind, reply.text)
        upload_id = reply.json()["upload_id"]
        added = await http.post(f"{server.base}/v1/rooms/{room}/commands",
                                headers=bearer(tech, Role.TECHNICIAN), json={
                                    "name": "photo.add", "id": secrets.token_hex(6),
                                    "args": {"upload_id": upload_id, "category": "before",
                                             "caption": "x", "visibility": "customer"}})
        assert added.status_code == 200, added.text
        for who, role in ((tech, Role.TECHNICIAN), (customer, Role.CUSTOMER)):
            got = await http.get(f"{server.base}/v1/rooms/{room}/photos/{upload_id}",
                                 headers=bearer(who, role))
            assert got.status_code == 200 and got.content == body
            assert got.headers["content-type"] == kind
            assert got.headers["x-content-type-options"] == "nosniff"
            assert "sandbox" in got.headers["content-security-policy"]
            assert "default-src 'none'" in got.headers["content-security-policy"]
    # Not yours and not there: one answer; a role that never reads repair rooms: 403.
    error_of(await http.get(f"{server.base}/v1/rooms/{room}/photos/{'0' * 32}.png",
                            headers=bearer("someone", Role.CUSTOMER)), 404, "NOT_FOUND")
    error_of(await http.get(f"{server.base}/v1/rooms/{room}/photos/{'0' * 32}.png",
                            headers=bearer("someone", Role.GUEST)), 403, "FORBIDDEN")
    await healthy.check()
    await healthy.close()


# ---------------------------------------------------------------------------
# What repair rooms tell outsiders


async def test_a_customer_cannot_tell_a_missing_ticket_from_someone_elses(
    srv: Server, http: httpx.AsyncClient, bystander: Bystander,
) -> None:
    tech, owner, other = (f"{n}-{secrets.token_hex(3)}" for n in ("tech", "owner", "other"))
    existing = await new_ticket(http, srv, tech, owner)
    missing = f"repair:T-{secrets.token_hex(5)}"
    who = bearer(other, Role.CUSTOMER)
    answers = []
    for room in (existing, missing):
        seen = []
        for name, args in (("quote.approve", {}), ("quote.decline", {}),
                           ("note.add", {"text": "hello?"}), ("status.set", {"status": "x"})):
            reply = await http.post(f"{srv.base}/v1/rooms/{room}/commands", headers=who,
                                    json={"name": name, "args": args,
                                          "id": secrets.token_hex(6)})
            body = reply.json()["error"]
            body["message"] = body["message"].replace(room, "ROOM")
            seen.append((reply.status_code, body))
        for path in ("state", "messages?after=0", "events", "presence", ""):
            reply = await http.get(f"{srv.base}/v1/rooms/{room}/{path}".rstrip("/"),
                                   headers=who)
            body = reply.json()["error"]
            body["message"] = body["message"].replace(room, "ROOM")
            seen.append((reply.status_code, body))
        answers.append(seen)
    assert answers[0] == answers[1]
    assert {status for status, _ in answers[0]} == {403}


async def test_an_unassigned_technician_learns_no_status_from_ticket_create(
    srv: Server, http: httpx.AsyncClient, bystander: Bystander,
) -> None:
    tech, outsider, customer = (f"{n}-{secrets.token_hex(3)}" for n in ("t", "o", "c"))
    room = await new_ticket(http, srv, tech, customer)
    moved = await http.post(f"{srv.base}/v1/rooms/{room}/commands",
                            headers=bearer(tech, Role.TECHNICIAN),
                            json={"name": "status.set", "args": {"status": "diagnosing"},
                                  "id": secrets.token_hex(6)})
    assert moved.status_code == 200, moved.text
    args = {"customer_id": customer, "device": "Phone", "problem": "Screen",
            "technicians": [outsider]}
    reply = await http.post(f"{srv.base}/v1/rooms/{room}/commands",
                            headers=bearer(outsider, Role.TECHNICIAN),
                            json={"name": "ticket.create", "args": args,
                                  "id": secrets.token_hex(6)})
    error = error_of(reply, 409, "CONFLICT")
    assert "details" not in error and "diagnosing" not in error["message"], error
    # The assigned technician still gets the status.
    reply = await http.post(f"{srv.base}/v1/rooms/{room}/commands",
                            headers=bearer(tech, Role.TECHNICIAN),
                            json={"name": "ticket.create", "args": args | {
                                "technicians": [tech]}, "id": secrets.token_hex(6)})
    assert error_of(reply, 409, "CONFLICT")["details"] == {"status": "diagnosing"}


@pytest.mark.parametrize("on", ["sqlite", "postgres"])
async def test_a_guest_token_with_a_customers_id_reads_none_of_their_repair_notices(
    srv: Server, pg_server: Server, http: httpx.AsyncClient, on: str,
) -> None:
    server = srv if on == "sqlite" else pg_server
    tech, customer = f"tech-{secrets.token_hex(3)}", f"cust-{secrets.token_hex(3)}"
    inbox = f"user:{customer}"
    impostor = await open_client(server.ws_url, user=customer, role=Role.GUEST)
    owner = await open_client(server.ws_url, user=customer, role=Role.CUSTOMER)
    at = (await impostor.subscribe(inbox))["head"]
    await owner.subscribe(inbox)
    room = await new_ticket(http, server, tech, customer)
    marker = f"secret-{secrets.token_hex(4)}"
    reply = await http.post(f"{server.base}/v1/rooms/{room}/commands",
                            headers=bearer(tech, Role.TECHNICIAN), json={
                                "name": "note.add", "id": secrets.token_hex(6),
                                "args": {"text": marker, "priority": "urgent",
                                         "visibility": "customer"}})
    assert reply.status_code == 200, reply.text
    [notice] = await owner.messages(inbox, 1)
    assert notice["data"]["notice"] == "note.urgent" and notice["data"]["text"] == marker
    assert notice["data"]["for_role"] == "customer"
    skip = await impostor.expect("skip", room=inbox)
    assert skip["seq"] == notice["seq"] == at + 1
    # A backend's own notice to the user id (no for_role) reaches every role of it.
    backend = await open_client(server.ws_url, user="backend", role=Role.SERVICE)
    await backend.publish(inbox, {"notice": "hello"})
    for client in (impostor, owner):
        [plain] = await client.messages(inbox, 1)
        assert plain["data"] == {"notice": "hello"}
    # The other transports hide it too.
    polled = await http.get(f"{server.base}/v1/rooms/{inbox}/messages",
                            params={"after": at}, headers=bearer(customer, Role.GUEST))
    assert marker not in polled.text
    assert [f["type"] for f in polled.json()["frames"]] == ["skip", "message"]
    async with sse(http, server, inbox, headers=bearer(customer, Role.GUEST),
                   params={"after": at}) as stream:
        assert (await stream.next())["event"] == "subscribed"
        assert (await stream.next())["event"] == "skip"
        assert (await stream.next())["data"]["data"] == {"notice": "hello"}
    for client in (impostor, owner, backend):
        await client.close()
