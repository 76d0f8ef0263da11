"""Repair rooms (``repair:{ticket}``) end to end, against one real server process.

* Visibility: a customer's WebSocket (live and replayed, JSON and msgpack),
  long-poll, SSE and state snapshots never carry internal data (checked on the
  raw bytes received), and their positions stay contiguous: hidden events come
  as ``skip`` placeholders, so message seqs and skip seqs are exactly the log.
  Assigned technicians and admins get every event whole.
* Access: other customers and unassigned technicians are refused on every
  transport; admins always read.
* Staff feeds ``repairs:{technician}`` and ``repairs:all``, and reassignment
  moving a ticket between technicians' feeds.
* The customer's notices in ``user:{customer}``.
* Photo uploads: limits, types, who may upload and who may open.
* The workflow over the wire (INVALID_TRANSITION details, quote approval, QA
  gate) and ``GET /v1/repairs/stats``.

The server is private to this module (SQLite, small upload limit, its own media
directory); every test uses fresh user ids and ticket ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from roomlog.identity import Role
from roomlog.rooms.repair_stats import parse_sla
from roomlog.settings import Settings
from tests.e2e.support import JSON, MSGPACK, TIMEOUT, Server, WsClient, issue_token
from tests.images import jpeg, png

MAX_UPLOAD = 4096
NON_FINAL = {"received", "diagnosing", "awaiting_approval", "repairing", "quality_check",
             "ready_for_pickup", "on_hold"}
ALL_STATUSES = NON_FINAL | {"collected", "cancelled"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("server-repair")
    server = Server(workdir, max_upload_bytes=MAX_UPLOAD, media_dir=str(workdir / "photos"))
    server.start()
    yield server
    server.stop()
    server.assert_clean_log()


# ---------------------------------------------------------------------------
# Helpers


@dataclass(frozen=True)
class Actor:
    user: str
    role: Role

    @property
    def token(self) -> str:
        return issue_token(self.user, self.role)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


def people(**roles: Role) -> dict[str, Actor]:
    """Fresh actors, e.g. ``people(tech1=Role.TECHNICIAN)["tech1"]``."""
    tag = secrets.token_hex(3)
    return {name: Actor(f"{name}-{tag}", role) for name, role in roles.items()}


def new_ticket() -> tuple[str, str]:
    """(ticket id, room)."""
    ticket = f"T-{secrets.token_hex(5)}"
    return ticket, f"repair:{ticket}"




async def command(http: httpx.AsyncClient, srv: Server, room: str, name: str,
                  args: dict[str, Any], who: Actor) -> dict[str, Any]:
    """Run a command over HTTP; its ack (the test fails on an error)."""
    reply = await http.post(f"{srv.base}/v1/rooms/{room}/commands", headers=who.headers,
                            json={"name": name, "args": args,
                                  "id": f"h-{secrets.token_hex(6)}"})
    assert reply.status_code == 200, (name, args, reply.text)
    ack = reply.json()
    assert ack["type"] == "ack" and ack["room"] == room, ack
    return ack  # type: ignore[no-any-return]


async def refused(http: httpx.AsyncClient, srv: Server, room: str, name: str,
                  args: dict[str, Any], who: Actor, status: int, code: str) -> dict[str, Any]:
    """Run a command over HTTP that must fail with ``status`` and ``code``; the error."""
    reply = await http.post(f"{srv.base}/v1/rooms/{room}/commands", headers=who.headers,
                            json={"name": name, "args": args,
                                  "id": f"h-{secrets.token_hex(6)}"})
    return error_of(reply, status, code)


def error_of(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, (reply.status_code, reply.text)
    body = reply.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


async def create(http: httpx.AsyncClient, srv: Server, room: str, by: Actor, customer: Actor,
                 technicians: list[Actor], **extra: Any) -> dict[str, Any]:
    return await command(http, srv, room, "ticket.create", {
        "customer_id": customer.user, "device": "Phone X", "problem": "Cracked screen",
        "technicians": [t.user for t in technicians], **extra}, by)


async def get_state(http: httpx.AsyncClient, srv: Server, room: str,
                    who: Actor) -> httpx.Response:
    return await http.get(f"{srv.base}/v1/rooms/{room}/state", headers=who.headers)


class Recorder(WsClient):
    """A WsClient that also keeps every raw payload it received."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.raw: list[bytes] = []

    def _decode(self, payload: str | bytes) -> list[dict[str, Any]]:
        self.raw.append(payload.encode() if isinstance(payload, str) else payload)
        return super()._decode(payload)

    def received(self) -> bytes:
        return b"".join(self.raw)


async def ws(srv: Server, who: Actor, fmt: str = JSON) -> Recorder:
    conn = await connect(srv.ws_url, subprotocols=[Subprotocol(fmt)], max_size=None,
                         open_timeout=TIMEOUT)
    assert conn.subprotocol == fmt
    client = Recorder(conn, fmt)
    await client.connect(who.token)
    return client


async def refused_subscribe(client: WsClient, room: str, code: str = "FORBIDDEN") -> None:
    ident = client.next_id()
    await client.send({"type": "subscribe", "room": room, "id": ident})
    error = await client.expect("error", id=ident)
    assert error["code"] == code, error


async def positions(client: WsClient, room: str, head: int) -> list[dict[str, Any]]:
    """The room's message and skip frames up to ``head`` (other frames are dropped;
    an error or reset fails), then checks nothing more of the room is on its way."""
    got: list[dict[str, Any]] = []
    while not got or got[-1]["seq"] < head:
        frame = await client.next()
        assert frame["type"] not in ("error", "reset"), frame
        if frame.get("room") == room and frame["type"] in ("message", "skip"):
            got.append(frame)
    await client.ping()  # a round trip: whatever was on its way has arrived
    assert not [f for f in client.frames if f.get("room") == room], list(client.frames)
    return got


def check_customer_frames(frames: list[dict[str, Any]], room: str, epoch: str, first: int,
                          head: int, hidden: set[int]) -> None:
    """Exactly seqs first..head in order, once each; skips exactly at the hidden seqs."""
    assert [f["seq"] for f in frames] == list(range(first, head + 1)), [
        (f["type"], f["seq"]) for f in frames]
    assert {f["seq"] for f in frames if f["type"] == "skip"} == {
        s for s in hidden if s >= first}
    for frame in frames:
        if frame["type"] == "skip":
            assert frame == {"type": "skip", "room": room, "seq": frame["seq"],
                             "epoch": epoch}
        else:
            assert frame["type"] == "message" and frame["room"] == room, frame
            assert frame["epoch"] == epoch


def check_staff_frames(frames: list[dict[str, Any]], first: int, head: int) -> None:
    assert [(f["type"], f["seq"]) for f in frames] == [
        ("message", s) for s in range(first, head + 1)]


async def long_poll_all(http: httpx.AsyncClient, srv: Server, room: str, who: Actor, *,
                        limit: int) -> tuple[list[dict[str, Any]], bytes, int]:
    """Every frame of the room from after=0 over long-poll, page by page:
    (frames, the raw bodies, the head)."""
    frames: list[dict[str, Any]] = []
    raw = b""
    after = 0
    while True:
        reply = await http.get(f"{srv.base}/v1/rooms/{room}/messages",
                               params={"after": after, "limit": limit}, headers=who.headers)
        assert reply.status_code == 200, reply.text
        raw += reply.content
        body = reply.json()
        assert len(body["frames"]) <= limit
        frames += body["frames"]
        if body["next"] == after:
            assert body["frames"] == [] and body["next"] == body["head"], body
            return frames, raw, body["head"]
        after = body["next"]


class RawSse:
    """An SSE response read as raw bytes, parsed into events ``{id?, event, data}``."""

    def __init__(self, response: httpx.Response) -> None:
        self.raw = bytearray()
        self.events: deque[dict[str, Any]] = deque()
        self._chunks = response.aiter_bytes()
        self._pending = b""

    async def _more(self) -> None:
        chunk = await asyncio.wait_for(anext(self._chunks), TIMEOUT)
        self.raw += chunk
        self._pending += chunk
        while b"\n\n" in self._pending:
            block, self._pending = self._pending.split(b"\n\n", 1)
            event: dict[str, Any] = {}
            for line in block.split(b"\n"):
                if line.startswith(b":"):
                    continue  # keep-alive comment
                name, _, value = line.partition(b":")
                event[name.decode()] = value.removeprefix(b" ").decode()
            if "data" in event:
                event["data"] = orjson.loads(event["data"])
                self.events.append(event)

    async def next(self) -> dict[str, Any]:
        while not self.events:
            await self._more()
        return self.events.popleft()

    async def positions(self, room: str, head: int) -> list[dict[str, Any]]:
        """Message and skip events up to ``head`` as frames; checks their ``id:``."""
        got: list[dict[str, Any]] = []
        while not got or got[-1]["seq"] < head:
            event = await self.next()
            assert event["event"] not in ("error", "reset"), event
            if event["event"] in ("message", "skip"):
                frame = event["data"]
                assert frame["type"] == event["event"] and frame["room"] == room, event
                assert event["id"] == str(frame["seq"]), event
                got.append(frame)
        return got


@contextlib.asynccontextmanager
async def sse(http: httpx.AsyncClient, srv: Server, room: str, who: Actor,
                   **params: Any) -> AsyncIterator[RawSse]:
    async with http.stream("GET", f"{srv.base}/v1/rooms/{room}/events", headers=who.headers,
                           params=params) as response:
        assert response.status_code == 200, (await response.aread())
        assert response.headers["content-type"].startswith("text/event-stream")
        yield RawSse(response)


# ---------------------------------------------------------------------------
# 1. Visibility on every transport


async def test_customers_never_see_internal_data_on_any_transport(
    srv: Server, http: httpx.AsyncClient,
) -> None:
    p = people(tech1=Role.TECHNICIAN, cust1=Role.CUSTOMER, admin=Role.ADMIN)
    tech1, cust1, admin = p["tech1"], p["cust1"], p["admin"]
    ticket, room = new_ticket()
    marker = f"SECRET-{secrets.token_hex(4)}"
    needle = marker.encode()

    # Staff follow the ticket from before it exists; the customer may not yet.
    staff_ws = {who.user: await ws(srv, who) for who in (tech1, admin)}
    for client in staff_ws.values():
        before = await client.subscribe(room)
        assert before["seq"] == 0 and before["state"]["exists"] is False
    early = await ws(srv, cust1)
    await refused_subscribe(early, room)
    await early.close()

    hidden: set[int] = set()  # seqs the customer may not see at all
    redacted: set[int] = set()  # seqs the customer sees without their internal fields

    async def do(name: str, args: dict[str, Any], who: Actor = tech1, *,
                 hide: bool = False, redact: bool = False) -> dict[str, Any]:
        ack = await command(http, srv, room, name, args, who)
        assert ack["seqs"], ack
        if hide:
            hidden.update(ack["seqs"])
        if redact:
            redacted.update(ack["seqs"])
        return ack

    created = await create(http, srv, room, tech1, cust1, [tech1],
                           internal={"supplier": marker, "cost_price": 42})
    redacted.update(created["seqs"])
    epoch = created["epoch"]

    # The customer subscribes live, on JSON and on msgpack.
    live = await ws(srv, cust1)
    live_mp = await ws(srv, cust1, MSGPACK)
    for client in (live, live_mp):
        subscribed = await client.subscribe(room)
        assert subscribed["seq"] == 1 and subscribed["state"]["exists"] is True
        assert "internal" not in subscribed["state"]

    await do("note.add", {"text": f"Bought a used part ({marker})", "visibility": "internal"},
             hide=True)
    await do("note.add", {"text": "Your phone is in the queue", "visibility": "customer"})
    await do("status.set", {"status": "diagnosing", "reason": "Checking the screen",
                            "internal_reason": f"customer dropped it twice {marker}"},
             redact=True)
    await do("photo.add", {"category": "damage", "caption": f"inside {marker}",
                           "url": f"https://shop.example/{marker}.jpg",
                           "visibility": "internal"}, hide=True)
    await do("photo.add", {"category": "before", "caption": "Front side",
                           "url": "https://shop.example/front.jpg"})
    await do("milestone.add", {"title": "Diagnosis done", "percent": 30})
    await do("status.set", {"status": "awaiting_approval",
                            "quote": {"amount": 129.5, "currency": "eur",
                                      "description": "New screen"}})
    await do("quote.approve", {}, cust1)
    await do("qa.record", {"item": "Screen", "passed": False, "note": marker}, hide=True)
    await do("note.add", {"text": f"urgent: {marker}", "visibility": "internal",
                          "priority": "urgent"}, hide=True)
    await do("status.set", {"status": "on_hold", "internal_reason": f"part on order {marker}"},
             redact=True)
    await do("status.set", {"status": "repairing"})
    await do("eta.set", {"at": 4_000_000_000_000})
    await do("status.set", {"status": "quality_check"})
    await do("qa.record", {"item": "screen", "passed": True, "note": f"ok {marker}"}, hide=True)
    await do("note.add", {"text": "Nearly done", "visibility": "customer"}, admin)
    await do("status.set", {"status": "ready_for_pickup", "reason": "All good"})
    head = (await do("note.add", {"text": f"last words {marker}", "visibility": "internal"},
                     admin, hide=True))["seq"]
    assert head == 20 and len(hidden) == 6

    # --- the customer, live (JSON and msgpack): from the state's seq on
    for client in (live, live_mp):
        frames = await positions(client, room, head)
        check_customer_frames(frames, room, epoch, 2, head, hidden)
        assert needle not in client.received()
        seen = {f["seq"]: f["data"] for f in frames if f["type"] == "message"}
        assert seen[4] == {"event": "status.changed", "from": "received", "to": "diagnosing",
                           "reason": "Checking the screen"}
        assert seen[13]["to"] == "on_hold" and "internal_reason" not in seen[13]
        assert seen[13]["reason"] is None
        assert seen[3]["text"] == "Your phone is in the queue"
        assert seen[6]["visibility"] == "customer"
        await client.close()

    # --- the customer, replayed from seq 0 (JSON and msgpack)
    for fmt in (JSON, MSGPACK):
        client = await ws(srv, cust1, fmt)
        subscribed = await client.subscribe(room, since={"epoch": epoch, "seq": 0})
        assert (subscribed["head"], subscribed["replayed"]) == (head, head)
        assert "state" not in subscribed
        frames = await positions(client, room, head)
        check_customer_frames(frames, room, epoch, 1, head, hidden)
        assert frames[0]["data"] == {"event": "ticket.created", "ticket": ticket,
                                     "customer_id": cust1.user, "device": "Phone X",
                                     "problem": "Cracked screen",
                                     "technicians": [tech1.user], "status": "received"}
        assert needle not in client.received()
        await client.close()

    # --- the customer over long-poll, in small pages
    frames, raw, polled_head = await long_poll_all(http, srv, room, cust1, limit=4)
    assert polled_head == head
    check_customer_frames(frames, room, epoch, 1, head, hidden)
    assert needle not in raw

    # --- the customer over SSE: from after=0, and fresh (the state, then live)
    async with sse(http, srv, room, cust1, after=0) as stream:
        first = await stream.next()
        assert first["event"] == "subscribed" and first["data"]["replayed"] == head
        check_customer_frames(await stream.positions(room, head), room, epoch, 1, head, hidden)
        assert needle not in stream.raw
    async with sse(http, srv, room, cust1) as stream:
        first = await stream.next()
        assert first["event"] == "subscribed" and first["data"]["seq"] == head
        assert first["data"]["state"]["status"] == "ready_for_pickup"
        # A hidden and a visible event arrive live over the same stream.
        tail = await do("note.add", {"text": f"after {marker}", "visibility": "internal"},
                        hide=True)
        shown = await do("note.add", {"text": "Come by any time", "visibility": "customer"})
        head = shown["seq"]
        check_customer_frames(await stream.positions(room, head), room, epoch, tail["seq"],
                              head, hidden)
        assert needle not in stream.raw

    # --- the customer's state snapshot
    reply = await get_state(http, srv, room, cust1)
    assert reply.status_code == 200 and needle not in reply.content
    state = reply.json()["state"]
    assert state["qa"] == {"total": 1, "passed": 1} and "internal" not in state
    assert [n["text"] for n in state["notes"]] == ["Your phone is in the queue", "Nearly done",
                                                   "Come by any time"]
    assert [ph["caption"] for ph in state["photos"]] == ["Front side"]
    assert all("internal_reason" not in change for change in state["history"])

    # --- staff: every event whole, the marker included, on every transport
    for client in staff_ws.values():
        frames = await positions(client, room, head)
        check_staff_frames(frames, 1, head)
        assert needle in client.received()
        assert frames[0]["data"]["internal"] == {"supplier": marker, "cost_price": 42}
        assert frames[3]["data"]["internal_reason"].endswith(marker)
        await client.close()
    for who in (tech1, admin):
        frames, raw, _ = await long_poll_all(http, srv, room, who, limit=50)
        check_staff_frames(frames, 1, head)
        assert needle in raw
        async with sse(http, srv, room, who, after=0) as stream:
            check_staff_frames(await stream.positions(room, head), 1, head)
            assert needle in stream.raw
        reply = await get_state(http, srv, room, who)
        assert needle in reply.content
        state = reply.json()["state"]
        assert state["internal"]["supplier"] == marker
        assert [q["item"] for q in state["qa"]["items"]] == ["screen"]


# ---------------------------------------------------------------------------
# 2. Access


async def test_only_the_ticket_s_parties_and_admins_read_it(
    srv: Server, http: httpx.AsyncClient,
) -> None:
    p = people(tech1=Role.TECHNICIAN, tech2=Role.TECHNICIAN, cust1=Role.CUSTOMER,
               cust2=Role.CUSTOMER, admin=Role.ADMIN, guest=Role.GUEST)
    _, room = new_ticket()
    await create(http, srv, room, p["tech1"], p["cust1"], [p["tech1"]])
    await command(http, srv, room, "note.add", {"text": "hello", "visibility": "customer"},
                  p["tech1"])

    for name in ("cust2", "tech2", "guest"):
        who = p[name]
        client = await ws(srv, who)
        await refused_subscribe(client, room)
        await client.close()
        error_of(await http.get(f"{srv.base}/v1/rooms/{room}/messages",
                                params={"after": 0}, headers=who.headers), 403, "FORBIDDEN")
        error_of(await http.get(f"{srv.base}/v1/rooms/{room}/events", params={"after": 0},
                                headers=who.headers), 403, "FORBIDDEN")
        error_of(await http.get(f"{srv.base}/v1/rooms/{room}/events",
                                params={"token": who.token}), 403, "FORBIDDEN")
        error_of(await get_state(http, srv, room, who), 403, "FORBIDDEN")
        error_of(await http.get(f"{srv.base}/v1/rooms/{room}", headers=who.headers),
                 403, "FORBIDDEN")
    # Nor may they act on it.
    await refused(http, srv, room, "note.add", {"text": "me too"}, p["cust2"], 403,
                  "FORBIDDEN")
    await refused(http, srv, room, "note.add", {"text": "x", "visibility": "customer"},
                  p["tech2"], 403, "FORBIDDEN")

    # The parties and an admin read it on every transport.
    for name in ("cust1", "tech1", "admin"):
        who = p[name]
        client = await ws(srv, who)
        subscribed = await client.subscribe(room)
        assert subscribed["seq"] == 2 and subscribed["state"]["customer_id"] == p["cust1"].user
        await client.close()
        reply = await http.get(f"{srv.base}/v1/rooms/{room}/messages", params={"after": 0},
                               headers=who.headers)
        assert reply.status_code == 200 and len(reply.json()["frames"]) == 2
        async with sse(http, srv, room, who, after=0) as stream:
            assert (await stream.next())["event"] == "subscribed"
            assert [f["seq"] for f in await stream.positions(room, 2)] == [1, 2]
        assert (await get_state(http, srv, room, who)).status_code == 200

    # A ticket nobody created: technicians and admins may wait for it, customers not.
    _, nothing = new_ticket()
    for name, ok in (("cust1", False), ("tech2", True), ("admin", True)):
        reply = await get_state(http, srv, nothing, p[name])
        if ok:
            assert reply.json()["state"] == {"room": nothing, "ticket": nothing.split(":")[1],
                                             "readable": True, "exists": False, "moves": []}
        else:
            error_of(reply, 403, "FORBIDDEN")


# ---------------------------------------------------------------------------
# 3. Staff feeds


async def test_access_ends_at_the_event_that_takes_it_away(
        srv: Server, http: httpx.AsyncClient) -> None:
    p = people(tech1=Role.TECHNICIAN, tech2=Role.TECHNICIAN, cust=Role.CUSTOMER,
               admin=Role.ADMIN)
    marker = "SECRET-" + secrets.token_hex(4)

    # A technician may watch a ticket before it exists; once it is created without
    # them, they stop there, before its internal fields or notes.
    _, room = new_ticket()
    stranger = await ws(srv, p["tech2"])
    await stranger.subscribe(room)
    await create(http, srv, room, p["tech1"], p["cust"], [p["tech1"]],
                 internal={"note": marker})
    await command(http, srv, room, "note.add", {"text": marker, "visibility": "internal"},
                  p["tech1"])
    error = await stranger.expect("error", room=room)
    assert error["code"] == "FORBIDDEN"
    await stranger.ping()  # everything sent before the pong is in
    assert marker.encode() not in stranger.received()
    await stranger.close()

    # An assigned technician reading live (WebSocket and SSE) is cut off at the
    # reassignment; what follows it never reaches them.
    _, room = new_ticket()
    await create(http, srv, room, p["tech1"], p["cust"], [p["tech1"]])
    reader = await ws(srv, p["tech1"])
    await reader.subscribe(room)
    async with sse(http, srv, room, p["tech1"]) as stream:
        assert (await stream.next())["event"] == "subscribed"
        await command(http, srv, room, "ticket.assign", {"technicians": [p["tech2"].user]},
                      p["admin"])
        await command(http, srv, room, "note.add", {"text": marker, "visibility": "internal"},
                      p["tech2"])
        error = await reader.expect("error", room=room)
        assert error["code"] == "FORBIDDEN"
        events = []
        with contextlib.suppress(StopAsyncIteration):
            while True:  # the stream ends after its error event
                events.append(await stream.next())
        assert [e["event"] for e in events] == ["error"]
        assert marker.encode() not in stream.raw
    await reader.ping()
    assert marker.encode() not in reader.received()
    # Subscribing again is refused: the ticket is no longer theirs.
    await refused_subscribe(reader, room)
    await reader.close()


def feed_entries(frames: list[dict[str, Any]], ticket: str) -> list[dict[str, Any]]:
    return [f["data"] for f in frames if f["data"]["ticket"] == ticket]


async def test_staff_feeds_follow_assignment(srv: Server, http: httpx.AsyncClient) -> None:
    p = people(tech1=Role.TECHNICIAN, tech2=Role.TECHNICIAN, cust=Role.CUSTOMER,
               admin=Role.ADMIN)
    tech1, tech2, cust, admin = p["tech1"], p["tech2"], p["cust"], p["admin"]
    feed1, feed2 = f"repairs:{tech1.user}", f"repairs:{tech2.user}"

    # Who may follow which feed.
    intruder = await ws(srv, tech2)
    await refused_subscribe(intruder, feed1)
    await refused_subscribe(intruder, "repairs:all")
    await intruder.close()
    customer = await ws(srv, cust)
    await refused_subscribe(customer, "repairs:all")
    await refused_subscribe(customer, f"repairs:{cust.user}")
    await customer.close()
    error_of(await http.get(f"{srv.base}/v1/rooms/repairs:all/messages", params={"after": 0},
                            headers=tech1.headers), 403, "FORBIDDEN")
    error_of(await http.get(f"{srv.base}/v1/rooms/{feed1}/messages", params={"after": 0},
                            headers=tech2.headers), 403, "FORBIDDEN")

    t1, t2, adm = await ws(srv, tech1), await ws(srv, tech2), await ws(srv, admin)
    assert (await t1.subscribe(feed1))["head"] == 0
    assert (await t2.subscribe(feed2))["head"] == 0
    all_head = (await adm.subscribe("repairs:all"))["head"]

    a, room_a = new_ticket()
    b, room_b = new_ticket()
    c, _ = new_ticket()
    log: dict[str, list[tuple[int, str]]] = {a: [], b: [], c: []}  # (seq, event) per ticket

    async def do(ticket: str, name: str, args: dict[str, Any], who: Actor) -> None:
        ack = await command(http, srv, f"repair:{ticket}", name, args, who)
        reply = await http.get(f"{srv.base}/v1/rooms/repair:{ticket}/messages",
                               params={"after": ack["seqs"][0] - 1}, headers=admin.headers)
        frames = reply.json()["frames"][:len(ack["seqs"])]
        log[ticket] += [(f["seq"], f["data"]["event"]) for f in frames]

    await do(a, "ticket.create", {"customer_id": cust.user, "device": "Laptop",
                                  "problem": "No power", "technicians": [tech1.user]}, tech1)
    await do(b, "ticket.create", {"customer_id": cust.user, "device": "Tablet",
                                  "problem": "Battery", "technicians": [tech1.user],
                                  "internal": {"bin": "B7"}}, tech1)
    await do(c, "ticket.create", {"customer_id": cust.user, "device": "Watch",
                                  "problem": "Strap", "technicians": [tech2.user]}, admin)
    await do(a, "status.set", {"status": "diagnosing"}, tech1)
    await do(b, "note.add", {"text": "keep the box", "visibility": "internal"}, tech1)
    await do(c, "status.set", {"status": "diagnosing"}, tech2)
    await do(a, "milestone.add", {"title": "Opened", "percent": 10}, tech1)
    await do(b, "status.set", {"status": "diagnosing", "internal_reason": "swollen cell"},
             tech1)

    # tech1's feed: every event of A and B, in order; nothing of C.
    got1 = await t1.messages(feed1, len(log[a]) + len(log[b]))
    assert [f["seq"] for f in got1] == list(range(1, len(got1) + 1))
    for ticket in (a, b):
        entries = feed_entries(got1, ticket)
        assert [(e["seq"], e["event"]) for e in entries] == log[ticket]
        assert all(e["room"] == f"repair:{ticket}" for e in entries)
    assert {f["data"]["ticket"] for f in got1} == {a, b}
    assert feed_entries(got1, b)[0]["internal"] == {"bin": "B7"}  # staff rooms: whole
    assert feed_entries(got1, b)[2]["internal_reason"] == "swollen cell"
    # tech2's: C only. The admins': all three.
    got2 = await t2.messages(feed2, len(log[c]))
    assert [(f["data"]["ticket"], f["data"]["seq"]) for f in got2] == [(c, s) for s, _ in log[c]]
    got_all = await adm.messages("repairs:all", sum(map(len, log.values())))
    assert [f["seq"] for f in got_all] == list(range(all_head + 1, all_head + len(got_all) + 1))
    for ticket in (a, b, c):
        assert [(e["seq"], e["event"]) for e in feed_entries(got_all, ticket)] == log[ticket]

    # Reassigning B moves it from tech1's feed to tech2's.
    ack = await command(http, srv, room_b, "ticket.assign", {"technicians": [tech2.user]}, admin)
    [moved] = ack["seqs"]
    [gone] = await t1.messages(feed1, 1)
    assert gone["seq"] == len(got1) + 1
    assert gone["data"] == {"ticket": b, "room": room_b, "seq": moved,
                            "event": "ticket.unassigned"}
    [came] = await t2.messages(feed2, 1)
    assert came["data"]["event"] == "ticket.assigned" and came["data"]["seq"] == moved
    assert (came["data"]["added"], came["data"]["removed"]) == ([tech2.user], [tech1.user])
    summary = came["data"]["summary"]
    assert (summary["ticket"], summary["status"], summary["technicians"], summary["device"]) == (
        b, "diagnosing", [tech2.user], "Tablet")
    [seen] = await adm.messages("repairs:all", 1)
    assert seen["data"]["event"] == "ticket.assigned" and "summary" not in seen["data"]

    # Later events of B reach only tech2; tech1 goes on with A.
    await command(http, srv, room_b, "note.add", {"text": "on it", "visibility": "customer"},
                  tech2)
    await command(http, srv, room_a, "note.add", {"text": "fuse", "visibility": "internal"},
                  tech1)
    [after] = await t1.messages(feed1, 1)
    assert after["seq"] == gone["seq"] + 1  # B's note, committed first, never came
    assert (after["data"]["ticket"], after["data"]["event"]) == (a, "note.added")
    [note] = await t2.messages(feed2, 1)
    assert (note["data"]["ticket"], note["data"]["text"]) == (b, "on it")
    assert [(f["data"]["ticket"], f["data"]["event"])
            for f in await adm.messages("repairs:all", 2)] == [(b, "note.added"),
                                                              (a, "note.added")]
    await t1.ping()
    assert not [f for f in t1.frames if f.get("room") == feed1]

    # And tech1 may no longer read or work B; tech2 may.
    await refused_subscribe(t1, room_b)
    await refused(http, srv, room_b, "note.add", {"text": "x", "visibility": "customer"},
                  tech1, 403, "FORBIDDEN")
    assert (await t2.subscribe(room_b))["state"]["technicians"] == [tech2.user]

    # The feed is durable: read again over long-poll, it is the same.
    frames, _, feed_head = await long_poll_all(http, srv, feed1, tech1, limit=100)
    assert [f["data"] for f in frames] == [f["data"] for f in [*got1, gone, after]]
    assert feed_head == after["seq"]
    for client in (t1, t2, adm):
        await client.close()


# ---------------------------------------------------------------------------
# 4. Customer notices


async def test_customer_notices(srv: Server, http: httpx.AsyncClient) -> None:
    p = people(tech=Role.TECHNICIAN, cust=Role.CUSTOMER, admin=Role.ADMIN)
    tech, cust, admin = p["tech"], p["cust"], p["admin"]
    inbox = f"user:{cust.user}"
    ticket, room = new_ticket()
    declined, room2 = new_ticket()
    marker = f"SECRET-{secrets.token_hex(4)}"

    client = await ws(srv, cust)
    assert (await client.subscribe(inbox))["head"] == 0

    await create(http, srv, room, tech, cust, [tech])
    await command(http, srv, room, "status.set", {"status": "diagnosing"}, tech)
    quote = await command(http, srv, room, "status.set", {
        "status": "awaiting_approval",
        "quote": {"amount": 80, "currency": "EUR", "description": "Battery"}}, tech)
    await command(http, srv, room, "note.add", {"text": marker, "visibility": "internal",
                                                "priority": "urgent"}, tech)
    urgent = await command(http, srv, room, "note.add", {
        "text": "Please call us", "visibility": "customer", "priority": "urgent"}, tech)
    await command(http, srv, room, "note.add", {"text": "Call me!", "priority": "urgent"},
                  cust)  # the customer's own: not told back
    await command(http, srv, room, "note.add", {"text": "fyi", "visibility": "customer"}, tech)
    await command(http, srv, room, "quote.approve", {}, cust)
    await command(http, srv, room, "status.set", {"status": "quality_check"}, tech)
    await command(http, srv, room, "qa.record", {"item": "Battery", "passed": True}, tech)
    ready = await command(http, srv, room, "status.set", {"status": "ready_for_pickup"}, tech)

    got = await client.messages(inbox, 3)
    assert [f["seq"] for f in got] == [1, 2, 3]
    head = {"for_role": "customer", "room": room, "ticket": ticket, "device": "Phone X"}
    assert got[0]["data"] == {**head, "notice": "quote.waiting", "seq": quote["seq"],
                              "quote": {"quote_id": "q1", "amount": 80, "currency": "EUR",
                                        "description": "Battery"}}
    assert got[1]["data"] == {**head, "notice": "note.urgent", "seq": urgent["seq"],
                              "note_id": "n2", "text": "Please call us"}
    assert got[2]["data"] == {**head, "notice": "ticket.ready", "seq": ready["seq"],
                              "outcome": "repaired"}

    # A declined quote: ready for pickup, unrepaired.
    await create(http, srv, room2, admin, cust, [])
    await command(http, srv, room2, "status.set", {"status": "diagnosing"}, admin)
    await command(http, srv, room2, "status.set", {
        "status": "awaiting_approval", "quote": {"amount": 300, "currency": "usd"}}, admin)
    declined_ack = await command(http, srv, room2, "quote.decline", {"reason": "too much"}, cust)
    more = await client.messages(inbox, 2)
    assert [f["data"]["notice"] for f in more] == ["quote.waiting", "ticket.ready"]
    assert more[0]["data"]["quote"] == {"quote_id": "q1", "amount": 300, "currency": "USD",
                                        "description": None}
    assert more[1]["data"] == {"for_role": "customer", "room": room2, "ticket": declined,
                               "device": "Phone X",
                               "notice": "ticket.ready", "seq": declined_ack["seqs"][-1],
                               "outcome": "unrepaired"}
    await client.ping()
    assert not [f for f in client.frames if f.get("room") == inbox]
    assert marker.encode() not in client.received()
    await client.close()

    # Durable: the inbox read again holds exactly these five.
    frames, raw, inbox_head = await long_poll_all(http, srv, inbox, cust, limit=10)
    assert inbox_head == 5 and [f["data"] for f in frames] == [
        f["data"] for f in [*got, *more]]
    assert marker.encode() not in raw


# ---------------------------------------------------------------------------
# 5. Photos


async def upload(http: httpx.AsyncClient, srv: Server, room: str, who: Actor, body: Any,
                 content_type: str | None) -> httpx.Response:
    headers = who.headers | ({} if content_type is None else {"content-type": content_type})
    return await http.post(f"{srv.base}/v1/rooms/{room}/photos", content=body,
                           headers=headers)


async def test_photo_uploads(srv: Server, http: httpx.AsyncClient) -> None:
    p = people(tech1=Role.TECHNICIAN, tech2=Role.TECHNICIAN, cust1=Role.CUSTOMER,
               cust2=Role.CUSTOMER, admin=Role.ADMIN)
    tech1, tech2, cust1, cust2, admin = (p[k] for k in ("tech1", "tech2", "cust1", "cust2",
                                                       "admin"))
    _, room = new_ticket()
    _, other_room = new_ticket()
    await create(http, srv, room, tech1, cust1, [tech1])
    await create(http, srv, other_room, tech1, cust2, [tech1])
    follower = await ws(srv, cust1)
    at = (await follower.subscribe(room))["seq"]

    # A small PNG, uploaded by the technician and added as a customer-visible photo.
    image = png()
    reply = await upload(http, srv, room, tech1, image, "image/png")
    assert reply.status_code == 201, reply.text
    body = reply.json()
    upload_id = body["upload_id"]
    assert re.fullmatch(r"[0-9a-f]{32}\.png", upload_id), body
    assert body == {"room": room, "upload_id": upload_id, "bytes": len(image),
                    "url": f"/v1/rooms/{room}/photos/{upload_id}"}
    added = await command(http, srv, room, "photo.add", {
        "upload_id": upload_id, "category": "before", "caption": "As received"}, tech1)
    [shown] = await follower.messages(room, 1)
    assert shown["seq"] == added["seq"] == at + 1
    assert shown["data"] == {"event": "photo.added", "photo_id": "p1", "category": "before",
                             "caption": "As received", "upload_id": upload_id,
                             "visibility": "customer"}

    # Customers may not add photos: FORBIDDEN comes first, whatever the upload id.
    for ident in ("nope", upload_id):
        await refused(http, srv, room, "photo.add", {"upload_id": ident, "category": "during",
                                                     "caption": "mine"}, cust1, 403, "FORBIDDEN")
    # No uploads to a ticket that does not exist (any technician may read one).
    _, unborn = new_ticket()
    error_of(await upload(http, srv, unborn, tech1, image, "image/png"), 404, "NOT_FOUND")

    url = f"{srv.base}/v1/rooms/{room}/photos/{upload_id}"
    for headers, params in ((cust1.headers, None), ({}, {"token": cust1.token}),
                            (tech1.headers, None), (admin.headers, None)):
        got = await http.get(url, headers=headers, params=params)
        assert got.status_code == 200, got.text
        assert got.content == image and got.headers["content-type"] == "image/png"
    # Not yours and not there look the same.
    for who in (cust2, tech2):
        error_of(await http.get(url, headers=who.headers), 404, "NOT_FOUND")
    error_of(await http.get(url, params={"token": cust2.token}), 404, "NOT_FOUND")
    missing = f"{srv.base}/v1/rooms/{room}/photos/{'0' * 32}.png"
    error_of(await http.get(missing, headers=cust1.headers), 404, "NOT_FOUND")
    error_of(await http.get(url), 401, "UNAUTHORIZED")

    # An internal photo: staff open it, the customer does not (and gets a skip).
    secret_image = png((1, 2, 3))
    internal_id = (await upload(http, srv, room, tech1, secret_image, "image/png")).json()[
        "upload_id"]
    hidden = await command(http, srv, room, "photo.add", {
        "upload_id": internal_id, "category": "part", "caption": "supplier label",
        "visibility": "internal"}, tech1)
    skip = await follower.expect("skip", room=room)
    assert skip["seq"] == hidden["seq"]
    internal_url = f"{srv.base}/v1/rooms/{room}/photos/{internal_id}"
    error_of(await http.get(internal_url, headers=cust1.headers), 404, "NOT_FOUND")
    error_of(await http.get(internal_url, params={"token": cust1.token}), 404, "NOT_FOUND")
    for who in (tech1, admin):
        got = await http.get(internal_url, headers=who.headers)
        assert got.status_code == 200 and got.content == secret_image
    assert secret_image not in follower.received() and internal_id.encode() not in (
        follower.received())
    state = (await get_state(http, srv, room, cust1)).json()["state"]
    assert [ph["upload_id"] for ph in state["photos"]] == [upload_id]

    # An upload no photo names yet opens for nobody.
    loose = (await upload(http, srv, room, tech1, png((9, 9, 9)), "image/png")).json()[
        "upload_id"]
    for who in (cust1, tech1):
        error_of(await http.get(f"{srv.base}/v1/rooms/{room}/photos/{loose}",
                                headers=who.headers), 404, "NOT_FOUND")

    # Limits: size (declared, and streamed without a length), type, who uploads.
    too_big = image + b"\x00" * (MAX_UPLOAD + 1 - len(image))
    assert len(too_big) == MAX_UPLOAD + 1
    error_of(await upload(http, srv, room, tech1, too_big, "image/png"), 413,
             "PAYLOAD_TOO_LARGE")

    async def chunks() -> AsyncIterator[bytes]:
        yield image
        for _ in range(8):
            yield b"\x00" * 1024

    error_of(await upload(http, srv, room, tech1, chunks(), "image/png"), 413,
             "PAYLOAD_TOO_LARGE")
    exact = png(size=MAX_UPLOAD)
    assert len(exact) == MAX_UPLOAD
    assert (await upload(http, srv, room, tech1, exact, "image/png")).status_code == 201
    for body_, kind in ((b"just some text", "text/plain"), (b"just some text", "image/png"),
                        (image, "image/jpeg"), (image, "text/plain"),
                        (jpeg(), "image/png"), (image, None), (b"", "image/png"),
                        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "image/webp")):
        error_of(await upload(http, srv, room, tech1, body_, kind), 400, "INVALID_ARGS")
    assert (await upload(http, srv, room, tech1, jpeg(), "image/jpeg; charset=x")
            ).json()["upload_id"].endswith(".jpg")
    for who in (cust1, cust2):
        error_of(await upload(http, srv, room, who, image, "image/png"), 403, "FORBIDDEN")
    error_of(await upload(http, srv, room, tech2, image, "image/png"), 403, "FORBIDDEN")
    error_of(await upload(http, srv, "chat:lobby", admin, image, "image/png"), 404,
             "NOT_FOUND")

    # photo.add takes only uploads of its own ticket.
    foreign = (await upload(http, srv, other_room, tech1, image, "image/png")).json()[
        "upload_id"]
    for bad in (foreign, f"{'a' * 32}.png", "nonsense"):
        await refused(http, srv, room, "photo.add", {"upload_id": bad, "category": "after",
                                                     "caption": "x"}, tech1, 400,
                      "INVALID_ARGS")
    worker = await ws(srv, tech1)
    error = await worker.command(room, "photo.add", {"upload_id": foreign, "category": "after",
                                                      "caption": "x"})
    assert error["type"] == "error" and error["code"] == "INVALID_ARGS", error
    await worker.close()
    # A customer never adds photos, not even with an upload of the ticket.
    await refused(http, srv, room, "photo.add", {"upload_id": upload_id, "category": "after",
                                                 "caption": "x"}, cust1, 403, "FORBIDDEN")
    # ...and the file of the other ticket does not open through this one.
    error_of(await http.get(f"{srv.base}/v1/rooms/{room}/photos/{foreign}",
                            headers=admin.headers), 404, "NOT_FOUND")
    await follower.close()


# ---------------------------------------------------------------------------
# 6. The workflow over the wire


async def test_workflow_errors_and_quote_approval(srv: Server, http: httpx.AsyncClient) -> None:
    p = people(tech=Role.TECHNICIAN, cust=Role.CUSTOMER, admin=Role.ADMIN)
    tech, cust, admin = p["tech"], p["cust"], p["admin"]
    _, room = new_ticket()
    await create(http, srv, room, tech, cust, [tech])

    # An edge outside the graph, and the status it has: INVALID_TRANSITION with the moves.
    error = await refused(http, srv, room, "status.set", {"status": "repairing"}, tech, 409,
                          "INVALID_TRANSITION")
    assert error["details"] == {"status": "received",
                                "allowed": ["diagnosing", "on_hold", "cancelled"]}
    error = await refused(http, srv, room, "status.set", {"status": "received"}, tech, 409,
                          "INVALID_TRANSITION")
    assert error["details"]["status"] == "received"
    # The same over the WebSocket.
    client = await ws(srv, tech)
    answer = await client.command(room, "status.set", {"status": "collected"})
    assert answer["type"] == "error" and answer["code"] == "INVALID_TRANSITION", answer
    assert answer["details"] == {"status": "received",
                                 "allowed": ["diagnosing", "on_hold", "cancelled"]}
    await client.close()

    await command(http, srv, room, "status.set", {"status": "diagnosing"}, tech)
    # An edge of the graph the role may not take: FORBIDDEN, with the same details.
    error = await refused(http, srv, room, "status.set",
                          {"status": "cancelled", "reason": "changed my mind"}, tech, 403,
                          "FORBIDDEN")
    assert error["details"] == {"status": "diagnosing",
                                "allowed": ["awaiting_approval", "on_hold"]}
    await command(http, srv, room, "status.set", {
        "status": "awaiting_approval", "quote": {"amount": 49.99, "currency": "EUR"}}, tech)
    error = await refused(http, srv, room, "status.set", {"status": "repairing"}, tech, 403,
                          "FORBIDDEN")
    assert error["details"] == {"status": "awaiting_approval", "allowed": []}
    state = (await get_state(http, srv, room, cust)).json()["state"]
    assert state["moves"] == ["repairing", "ready_for_pickup"]

    # The customer approves over the WebSocket: the ticket is being repaired.
    client = await ws(srv, cust)
    at = (await client.subscribe(room))["seq"]
    ack = await client.command(room, "quote.approve")
    assert ack["type"] == "ack", ack
    assert ack["result"] == {"status": "repairing", "quote_id": "q1"}
    assert ack["seqs"] == [at + 1, at + 2]
    events = await client.messages(room, 2)
    assert [e["data"]["event"] for e in events] == ["quote.approved", "status.changed"]
    assert events[0]["data"] == {"event": "quote.approved", "quote_id": "q1",
                                 "on_behalf": False}
    assert (events[1]["data"]["from"], events[1]["data"]["to"]) == ("awaiting_approval",
                                                                    "repairing")
    state = (await get_state(http, srv, room, cust)).json()["state"]
    assert state["status"] == "repairing" and state["quote"]["status"] == "approved"
    assert state["moves"] == []
    again = await client.command(room, "quote.approve")
    assert answer_is(again, "INVALID_TRANSITION") == {"status": "repairing", "allowed": []}
    answer = await client.command(room, "status.set", {"status": "quality_check"})
    assert answer["type"] == "error" and answer["code"] == "FORBIDDEN", answer
    await client.close()

    # The QA gate: nothing recorded, then a failed required item, block everyone.
    await command(http, srv, room, "status.set", {"status": "quality_check"}, tech)
    error = await refused(http, srv, room, "status.set", {"status": "ready_for_pickup"}, tech,
                          409, "INVALID_TRANSITION")
    assert (error["details"]["status"], error["details"]["failed"],
            error["details"]["recorded"]) == ("quality_check", [], 0)
    qa = await command(http, srv, room, "qa.record", {"item": "Touch  Screen", "passed": False,
                                                      "note": "dead zone"}, tech)
    assert qa["result"] == {"item": "Touch Screen", "passed": False, "failed": ["Touch Screen"]}
    await command(http, srv, room, "qa.record", {"item": "Case", "passed": False,
                                                 "required": False}, tech)
    for who in (tech, admin):
        error = await refused(http, srv, room, "status.set", {"status": "ready_for_pickup"},
                              who, 409, "INVALID_TRANSITION")
        assert error["details"]["failed"] == ["Touch Screen"]
        assert error["details"]["recorded"] == 2
        assert error["details"]["status"] == "quality_check"
        assert "ready_for_pickup" in error["details"]["allowed"]
    state = (await get_state(http, srv, room, tech)).json()["state"]
    assert state["status"] == "quality_check" and state["qa"]["ready"] is False
    await command(http, srv, room, "qa.record", {"item": "touch screen", "passed": True}, tech)
    ready = await command(http, srv, room, "status.set", {"status": "ready_for_pickup"}, tech)
    assert ready["result"] == {"status": "ready_for_pickup", "from": "quality_check"}
    await command(http, srv, room, "status.set", {"status": "collected"}, tech)
    error = await refused(http, srv, room, "status.set", {"status": "cancelled",
                                                          "reason": "x"}, admin, 409,
                          "INVALID_TRANSITION")
    assert error["details"] == {"status": "collected", "allowed": []}


def answer_is(frame: dict[str, Any], code: str) -> dict[str, Any]:
    assert frame["type"] == "error" and frame["code"] == code, frame
    return frame["details"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------
# 7. Statistics


async def test_repair_stats(srv: Server, http: httpx.AsyncClient) -> None:
    p = people(techs=Role.TECHNICIAN, cust=Role.CUSTOMER, admin=Role.ADMIN)
    tech, cust, admin = p["techs"], p["cust"], p["admin"]
    _, room = new_ticket()
    _, open_room = new_ticket()
    await create(http, srv, room, tech, cust, [tech])
    for status in ("diagnosing", "awaiting_approval"):
        await command(http, srv, room, "status.set", {"status": status} | (
            {"quote": {"amount": 10, "currency": "EUR"}} if status == "awaiting_approval"
            else {}), tech)
    await command(http, srv, room, "quote.approve", {}, cust)
    await command(http, srv, room, "status.set", {"status": "quality_check"}, tech)
    await command(http, srv, room, "qa.record", {"item": "Power", "passed": True}, tech)
    await command(http, srv, room, "status.set", {"status": "ready_for_pickup"}, tech)
    await command(http, srv, room, "status.set", {"status": "collected"}, tech)
    await create(http, srv, open_room, admin, cust, [tech])
    created_ms = (await get_state(http, srv, room, admin)).json()["state"]["created_ms"]

    reply = await http.get(f"{srv.base}/v1/repairs/stats", headers=admin.headers)
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert report["tickets"] >= 2
    assert set(report["time_in_status"]) == NON_FINAL
    for row in report["time_in_status"].values():
        assert set(row) == {"tickets", "total_ms", "median_ms", "limit_ms", "breaches"}
    assert set(report["by_status"]) == ALL_STATUSES
    assert report["by_status"]["collected"] >= 1 and report["by_status"]["received"] >= 1
    assert report["repairs_counted"] >= 1 and report["turnarounds_counted"] >= 1
    [row] = [r for r in report["technicians"] if r["technician"] == tech.user]
    assert row == {"technician": tech.user, "tickets": 2, "open": 1, "repaired": 1,
                   "qa_failed": 0, "median_repair_ms": row["median_repair_ms"]}
    assert row["median_repair_ms"] >= 0
    assert report["quotes"]["sent"] >= 1 and report["quotes"]["approved"] >= 1
    assert report["qa"]["recorded"] >= 1
    assert report["sla"]["limits_ms"] == parse_sla(Settings().repair_sla)

    # The range selects tickets by creation time.
    before = (await http.get(f"{srv.base}/v1/repairs/stats", params={"to": created_ms},
                             headers=admin.headers)).json()
    assert tech.user not in {r["technician"] for r in before["technicians"]}
    since = (await http.get(f"{srv.base}/v1/repairs/stats", params={"from": created_ms},
                            headers=admin.headers)).json()
    assert tech.user in {r["technician"] for r in since["technicians"]}

    csv_reply = await http.get(f"{srv.base}/v1/repairs/stats", params={"format": "csv"},
                               headers=admin.headers)
    assert csv_reply.status_code == 200
    assert csv_reply.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_reply.text)))
    [tech_row] = [r for r in rows if (r["section"], r["key"]) == ("technician", tech.user)]
    assert (tech_row["tickets"], tech_row["open"], tech_row["repaired"]) == ("2", "1", "1")

    for who in (tech, cust):
        error_of(await http.get(f"{srv.base}/v1/repairs/stats", headers=who.headers), 403,
                 "FORBIDDEN")
    error_of(await http.get(f"{srv.base}/v1/repairs/stats"), 401, "UNAUTHORIZED")
