"""Revocation that holds, everywhere (issue 10, section 7), against real servers.

* A ban (``POST /v1/admin/bans``) of a user, of one role of a user, or of one
  token (its ``jti``) closes what is open (WebSockets with 4003, SSE streams and
  long-polls with ``BANNED``) and refuses the same token on every transport
  afterwards, on SQLite and on PostgreSQL; lifting it lets the token back in.
  Temporary bans end by themselves. Bans are kept in the database: a restart
  keeps them.
* The admin API: validation, details, filters and paging.
* Two instances on PostgreSQL and a private Redis: a ban made on one holds on
  the other at once (broadcast), and within ``ban_reload_interval`` when the
  broadcast is lost (Redis blocked), and across a restart of the other.
* SSE streams and long-polls end when their token expires, as WebSockets do.

Each test keeps a healthy client beside the banned one and checks that it lost
nothing.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from roomlog.identity import Role
from tests.conftest import SECRET
from tests.e2e.conftest import MakeServer, _stop_all
from tests.e2e.healthy import Bystander, long_polls, until_long_polls
from tests.e2e.support import (
    TIMEOUT,
    Server,
    WsClient,
    issue_token,
    open_client,
    sse,
    unique_room,
)
from tests.redis_server import RedisServer

ADMIN = {"authorization": f"Bearer {issue_token('admin-1', Role.ADMIN)}"}
RELOAD = 1.0  # ban_reload_interval of the servers that test the bound


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def jti_of(token: str) -> str:
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert isinstance(claims.get("jti"), str) and len(claims["jti"]) >= 16, claims
    return claims["jti"]  # type: ignore[no-any-return]


async def ban(http: httpx.AsyncClient, srv: Server, **body: Any) -> dict[str, Any]:
    reply = await http.post(f"{srv.base}/v1/admin/bans", json=body, headers=ADMIN)
    assert reply.status_code == 201, reply.text
    return reply.json()  # type: ignore[no-any-return]


async def lift(http: httpx.AsyncClient, srv: Server, ban_id: int) -> dict[str, Any]:
    reply = await http.delete(f"{srv.base}/v1/admin/bans/{ban_id}", headers=ADMIN)
    assert reply.status_code == 200, reply.text
    return reply.json()["ban"]  # type: ignore[no-any-return]


def is_banned(reply: httpx.Response) -> bool:
    if reply.status_code != 403:
        return False
    return bool(reply.json()["error"]["code"] == "BANNED")


async def refused_everywhere(http: httpx.AsyncClient, srv: Server, token: str,
                             room: str) -> None:
    """The token is refused with BANNED by every transport."""
    replies = [
        await http.post(f"{srv.base}/v1/rooms/{room}/messages", headers=auth(token),
                        json={"id": secrets.token_hex(4), "data": "from a banned user"}),
        await http.get(f"{srv.base}/v1/rooms/{room}/messages", headers=auth(token),
                       params={"after": 0}),
        await http.get(f"{srv.base}/v1/rooms/{room}/events", params={"token": token}),
        await http.get(f"{srv.base}/v1/rooms/{room}", headers=auth(token)),
        await http.get(f"{srv.base}/v1/rooms/repair:T-x/photos/{'0' * 32}.png",
                       params={"token": token}),
    ]
    assert all(is_banned(r) for r in replies), [(r.status_code, r.text) for r in replies]
    client = await open_client(srv.ws_url, connect_frame=False)
    await client.send({"type": "connect", "token": token, "id": "again"})
    error = await client.expect("error")
    assert (error["code"], error["id"]) == ("BANNED", "again"), error
    assert await client.closed() == 4003


async def accepted(http: httpx.AsyncClient, srv: Server, token: str, room: str) -> bool:
    reply = await http.get(f"{srv.base}/v1/rooms/{room}/messages", headers=auth(token),
                           params={"after": 0})
    assert reply.status_code in (200, 403), reply.text
    return reply.status_code == 200


async def eventually(check: Any, what: str) -> None:
    """Until ``await check()`` is true; TIMEOUT is an upper bound for a broken server."""
    deadline = time.monotonic() + TIMEOUT
    while not await check():
        assert time.monotonic() < deadline, f"not within {TIMEOUT}s: {what}"
        await asyncio.sleep(0.05)


class Open:
    """A user's WebSocket subscription, SSE stream and waiting long-poll."""

    def __init__(self, http: httpx.AsyncClient, srv: Server, token: str) -> None:
        self.http, self.srv, self.token = http, srv, token
        self.room = unique_room()
        self.ws: WsClient | None = None
        self.sse_events: list[dict[str, Any]] = []
        self.sse_task: asyncio.Task[None] | None = None
        self.poll: asyncio.Task[httpx.Response] | None = None

    async def start(self) -> Open:
        self.ws = await open_client(self.srv.ws_url, token=self.token)
        await self.ws.subscribe(self.room)
        started = asyncio.Event()

        async def follow() -> None:
            async with sse(self.http, self.srv, self.room,
                           params={"token": self.token}) as stream:
                while True:
                    try:
                        event = await stream.next()
                    except StopAsyncIteration:
                        return
                    self.sse_events.append(event)
                    started.set()

        self.sse_task = asyncio.create_task(follow())
        await asyncio.wait_for(started.wait(), TIMEOUT)
        polls = await long_polls(self.http, self.srv)
        self.poll = asyncio.create_task(self.http.get(
            f"{self.srv.base}/v1/rooms/{self.room}/messages", headers=auth(self.token),
            params={"after": 0, "wait": 50}))
        await until_long_polls(self.http, self.srv, polls + 1)
        return self

    async def all_ended(self, code: str, close: int) -> None:
        """The WebSocket got ``code`` and ``close``, the stream an error event with
        ``code`` and its end, the long-poll ``code``."""
        assert self.ws is not None and self.sse_task is not None and self.poll is not None
        assert await self.ws.closed() == close
        assert [f["code"] for f in self.ws.frames if f["type"] == "error"] == [code]
        await asyncio.wait_for(self.sse_task, TIMEOUT)
        assert [e["event"] for e in self.sse_events] == ["subscribed", "error"]
        assert self.sse_events[-1]["data"]["code"] == code
        reply = await asyncio.wait_for(self.poll, TIMEOUT)
        assert reply.json()["error"]["code"] == code, reply.text


# ---------------------------------------------------------------------------
# One server, SQLite and PostgreSQL


@pytest.fixture(params=["sqlite", "postgres"])
def srv(request: pytest.FixtureRequest, server: Server, pg_server: Server) -> Server:
    return server if request.param == "sqlite" else pg_server


async def test_a_ban_closes_what_is_open_and_refuses_the_token_everywhere(
    srv: Server, http: httpx.AsyncClient,
) -> None:
    healthy = await Bystander.join(srv)
    mallory = f"mallory-{secrets.token_hex(3)}"
    token = issue_token(mallory)
    opened = await Open(http, srv, token).start()
    await healthy.beat()

    made = await ban(http, srv, user=mallory, reason="flooding the lobby")
    entry = made["ban"]
    assert made["closed_here"] == 3  # the WebSocket, the stream, the long-poll
    assert {k: entry[k] for k in ("user", "role", "jti", "reason", "until", "lifted",
                                  "lifted_by", "status")} == {
        "user": mallory, "role": None, "jti": None, "reason": "flooding the lobby",
        "until": None, "lifted": None, "lifted_by": None, "status": "active"}
    assert entry["by"] == {"user": "admin-1", "role": "admin"}
    assert isinstance(entry["id"], int) and abs(entry["created"] - time.time() * 1000) < 60_000
    await opened.all_ended("BANNED", 4003)

    # The same token, and a new one for the same user, are refused on every
    # transport; nothing they sent was stored.
    await refused_everywhere(http, srv, token, opened.room)
    await refused_everywhere(http, srv, issue_token(mallory, Role.DJ), opened.room)
    reply = await http.get(f"{srv.base}/v1/rooms/{opened.room}/messages",
                           headers=auth(issue_token("reader")), params={"after": 0})
    assert reply.json()["frames"] == []
    await healthy.beat()

    # Lifted: the token works again.
    lifted = await lift(http, srv, entry["id"])
    assert lifted["status"] == "lifted" and lifted["lifted_by"] == {"user": "admin-1",
                                                                   "role": "admin"}
    assert await accepted(http, srv, token, opened.room)
    again = await open_client(srv.ws_url, token=token)
    await again.publish(opened.room, "back")
    await again.close()
    await healthy.check()
    await healthy.close()


async def test_a_token_ban_revokes_that_token_only(srv: Server, http: httpx.AsyncClient) -> None:
    healthy = await Bystander.join(srv)
    user = f"two-tabs-{secrets.token_hex(3)}"
    first, second = issue_token(user), issue_token(user)
    assert jti_of(first) != jti_of(second)
    room = unique_room()
    tab1 = await open_client(srv.ws_url, token=first)
    tab2 = await open_client(srv.ws_url, token=second)
    made = await ban(http, srv, jti=jti_of(first), reason="token leaked")
    assert made["closed_here"] == 1 and made["ban"]["user"] is None
    await tab1.expect("error", code="BANNED")
    assert await tab1.closed() == 4003
    await refused_everywhere(http, srv, first, room)
    await tab2.publish(room, "still here")
    assert await accepted(http, srv, second, room)
    # The banned tab may not refresh into a session with its banned token either.
    await tab2.send({"type": "connect", "token": first, "id": "refresh"})
    error = await tab2.expect("error")
    assert (error["code"], error["id"]) == ("BANNED", "refresh")
    await tab2.close()
    await healthy.check()
    await healthy.close()


async def test_a_role_ban_leaves_the_same_id_in_other_roles(
    srv: Server, http: httpx.AsyncClient,
) -> None:
    user = f"both-{secrets.token_hex(3)}"
    room = unique_room()
    await ban(http, srv, user=user, role="guest", reason="abusive in the club")
    await refused_everywhere(http, srv, issue_token(user, Role.GUEST), room)
    assert await accepted(http, srv, issue_token(user, Role.CUSTOMER), room)


async def test_a_temporary_ban_ends_by_itself(srv: Server, http: httpx.AsyncClient) -> None:
    user = f"cooling-{secrets.token_hex(3)}"
    token = issue_token(user)
    room = unique_room()
    made = (await ban(http, srv, user=user, duration=1.5, reason="cool down"))["ban"]
    assert made["until"] - made["created"] == 1500
    assert not await accepted(http, srv, token, room)
    await eventually(lambda: accepted(http, srv, token, room), "the ban's end")
    assert time.time() * 1000 >= made["until"]
    reply = await http.get(f"{srv.base}/v1/admin/bans/{made['id']}", headers=ADMIN)
    assert reply.json()["ban"]["status"] == "expired"


# ---------------------------------------------------------------------------
# The admin API


async def test_ban_requests_are_checked(server: Server, http: httpx.AsyncClient) -> None:
    url = f"{server.base}/v1/admin/bans"
    bad: list[Any] = [
        {}, {"reason": "no target"}, {"user": ""}, {"user": 5}, {"user": "x" * 201},
        {"user": "a", "jti": "b"}, {"jti": "j", "role": "guest"}, {"user": "a", "role": "king"},
        {"user": "a", "duration": 0}, {"user": "a", "duration": -5},
        {"user": "a", "duration": "1h"}, {"user": "a", "duration": 1e300},
        {"user": "a", "duration": 10, "until": 2**40}, {"user": "a", "until": 5},
        {"user": "a", "until": True}, {"user": "a", "reason": "r" * 501},
        {"user": "a", "reason": 5}, {"jti": "j" * 129}, [], "ban",
    ]
    for body in bad:
        reply = await http.post(url, json=body, headers=ADMIN)
        assert reply.status_code == 400, (body, reply.text)
        assert reply.json()["error"]["code"] == "BAD_FRAME", reply.text
    for role in (Role.GUEST, Role.DJ, Role.TECHNICIAN, Role.CUSTOMER):
        who = auth(issue_token("not-an-admin", role))
        for method, path in (("POST", ""), ("GET", ""), ("GET", "/1"), ("DELETE", "/1")):
            reply = await http.request(method, url + path, headers=who,
                                       json={"user": "x"} if method == "POST" else None)
            assert reply.status_code == 403, reply.text
    for method in ("GET", "DELETE"):
        reply = await http.request(method, f"{url}/999999999", headers=ADMIN)
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "NOT_FOUND"
    reply = await http.get(f"{url}/abc", headers=ADMIN)
    assert reply.status_code == 404
    service = auth(issue_token("backend", Role.SERVICE))
    reply = await http.post(url, json={"user": f"s-{secrets.token_hex(3)}"}, headers=service)
    assert reply.status_code == 201 and reply.json()["ban"]["reason"] == ""


async def test_bans_are_listed_with_filters_and_pages(
    server: Server, http: httpx.AsyncClient,
) -> None:
    tag = secrets.token_hex(3)
    made = [(await ban(http, server, user=f"list-{tag}-{i % 2}", reason=f"r{i}"))["ban"]
            for i in range(5)]
    token_ban = (await ban(http, server, jti=f"jti-{tag}", reason="leak"))["ban"]
    await lift(http, server, made[0]["id"])
    url = f"{server.base}/v1/admin/bans"

    async def listed(**params: Any) -> dict[str, Any]:
        reply = await http.get(url, params=params, headers=ADMIN)
        assert reply.status_code == 200, reply.text
        return reply.json()  # type: ignore[no-any-return]

    mine = (await listed(user=f"list-{tag}-0"))["bans"]
    assert [b["id"] for b in mine] == [made[4]["id"], made[2]["id"], made[0]["id"]]  # newest first
    active = (await listed(user=f"list-{tag}-0", status="active"))["bans"]
    assert [b["id"] for b in active] == [made[4]["id"], made[2]["id"]]
    lifted = (await listed(user=f"list-{tag}-0", status="lifted"))["bans"]
    assert [b["id"] for b in lifted] == [made[0]["id"]]
    assert (await listed(jti=f"jti-{tag}"))["bans"] == [token_ban]
    assert (await listed(user=f"list-{tag}-1", status="expired"))["bans"] == []

    # Pages of two, following `next`, give every ban once, newest first.
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = await listed(**params)
        seen += [b["id"] for b in page["bans"]]
        if page["next"] is None:
            break
        params["before"] = page["next"]
    ours = {b["id"] for b in [*made, token_ban]}
    assert [i for i in seen if i in ours] == sorted(ours, reverse=True)
    assert len(seen) == len(set(seen))
    for params in ({"status": "maybe"}, {"limit": 0}, {"limit": 100000}, {"before": "x"},
                   {"limit": "nan"}):
        reply = await http.get(url, params=params, headers=ADMIN)
        assert reply.status_code == 400, (params, reply.text)
    one = await http.get(f"{url}/{made[1]['id']}", headers=ADMIN)
    assert one.json() == {"ban": made[1]}
    twice = await lift(http, server, made[0]["id"])  # lifting again changes nothing
    assert twice == (await listed(user=f"list-{tag}-0", status="lifted"))["bans"][0]


async def test_a_ban_survives_a_restart(make_server: MakeServer, http: httpx.AsyncClient) -> None:
    srv = await make_server()
    user = f"persistent-{secrets.token_hex(3)}"
    token = issue_token(user)
    room = unique_room()
    made = (await ban(http, srv, user=user, reason="kept"))["ban"]
    await srv.arestart()
    await refused_everywhere(http, srv, token, room)
    await srv.arestart(hard=True)
    await refused_everywhere(http, srv, token, room)
    await lift(http, srv, made["id"])
    assert await accepted(http, srv, token, room)


# ---------------------------------------------------------------------------
# Two instances


@pytest.fixture
def pair(tmp_path: Path, pg_migrated: str,
         redis_server: RedisServer) -> Iterator[tuple[Server, Server]]:
    servers = [Server(tmp_path / f"instance-{i}", pg_migrated, redis_url=redis_server.url,
                      ban_reload_interval=RELOAD, bus_ping_interval=0.2, bus_ping_timeout=0.5,
                      bus_reconnect_max=0.5) for i in range(2)]
    try:
        for srv in servers:
            srv.launch()
        for srv in servers:
            srv.wait_ready()
        yield servers[0], servers[1]
    finally:
        redis_server.resume()
        _stop_all(servers)
    for srv in servers:
        srv.assert_clean_log()


async def test_a_ban_on_one_instance_holds_on_the_other(
    pair: tuple[Server, Server], redis_server: RedisServer, http: httpx.AsyncClient,
) -> None:
    a, b = pair
    healthy = await Bystander.join(b)
    tag = secrets.token_hex(3)

    # The broadcast: what is open on b closes, b refuses the token at once.
    fast = issue_token(f"fast-{tag}")
    opened = await Open(http, b, fast).start()
    made = (await ban(http, a, user=f"fast-{tag}", reason="broadcast"))["ban"]
    await opened.all_ended("BANNED", 4003)
    await refused_everywhere(http, b, fast, opened.room)
    await healthy.beat()

    # A lost broadcast: Redis answers nothing while the ban is made. b's periodic
    # reload from the database enforces it anyway, on what is open too.
    slow = issue_token(f"slow-{tag}")
    opened = await Open(http, b, slow).start()
    redis_server.pause()
    try:
        await ban(http, a, user=f"slow-{tag}", reason="no broadcast")
        await opened.all_ended("BANNED", 4003)
        assert not await accepted(http, b, slow, opened.room)
    finally:
        redis_server.resume()
    await refused_everywhere(http, b, slow, opened.room)

    # Lifted on a: b lets the token back in.
    await lift(http, a, made["id"])
    await eventually(lambda: accepted(http, b, fast, opened.room), "the lift on b")

    await healthy.check()
    await healthy.close()

    # A restart of b (even a crash) keeps the ban that is still in force.
    await b.arestart(hard=True)
    await refused_everywhere(http, b, slow, opened.room)


# ---------------------------------------------------------------------------
# Token expiry ends SSE streams and long-polls


async def test_sse_streams_and_long_polls_end_when_their_token_expires(
    server: Server, http: httpx.AsyncClient,
) -> None:
    healthy = await Bystander.join(server)
    token = issue_token(f"brief-{secrets.token_hex(3)}", ttl=2)
    expires = jwt.decode(token, SECRET, algorithms=["HS256"])["exp"]
    room = unique_room()
    events: list[dict[str, Any]] = []
    async with sse(http, server, room, params={"token": token}) as stream:
        poll = asyncio.create_task(http.get(f"{server.base}/v1/rooms/{room}/messages",
                                            headers=auth(token),
                                            params={"after": 0, "wait": 30}))
        while True:
            try:
                events.append(await stream.next())
            except StopAsyncIteration:
                break
    assert [e["event"] for e in events] == ["subscribed", "error"]
    assert events[-1]["data"]["code"] == "UNAUTHORIZED"
    assert "expired" in events[-1]["data"]["message"]
    reply = await asyncio.wait_for(poll, TIMEOUT)
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "UNAUTHORIZED"
    assert time.time() >= expires - 1  # not before its expiry
    await healthy.check()
    await healthy.close()
