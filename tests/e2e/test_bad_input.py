"""Every bad input gets a coded answer, and nothing accepted is lost.

Over the WebSocket each bad frame gets an ``error`` frame with its code (and
the frame's id when it had a usable one) and the connection stays usable; or
the connection is closed with the documented code (1009, 4001, 4002). Over
HTTP each endpoint answers with a JSON error and the fitting status. After
each bad input the test proves the connection still works (ping/pong and a
publish) and that the messages accepted before are still in the log.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import msgpack
import orjson
import pytest

from roomlog.identity import Role
from tests.conftest import SECRET
from tests.e2e.support import (
    Server,
    WsClient,
    bearer,
    issue_token,
    open_client,
    unique_room,
)

MAX_FRAME = 16_384
MAX_DATA = 1024
MAX_BAD = 5


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with small limits, shared by this module's tests."""
    srv = Server(tmp_path_factory.mktemp("strict"), max_frame_bytes=MAX_FRAME,
                 max_data_bytes=MAX_DATA, max_bad_frames=MAX_BAD, connect_timeout=10)
    srv.start()
    yield srv
    srv.stop()
    srv.assert_clean_log()


class Connected:
    """A connected client plus a room holding the messages it had accepted."""

    def __init__(self, srv: Server, client: WsClient, http: httpx.AsyncClient) -> None:
        self.srv, self.client, self.http = srv, client, http
        self.room = unique_room()
        self.accepted: list[Any] = []

    async def accept(self) -> None:
        data = {"k": len(self.accepted) + 1}
        ack = await self.client.publish(self.room, data)
        assert ack["seq"] == len(self.accepted) + 1 and not ack["duplicate"]
        self.accepted.append(data)

    async def still_usable(self) -> None:
        """Ping answered, a publish accepted, and the log holds exactly what was."""
        assert (await self.client.ping())["type"] == "pong"
        await self.accept()
        reply = await self.http.get(f"{self.srv.base}/v1/rooms/{self.room}/messages",
                                    params={"after": 0}, headers=bearer())
        frames = reply.json()["frames"]
        assert [f["data"] for f in frames] == self.accepted
        assert [f["seq"] for f in frames] == list(range(1, len(self.accepted) + 1))


@pytest.fixture
async def session(strict: Server, http: httpx.AsyncClient) -> AsyncIterator[Connected]:
    client = await open_client(strict.ws_url, user="alice")
    s = Connected(strict, client, http)
    await s.accept()
    yield s
    assert client.close_code is None
    await client.close()


async def expect_error(client: WsClient, code: str, ident: str | None = None) -> dict[str, Any]:
    error = await client.expect("error")
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert error.get("id") == ident, error
    return error


# ---------------------------------------------------------------------------
# Bad frames on a connected WebSocket: an error frame, the connection stays

ROOM = "chat:fine"
BAD_FRAMES: list[tuple[str, Any, str, str | None]] = [
    # (case, payload: str sent as is / bytes as binary / else JSON-encoded, code, id)
    ("truncated json", '{"type": "ping"', "BAD_FRAME", None),
    ("not json", "hello there", "BAD_FRAME", None),
    ("empty frame", "", "BAD_FRAME", None),
    ("invalid utf-8 binary", b"\xff\xfe{", "BAD_FRAME", None),
    ("array", [{"type": "ping"}], "BAD_FRAME", None),
    ("number", 42, "BAD_FRAME", None),
    ("null", None, "BAD_FRAME", None),
    ("no type", {"id": "x1"}, "BAD_FRAME", "x1"),
    ("unknown type", {"type": "dance", "id": "x2"}, "BAD_FRAME", "x2"),
    ("type not a string", {"type": 5}, "BAD_FRAME", None),
    ("publish id a number", {"type": "publish", "room": ROOM, "data": 1, "id": 5},
     "BAD_FRAME", None),
    ("publish without id", {"type": "publish", "room": ROOM, "data": 1}, "BAD_FRAME", None),
    ("publish empty id", {"type": "publish", "room": ROOM, "data": 1, "id": ""},
     "BAD_FRAME", None),
    ("publish id too long", {"type": "publish", "room": ROOM, "data": 1, "id": "i" * 129},
     "BAD_FRAME", None),
    ("publish without data", {"type": "publish", "room": ROOM, "id": "x3"}, "BAD_FRAME", "x3"),
    ("since not an object", {"type": "subscribe", "room": ROOM, "since": "5", "id": "x4"},
     "BAD_FRAME", "x4"),
    ("since seq a string", {"type": "subscribe", "room": ROOM,
                            "since": {"epoch": "e", "seq": "5"}}, "BAD_FRAME", None),
    ("since seq negative", {"type": "subscribe", "room": ROOM,
                            "since": {"epoch": "e", "seq": -1}}, "BAD_FRAME", None),
    ("since seq a bool", {"type": "subscribe", "room": ROOM,
                          "since": {"epoch": "e", "seq": True}}, "BAD_FRAME", None),
    ("since without epoch", {"type": "subscribe", "room": ROOM, "since": {"seq": 1}},
     "BAD_FRAME", None),
    ("ping id a number", {"type": "ping", "id": 7}, "BAD_FRAME", None),
    ("connect token a number", {"type": "connect", "token": 5}, "BAD_FRAME", None),
    ("data not json-compatible", "{\"type\": \"publish\", \"room\": \"chat:fine\", "
     "\"id\": \"x5\", \"data\": 1e999}", "BAD_FRAME", None),
    ("oversized data", {"type": "publish", "room": ROOM, "id": "x6",
                        "data": "d" * (MAX_DATA + 1)}, "PAYLOAD_TOO_LARGE", "x6"),
    ("guest publishes in a feed", {"type": "publish", "room": "feed:news", "id": "x7",
                                   "data": 1}, "FORBIDDEN", "x7"),
    ("guest publishes in another user's inbox", {"type": "publish", "room": "user:bob",
                                                 "id": "x8", "data": 1}, "FORBIDDEN", "x8"),
    ("guest publishes in its own inbox", {"type": "publish", "room": "user:alice",
                                          "id": "x9", "data": 1}, "FORBIDDEN", "x9"),
    ("guest subscribes to another user's inbox", {"type": "subscribe", "room": "user:bob",
                                                  "id": "x10"}, "FORBIDDEN", "x10"),
    ("refresh with another user's token", {"type": "connect", "id": "x11",
                                           "token": issue_token("mallory")},
     "FORBIDDEN", "x11"),
    ("refresh with an expired token", {"type": "connect", "id": "x12",
                                       "token": issue_token("alice", ttl=-60)},
     "UNAUTHORIZED", "x12"),
    ("refresh with a forged token", {"type": "connect", "id": "x13",
                                     "token": issue_token("alice", secret="f" * 32)},
     "UNAUTHORIZED", "x13"),
]

INVALID_ROOMS: list[Any] = [
    "nocolon", "Chat:x", "unknown:x", "chat:", ":x", "chat:-x", "chat:a b", "chat:x/y",
    "chat:" + "a" * 129, "chat:ü", 5, None, ["chat:x"],
]


def wire(payload: Any) -> str | bytes:
    if isinstance(payload, str | bytes):
        return payload
    return orjson.dumps(payload).decode()


@pytest.mark.parametrize(("payload", "code", "ident"), [case[1:] for case in BAD_FRAMES],
                         ids=[case[0] for case in BAD_FRAMES])
async def test_bad_frame_gets_a_coded_error_and_the_connection_stays(
    session: Connected, payload: Any, code: str, ident: str | None,
) -> None:
    await session.client.send_raw(wire(payload))
    await expect_error(session.client, code, ident)
    await session.still_usable()


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe", "publish"])
async def test_invalid_room_names(session: Connected, kind: str) -> None:
    for i, room in enumerate(INVALID_ROOMS):
        frame: dict[str, Any] = {"type": kind, "room": room, "id": f"r{i}"}
        if room is None:
            del frame["room"]
        if kind == "publish":
            frame["data"] = "x"
        await session.client.send(frame)
        await expect_error(session.client, "INVALID_ROOM", f"r{i}")
        await session.still_usable()


async def test_guest_may_read_its_own_inbox_that_only_operators_write(
    session: Connected, strict: Server,
) -> None:
    await session.client.subscribe("user:alice")
    backend = await open_client(strict.ws_url, user="backend", role=Role.SERVICE)
    await backend.publish("user:alice", {"notice": "hi"})
    [message] = await session.client.messages("user:alice", 1)
    assert (message["by"], message["data"]) == ("backend", {"notice": "hi"})
    await backend.close()
    await session.still_usable()


async def test_many_non_protocol_errors_do_not_close_the_connection(session: Connected) -> None:
    # Only malformed frames count toward max_bad_frames; refusals do not.
    for i in range(MAX_BAD * 3):
        await session.client.send({"type": "publish", "room": "feed:news", "id": f"f{i}",
                                   "data": 1})
        await expect_error(session.client, "FORBIDDEN", f"f{i}")
    await session.still_usable()


# ---------------------------------------------------------------------------
# Bad input that ends the connection


async def test_too_many_bad_frames_closes_with_4002(strict: Server) -> None:
    client = await open_client(strict.ws_url)
    for i in range(MAX_BAD):
        await client.send_raw("{not json")
        await expect_error(client, "BAD_FRAME")
        assert (await client.ping())["type"] == "pong", i  # still usable up to the limit
    await client.send_raw("{not json")
    await expect_error(client, "BAD_FRAME")
    assert await client.closed() == 4002


async def test_frame_above_max_frame_bytes_closes_with_1009(
    strict: Server, http: httpx.AsyncClient,
) -> None:
    client = await open_client(strict.ws_url)
    room = unique_room()
    await client.publish(room, "before")
    big = orjson.dumps({"type": "publish", "room": room, "id": "big",
                        "data": "x" * MAX_FRAME}).decode()
    assert len(big) > MAX_FRAME
    await client.send_raw(big)
    assert await client.closed() == 1009
    # Nothing of it was stored; what was accepted before is there.
    reply = await http.get(f"{strict.base}/v1/rooms/{room}/messages", params={"after": 0},
                           headers=bearer())
    assert [f["data"] for f in reply.json()["frames"]] == ["before"]


@pytest.mark.parametrize("first", [
    {"type": "subscribe", "room": "chat:early"},
    {"type": "publish", "room": "chat:early", "id": "p", "data": 1},
    {"type": "ping"},
])
async def test_a_frame_before_connect_is_unauthorized_and_closes_4001(
    strict: Server, first: dict[str, Any],
) -> None:
    client = await open_client(strict.ws_url, connect_frame=False)
    await client.send(first)
    frames = [frame async for frame in client]  # every frame until the server closes
    assert [(f["type"], f["code"]) for f in frames] == [("error", "UNAUTHORIZED")]
    assert client.close_code == 4001


def crafted(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


BAD_TOKENS = {
    "expired": issue_token("alice", ttl=-60),
    "forged": issue_token("alice", secret="not-the-server-secret-" + "y" * 16),
    "garbage": "not.a.token",
    "unsigned": jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, None,
                           algorithm="none"),
    "no expiry": crafted({"sub": "alice", "role": "guest"}),
    "no user": crafted({"role": "guest", "exp": int(time.time()) + 600}),
    "unknown role": crafted({"sub": "alice", "role": "wizard",
                             "exp": int(time.time()) + 600}),
}


@pytest.mark.parametrize("bad", list(BAD_TOKENS), ids=list(BAD_TOKENS))
async def test_bad_token_is_unauthorized_and_a_good_one_still_connects(
    strict: Server, bad: str,
) -> None:
    client = await open_client(strict.ws_url, connect_frame=False)
    await client.send({"type": "connect", "token": BAD_TOKENS[bad], "id": "c1"})
    await expect_error(client, "UNAUTHORIZED", "c1")
    connected = await client.connect(issue_token("alice"))
    assert (connected["user"], connected["role"]) == ("alice", "guest")
    assert (await client.ping())["type"] == "pong"
    await client.close()


async def test_rate_limited_publish_over_websocket_and_http(
    make_server: Any, http: httpx.AsyncClient,
) -> None:
    srv: Server = await make_server(publish_rate=0.01, publish_burst=2, staff_limit_factor=1)
    room = unique_room()
    client = await open_client(srv.ws_url, user="eager")
    await client.publish(room, 1)
    await client.publish(room, 2)
    await client.send({"type": "publish", "room": room, "data": 3, "id": "too-fast"})
    error = await expect_error(client, "RATE_LIMITED", "too-fast")
    assert error["retry_after"] > 0
    assert (await client.ping())["type"] == "pong"

    url = f"{srv.base}/v1/rooms/{room}/messages"
    headers = bearer("backend", Role.SERVICE)
    for n in (4, 5):
        reply = await http.post(url, json={"id": f"h{n}", "data": n}, headers=headers)
        assert reply.status_code == 201
    reply = await http.post(url, json={"id": "h6", "data": 6}, headers=headers)
    assert reply.status_code == 429
    assert int(reply.headers["retry-after"]) >= 1
    body = reply.json()["error"]
    assert body["code"] == "RATE_LIMITED" and body["retry_after"] > 0

    log = await http.get(url, params={"after": 0}, headers=bearer())
    assert [f["data"] for f in log.json()["frames"]] == [1, 2, 4, 5]
    await client.close()


# ---------------------------------------------------------------------------
# HTTP: JSON errors with the right status

GUEST = bearer("alice", Role.GUEST)
SERVICE = bearer("backend", Role.SERVICE)


def http_cases() -> list[tuple[str, str, str, dict[str, str], Any, int, str]]:
    """(case, method, path, headers, body, status, code); {room} is a fresh room."""
    msgs = "/v1/rooms/{room}/messages"
    ok = {"id": "m1", "data": {"x": 1}}
    return [
        ("publish without token", "POST", msgs, {}, ok, 401, "UNAUTHORIZED"),
        ("read without token", "GET", msgs + "?after=0", {}, None, 401, "UNAUTHORIZED"),
        ("events without token", "GET", "/v1/rooms/{room}/events", {}, None, 401,
         "UNAUTHORIZED"),
        ("room info without token", "GET", "/v1/rooms/{room}", {}, None, 401, "UNAUTHORIZED"),
        ("reset without token", "DELETE", "/v1/rooms/{room}", {}, None, 401, "UNAUTHORIZED"),
        ("basic auth", "POST", msgs, {"authorization": "Basic YWxpY2U6eA=="}, ok, 401,
         "UNAUTHORIZED"),
        ("token in query of publish", "POST", msgs + "?token=" + issue_token("alice"), {}, ok,
         401, "UNAUTHORIZED"),
        ("expired token", "POST", msgs,
         {"authorization": "Bearer " + issue_token("alice", ttl=-60)}, ok, 401, "UNAUTHORIZED"),
        ("forged token", "GET", msgs + "?after=0",
         {"authorization": "Bearer " + issue_token("alice", secret="z" * 32)}, None, 401,
         "UNAUTHORIZED"),
        ("guest publishes in a feed", "POST", "/v1/rooms/feed:{id}/messages", GUEST, ok, 403,
         "FORBIDDEN"),
        ("guest publishes in an inbox", "POST", "/v1/rooms/user:bob/messages", GUEST, ok, 403,
         "FORBIDDEN"),
        ("guest reads another inbox", "GET", "/v1/rooms/user:bob/messages?after=0", GUEST, None,
         403, "FORBIDDEN"),
        ("guest streams another inbox", "GET", "/v1/rooms/user:bob/events", GUEST, None, 403,
         "FORBIDDEN"),
        ("guest resets a room", "DELETE", "/v1/rooms/{room}", GUEST, None, 403, "FORBIDDEN"),
        ("invalid room (publish)", "POST", "/v1/rooms/nocolon/messages", SERVICE, ok, 400,
         "INVALID_ROOM"),
        ("invalid room (read)", "GET", "/v1/rooms/Chat:x/messages?after=0", GUEST, None, 400,
         "INVALID_ROOM"),
        ("unknown room kind", "GET", "/v1/rooms/unknown:x", GUEST, None, 400, "INVALID_ROOM"),
        ("invalid room (events)", "GET", "/v1/rooms/chat:-x/events", GUEST, None, 400,
         "INVALID_ROOM"),
        ("body not json", "POST", msgs, SERVICE, b"{nope", 400, "BAD_FRAME"),
        ("body an array", "POST", msgs, SERVICE, [ok], 400, "BAD_FRAME"),
        ("body without id", "POST", msgs, SERVICE, {"data": 1}, 400, "BAD_FRAME"),
        ("id a number", "POST", msgs, SERVICE, {"id": 5, "data": 1}, 400, "BAD_FRAME"),
        ("id too long", "POST", msgs, SERVICE, {"id": "i" * 129, "data": 1}, 400, "BAD_FRAME"),
        ("body without data", "POST", msgs, SERVICE, {"id": "m"}, 400, "BAD_FRAME"),
        ("after not a number", "GET", msgs + "?after=abc", GUEST, None, 400, "BAD_FRAME"),
        ("after negative", "GET", msgs + "?after=-1", GUEST, None, 400, "BAD_FRAME"),
        ("limit zero", "GET", msgs + "?after=0&limit=0", GUEST, None, 400, "BAD_FRAME"),
        ("limit too big", "GET", msgs + "?after=0&limit=100000", GUEST, None, 400,
         "BAD_FRAME"),
        ("wait not a number", "GET", msgs + "?after=0&wait=soon", GUEST, None, 400,
         "BAD_FRAME"),
        ("last-event-id not a seq", "GET", "/v1/rooms/{room}/events",
         GUEST | {"last-event-id": "abc"}, None, 400, "BAD_FRAME"),
        ("data too large", "POST", msgs, SERVICE, {"id": "big", "data": "d" * (MAX_DATA + 1)},
         413, "PAYLOAD_TOO_LARGE"),
        ("body too large", "POST", msgs, SERVICE, {"id": "huge", "data": "d" * MAX_FRAME},
         413, "PAYLOAD_TOO_LARGE"),
    ]


CASES = http_cases()


@pytest.mark.parametrize(("method", "path", "headers", "body", "status", "code"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
async def test_http_errors_are_json_with_the_right_status(
    strict: Server, http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str],
    body: Any, status: int, code: str,
) -> None:
    room = unique_room()
    kept = await http.post(f"{strict.base}/v1/rooms/{room}/messages",
                           json={"id": "kept", "data": "kept"}, headers=SERVICE)
    assert kept.status_code == 201
    url = strict.base + path.format(room=room, id=room.split(":", 1)[1])
    content = body if isinstance(body, bytes) else None if body is None else orjson.dumps(body)
    reply = await http.request(method, url, headers=headers, content=content)
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert error["code"] == code and isinstance(error["message"], str)
    if status == 401:
        assert reply.headers["www-authenticate"] == "Bearer"
    # Nothing was stored by the bad request; what was accepted is still there.
    log = await http.get(f"{strict.base}/v1/rooms/{room}/messages", params={"after": 0},
                         headers=GUEST)
    assert [f["data"] for f in log.json()["frames"]] == ["kept"]


async def test_msgpack_oversized_frame_and_bad_frames_count_too(strict: Server) -> None:
    client = await open_client(strict.ws_url, fmt="roomlog.v1.msgpack")
    for _ in range(MAX_BAD):
        await client.send_raw(b"\xc1")
        await expect_error(client, "BAD_FRAME")
    await client.send_raw(msgpack.packb({"type": "ping", "pad": b"x" * MAX_FRAME}))
    assert await client.closed() == 1009


async def test_a_connection_survives_a_burst_of_mixed_bad_input(session: Connected) -> None:
    """Bad frames interleaved with good ones: each good one still gets its answer."""
    for i in range(MAX_BAD):  # sent back to back, before reading any answer
        await session.client.send_raw("{bad")
        await session.client.send({"type": "ping", "id": f"ok{i}"})
    for i in range(MAX_BAD):
        await expect_error(session.client, "BAD_FRAME")
        await session.client.expect("pong", id=f"ok{i}")
    await session.still_usable()
