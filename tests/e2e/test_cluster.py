"""Several instances behind a load balancer: three ``roomlog serve`` processes on one
PostgreSQL database and one Redis (the ``cluster`` fixture), real sockets throughout.

* Fan-out: subscribers and publishers spread over the three; every subscriber gets
  every message of the room once, in seq order.
* Failures: an instance killed with SIGKILL, Redis restarted, Redis blocked (SIGSTOP).
  Clients resume from their last seq with no loss and no duplicate; the bus is shown
  as degraded while Redis is away, and the log carries the messages meanwhile.
* SIGTERM drain: ``reconnect`` frames, close 1001, writes refused with UNAVAILABLE
  and retried elsewhere with the same id, in-flight commits finished.
* Presence and admin disconnects across instances.

Clients here behave as the protocol asks a real client to: a :class:`Follower`
resubscribes with ``since={epoch, seq}`` on another instance when its connection
goes, a :class:`Writer` retries a publish with the same id on another instance when
it is refused with UNAVAILABLE or its connection goes before the answer. The timeouts
are upper bounds that only a broken cluster reaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from roomlog.identity import Role
from roomlog.publisher import lane_of
from roomlog.settings import Settings
from tests.e2e.conftest import CLUSTER_SETTINGS
from tests.e2e.support import TIMEOUT, Server, WsClient, bearer, open_client, sse, unique_room
from tests.redis_server import RedisServer

T = TypeVar("T")

PRESENCE_TTL = float(str(CLUSTER_SETTINGS["presence_ttl"]))
PRESENCE_BOUND = PRESENCE_TTL * 3 + 5  # a dead instance's entries are gone within this
LONG = 120.0  # a background reader's wait for one frame (it is cancelled at the end)


# ---------------------------------------------------------------------------
# Waiting (upper bounds only)


async def eventually(probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], *,
                     within: float = TIMEOUT, what: str) -> T:
    """Call ``probe`` until ``accept`` takes its result; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s; last: {value!r}")
        await asyncio.sleep(0.05)


async def ready(http: httpx.AsyncClient, srv: Server) -> dict[str, Any]:
    reply = await http.get(srv.base + "/health/ready")
    body: dict[str, Any] = reply.json()
    return body | {"http": reply.status_code}


async def metric(http: httpx.AsyncClient, srv: Server, sample: str) -> float:
    """The value of one sample (``name`` or ``name{labels}``) of ``/metrics``."""
    reply = await http.get(srv.base + "/metrics")
    assert reply.status_code == 200
    for line in reply.text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    raise AssertionError(f"no {sample} in /metrics:\n{reply.text}")


async def presence(http: httpx.AsyncClient, srv: Server, room: str) -> dict[str, Any]:
    reply = await http.get(f"{srv.base}/v1/rooms/{room}/presence",
                           headers=bearer("auditor", Role.ADMIN))
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def bus_listeners(redis_server: RedisServer, room: str) -> int:
    """How many instances listen to the room's Redis channel (``PUBSUB NUMSUB``)."""
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        [(_, listeners)] = await client.pubsub_numsub(f"roomlog:room:{room}")
    finally:
        await client.aclose()
    return int(listeners)


async def listened(redis_server: RedisServer, room: str, instances: int) -> None:
    """Wait until ``instances`` instances receive the room's signals over Redis.

    An instance's subscription to a room's channel becomes active shortly *after*
    its first subscriber got ``subscribed``. A join signalled in between reaches a
    watcher through the ``presence`` list sent once the channel is active, not as a
    diff; tests that count diffs from several instances wait for the channels first.
    """
    await eventually(lambda: bus_listeners(redis_server, room), lambda n: n == instances,
                     what=f"{instances} instances on the room's channel")


def per_user(listing: dict[str, Any]) -> dict[str, int]:
    return {u["user"]: u["connections"] for u in listing["users"]}


async def read_log(http: httpx.AsyncClient, srv: Server, room: str) -> list[dict[str, Any]]:
    """Every message of the room, read page by page over the long-poll endpoint."""
    frames: list[dict[str, Any]] = []
    after = 0
    while True:
        reply = await http.get(f"{srv.base}/v1/rooms/{room}/messages",
                               params={"after": after, "limit": 1000},
                               headers=bearer("auditor", Role.ADMIN))
        assert reply.status_code == 200, reply.text
        page = reply.json()
        if not page["frames"]:
            return frames
        assert all(f["type"] == "message" for f in page["frames"]), page["frames"]
        frames += page["frames"]
        after = page["next"]


# ---------------------------------------------------------------------------
# Clients that move between instances


async def open_somewhere(servers: list[Server], start: int, *, user: str,
                         role: Role = Role.GUEST) -> tuple[int, WsClient]:
    """Connect to the first instance from ``start`` on (wrapping) that takes us."""
    last: Exception | None = None
    for step in range(len(servers)):
        index = (start + step) % len(servers)
        try:
            return index, await open_client(servers[index].ws_url, user=user, role=role)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            last = exc
    raise AssertionError(f"no instance takes a connection: {last!r}")


class Follower:
    """A subscriber of one room that keeps every message it gets, in order.

    With ``follow`` it behaves like a good client: when its connection closes it
    waits ``retry_after`` of the last ``reconnect`` frame, connects to the next
    instance and resubscribes with ``since={epoch, last seq}``. Without it a close
    fails the follower. A ``reset`` or ``error`` frame always fails it.
    """

    def __init__(self, name: str, room: str, servers: list[Server], home: int, *,
                 follow: bool = True, presence: bool = False) -> None:
        self.name = name
        self.room = room
        self.servers = servers
        self.at = home
        self.hops = [home]  # instances it was connected to, in order
        self.follow = follow
        self.presence = presence
        self.got: list[dict[str, Any]] = []  # message frames, across connections
        self.start_seq = 0
        self.epoch = ""
        self.closes: list[int] = []
        self.reconnects: list[dict[str, Any]] = []  # reconnect frames
        self.resumed: list[dict[str, Any]] = []  # subscribed frames of resubscriptions
        self.diffs: list[dict[str, Any]] = []  # presence_diff frames
        self.lists: list[dict[str, Any]] = []  # presence frames (the full list)
        self.failure: BaseException | None = None
        self.client: WsClient | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def seq(self) -> int:
        return int(self.got[-1]["seq"]) if self.got else self.start_seq

    async def start(self) -> Follower:
        self.client = await open_client(self.servers[self.at].ws_url, user=self.name)
        extra = {"presence": True} if self.presence else {}
        subscribed = await self.client.subscribe(self.room, **extra)
        self.epoch, self.start_seq = subscribed["epoch"], subscribed["head"]
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        try:
            while True:
                await self._pump()
                if not self.follow:
                    raise AssertionError(f"{self.name}: closed with {self.closes[-1]}")
                await self._move()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.failure = exc
            self._changed.set()

    async def _pump(self) -> None:
        client = self.client
        assert client is not None
        while True:
            try:
                frame = await client.next(within=LONG)
            except AssertionError:
                if client.close_code is None:
                    raise
                self.closes.append(client.close_code)
                self._changed.set()
                return
            kind = frame["type"]
            if kind == "message":
                assert frame["room"] == self.room, frame
                self.got.append(frame)
            elif kind == "reconnect":
                self.reconnects.append(frame)
            elif kind == "presence_diff":
                self.diffs.append(frame)
            elif kind == "presence":  # the list, each time the bus (re)carries the room
                self.lists.append(frame)
            elif kind != "pong":
                raise AssertionError(f"{self.name}: unexpected frame {frame}")
            self._changed.set()

    async def _move(self) -> None:
        if self.closes[-1] == 1001 and self.reconnects:  # drained: come back as advised
            await asyncio.sleep(float(self.reconnects[-1]["retry_after"]))
        self.at, self.client = await open_somewhere(self.servers, self.at + 1, user=self.name)
        self.hops.append(self.at)
        extra = {"presence": True} if self.presence else {}
        subscribed = await self.client.subscribe(
            self.room, since={"epoch": self.epoch, "seq": self.seq}, **extra)
        self.resumed.append(subscribed)
        assert subscribed["epoch"] == self.epoch, subscribed
        self._changed.set()

    async def until(self, done: Callable[[], bool], what: str,
                    within: float = TIMEOUT * 2) -> None:
        deadline = time.monotonic() + within
        while not done():
            if self.failure is not None:
                raise AssertionError(f"{self.name} failed: {self.failure!r}") from self.failure
            self._changed.clear()
            if done():
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.name}: {what} not within {within}s; has {len(self.got)} messages "
                    f"up to seq {self.seq}, hops {self.hops}, closes {self.closes}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        if self.failure is not None:
            raise AssertionError(f"{self.name} failed: {self.failure!r}") from self.failure

    async def reach(self, seq: int, within: float = TIMEOUT * 2) -> None:
        await self.until(lambda: self.seq >= seq, f"seq {seq}", within)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.close(), 5)
        if self.failure is not None:
            raise AssertionError(f"{self.name} failed: {self.failure!r}") from self.failure

    def check_stream(self, log: list[dict[str, Any]]) -> None:
        """Exactly the log's messages after where it began: each once, in seq order."""
        expected = [(m["seq"], m["epoch"], m["data"]) for m in log if m["seq"] > self.start_seq]
        got = [(m["seq"], m["epoch"], m["data"]) for m in self.got]
        seqs = [seq for seq, _, _ in got]
        assert seqs == list(range(self.start_seq + 1, self.start_seq + 1 + len(seqs))), (
            f"{self.name}: seqs not contiguous from {self.start_seq + 1}: "
            f"dupes {[s for s, n in Counter(seqs).items() if n > 1][:10]}, "
            f"hops {self.hops}")
        assert got == expected, f"{self.name}: {len(got)} messages, log has {len(expected)}"


class Writer:
    """Publishes ``{"w": name, "i": i, "id": id}`` one at a time, every ``pace``
    seconds, until stopped. A publish refused with UNAVAILABLE, or whose connection
    closed before its answer, is retried with the same id on the next instance."""

    def __init__(self, name: str, room: str, servers: list[Server], home: int, *,
                 pace: float = 0.02) -> None:
        self.name = name
        self.room = room
        self.servers = servers
        self.at = home
        self.hops = [home]
        self.pace = pace
        self.acks: dict[str, dict[str, Any]] = {}  # id -> ack
        self.refused: list[str] = []  # ids answered UNAVAILABLE (retried elsewhere)
        self.lost: list[str] = []  # ids whose connection went before the answer (retried)
        self.reconnects: list[dict[str, Any]] = []  # reconnect frames seen before moving
        self.client: WsClient | None = None
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Writer:
        self.client = await open_client(self.servers[self.at].ws_url, user=self.name,
                                        role=Role.SERVICE)
        self._task = asyncio.create_task(self._run())
        return self

    @property
    def last_seq(self) -> int:
        return max((ack["seq"] for ack in self.acks.values()), default=0)

    async def _run(self) -> None:
        i = 0
        while not self._stopping.is_set():
            i += 1
            ident = f"{self.name}-{i}"
            await self.publish(ident, {"w": self.name, "i": i, "id": ident})
            self._changed.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.pace)

    async def publish(self, ident: str, data: dict[str, Any]) -> dict[str, Any]:
        while True:
            client = self.client
            assert client is not None
            try:
                await client.send({"type": "publish", "room": self.room, "data": data,
                                   "id": ident})
                reply = await client.reply(ident)
            except ConnectionClosed:
                reply = None
            except AssertionError:
                if client.close_code is None:
                    raise  # no answer on an open connection: a broken server
                reply = None
            if reply is not None and reply["type"] == "ack":
                assert reply["room"] == self.room and reply["id"] == ident, reply
                self.acks[ident] = reply
                return reply
            if reply is None:
                self.lost.append(ident)
            elif reply.get("code") == "UNAVAILABLE":
                self.refused.append(ident)
            else:
                raise AssertionError(f"{self.name}: publish {ident} answered {reply}")
            await self._move()

    async def _move(self) -> None:
        old = self.client
        assert old is not None
        self.reconnects += [f for f in old.frames if f["type"] == "reconnect"]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.close(), 5)
        self.at, self.client = await open_somewhere(self.servers, self.at + 1, user=self.name,
                                                    role=Role.SERVICE)
        self.hops.append(self.at)

    async def until(self, done: Callable[[], bool], what: str,
                    within: float = TIMEOUT) -> None:
        deadline = time.monotonic() + within
        while not done():
            assert self._task is not None
            if self._task.done():
                self._task.result()  # its exception
                raise AssertionError(f"{self.name} stopped before {what}")
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: {what} not within {within}s; "
                                     f"{len(self.acks)} acks, hops {self.hops}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def stop(self) -> None:
        """Finish the publish under way, then stop; raises what failed the writer."""
        self._stopping.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, TIMEOUT * 2)
        assert self.client is not None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.close(), 5)

    def published(self) -> dict[str, dict[str, Any]]:
        """id -> data of every publish that was acknowledged."""
        return {ident: {"w": self.name, "i": int(ident.rsplit("-", 1)[1]), "id": ident}
                for ident in self.acks}


async def stop_all(*groups: list[Any]) -> None:
    """Stop followers and writers, raising the first failure after stopping all."""
    errors = []
    for group in groups:
        for client in group:
            try:
                await client.stop()
            except BaseException as exc:
                errors.append(exc)
    if errors:
        raise errors[0]


def check_log(log: list[dict[str, Any]], writers: list[Writer], epoch: str) -> None:
    """The log is seqs 1..N in one epoch; each acknowledged or retried id once."""
    assert [m["seq"] for m in log] == list(range(1, len(log) + 1))
    assert {m["epoch"] for m in log} == {epoch}
    ids = Counter(m["data"]["id"] for m in log)
    assert [i for i, n in ids.items() if n > 1] == []
    for writer in writers:
        assert set(writer.acks) <= set(ids), f"{writer.name}: acked ids missing from the log"
        for ident, ack in writer.acks.items():
            stored = log[ack["seq"] - 1]
            assert stored["data"]["id"] == ident and stored["by"] == writer.name, (ack, stored)
            assert ack["epoch"] == epoch


# ---------------------------------------------------------------------------
# 1. Fan-out across instances


async def test_subscribers_on_every_instance_get_every_message_once_in_order(
    cluster: list[Server], http: httpx.AsyncClient,
) -> None:
    room = unique_room()
    per_publisher = 100
    async with contextlib.AsyncExitStack() as stack:
        subscribers = []
        for i in range(2 * len(cluster)):  # two on each instance
            client = await open_client(cluster[i % len(cluster)].ws_url, user=f"sub{i}")
            stack.push_async_callback(client.close)
            subscribers.append(client)
        confirmations = await asyncio.gather(*(s.subscribe(room) for s in subscribers))
        epoch = confirmations[0]["epoch"]
        assert [(f["epoch"], f["head"]) for f in confirmations] == [(epoch, 0)] * len(subscribers)

        publishers = [await open_client(srv.ws_url, user=f"pub{p}", role=Role.SERVICE)
                      for p, srv in enumerate(cluster)]
        for pub in publishers:
            stack.push_async_callback(pub.close)
        total = per_publisher * len(publishers)

        acks_per_publisher, streams = await asyncio.gather(
            asyncio.gather(*(pub.publish_many(room, [{"p": p, "i": i}
                                                     for i in range(per_publisher)])
                             for p, pub in enumerate(publishers))),
            asyncio.gather(*(s.messages(room, total, within=60) for s in subscribers)),
        )

        acked = {}
        for p, acks in enumerate(acks_per_publisher):
            for i, ack in enumerate(acks):
                assert ack["epoch"] == epoch and ack["duplicate"] is False
                acked[ack["seq"]] = {"p": p, "i": i}
        assert sorted(acked) == list(range(1, total + 1))
        for n, got in enumerate(streams):
            assert [m["seq"] for m in got] == list(range(1, total + 1)), f"sub{n}"
            assert {m["epoch"] for m in got} == {epoch}
            assert {m["seq"]: m["data"] for m in got} == acked, f"sub{n}"
            assert sorted((d["p"], d["i"]) for d in acked.values()) == sorted(
                (m["data"]["p"], m["data"]["i"]) for m in got)

        # One more message from each instance, one after the other: the next frames of
        # every subscriber are exactly those (nothing late, nothing repeated).
        for p, pub in enumerate(publishers):
            await pub.publish(room, {"p": p, "i": "last"})
        for n, sub in enumerate(subscribers):
            tail = await sub.messages(room, len(publishers))
            assert [(m["seq"], m["data"]) for m in tail] == [
                (total + 1 + p, {"p": p, "i": "last"}) for p in range(len(publishers))], f"sub{n}"
            await sub.ping()
            assert [f for f in sub.frames if f["type"] in ("message", "reset")] == []

    # Messages of the other instances came over the bus (not from log polling).
    for srv in cluster:
        assert await metric(http, srv, "roomlog_bus_messages_in_total") > 0
        assert await metric(http, srv, "roomlog_bus_connected") == 1


# ---------------------------------------------------------------------------
# 2. An instance killed with SIGKILL


async def test_clients_of_a_killed_instance_resume_elsewhere_and_presence_forgets_it(
    cluster: list[Server], redis_server: RedisServer, http: httpx.AsyncClient,
) -> None:
    a, b, c = cluster
    room = unique_room()
    followers = [Follower(f"reader{i}", room, cluster, i % 3, presence=(i == 0))
                 for i in range(6)]  # reader2 and reader5 live on c; reader0 watches presence
    writers: list[Writer] = []
    ghost = None
    try:
        for f in followers:
            await f.start()
        await listened(redis_server, room, 3)
        # A subscriber on c that will not come back: only the TTL removes it.
        ghost = await open_client(c.ws_url, user="ghost")
        await ghost.subscribe(room)
        listing = await eventually(lambda: presence(http, b, room),
                                   lambda p: p["connections"] == 7, what="7 present")
        assert per_user(listing) == {f.name: 1 for f in followers} | {"ghost": 1}

        writers = [await Writer("writer-a", room, cluster, 0, pace=0.01).start()]
        for f in followers:
            await f.reach(20)

        c_instance = (await ready(http, c))["instance"]
        await c.akill()  # mid-stream: no goodbye to anyone
        movers = [f for f in followers if f.hops[0] == 2]
        for f in movers:
            await f.until(lambda f=f: len(f.resumed) == 1, "a resubscription")
            assert f.closes == [1006] and f.hops == [2, 0]
        # They go on from where they were, past what was published while they moved.
        mark = writers[0].last_seq + 20
        for f in followers:
            await f.reach(mark)

        # The dead instance's connections leave the presence list within the bound;
        # the moved readers are there once each (their new connections on a).
        listing = await eventually(lambda: presence(http, b, room),
                                   lambda p: "ghost" not in per_user(p),
                                   within=PRESENCE_BOUND, what="ghost gone from presence")
        assert per_user(listing) == {f.name: 1 for f in followers}
        assert listing["connections"] == 6
        assert (await presence(http, a, room))["users"] == listing["users"]
        # ... and the watcher on a is told the ghost left.
        watcher = followers[0]
        await watcher.until(lambda: any(m["user"] == "ghost" for d in watcher.diffs
                                        for m in d["leaves"]), "the ghost's leave",
                            within=PRESENCE_BOUND)

        for writer in writers:
            await writer.stop()
        log = await read_log(http, a, room)
        check_log(log, writers, followers[0].epoch)
        for f in followers:
            await f.reach(len(log))
            f.check_stream(log)

        # The ghost joined once (on c) and left once (signalled by the sweeping survivor).
        joins = [m for d in watcher.diffs for m in d["joins"] if m["user"] == "ghost"]
        leaves = [m for d in watcher.diffs for m in d["leaves"] if m["user"] == "ghost"]
        assert joins == leaves == [{"user": "ghost", "role": "guest", "conn": joins[0]["conn"]}]
        assert joins[0]["conn"].startswith(c_instance + ".")
        for srv in (a, b):  # a peer's death does not degrade the others
            assert (await ready(http, srv))["bus"] == "ok"
    finally:
        await stop_all(writers, followers)
        if ghost is not None:
            ghost.abort()


# ---------------------------------------------------------------------------
# 3, 4. Redis restarted, Redis blocked


async def bus_state(http: httpx.AsyncClient, srv: Server) -> tuple[str, str, int, float]:
    health = await ready(http, srv)
    return (health["bus"], health["status"], health["http"],
            await metric(http, srv, "roomlog_bus_connected"))


DEGRADED = ("degraded", "degraded", 200, 0.0)
HEALTHY = ("ok", "ok", 200, 1.0)


@pytest.mark.parametrize("outage", ["restart", "pause"])
async def test_a_redis_outage_loses_nothing_and_shows_as_degraded(
    outage: str, cluster: list[Server], redis_server: RedisServer, http: httpx.AsyncClient,
) -> None:
    """Redis stopped and started again on its port (``restart``: its data is gone), or
    blocked with SIGSTOP for a few seconds (``pause``: connections stay open, nothing
    answers), while one instance publishes and the others' subscribers read."""
    a, b, c = cluster
    room = unique_room()
    followers = [Follower(f"reader{i}", room, cluster, home, follow=False, presence=(i == 0))
                 for i, home in enumerate([0, 1, 1, 2, 2])]  # reader0 watches presence
    writers: list[Writer] = []
    try:
        for f in followers:
            await f.start()
        writers = [await Writer("writer-a", room, cluster, 0, pace=0.01).start()]
        writer = writers[0]
        for f in followers:
            await f.reach(10)
        for srv in cluster:
            assert await bus_state(http, srv) == HEALTHY
        reconnects = [await metric(http, srv, "roomlog_bus_reconnects_total")
                      for srv in cluster]

        began = time.monotonic()
        if outage == "restart":
            await asyncio.to_thread(redis_server.stop)
        else:
            redis_server.pause()
        try:
            for srv in cluster:
                await eventually(lambda srv=srv: bus_state(http, srv), lambda s: s == DEGRADED,
                                 what=f"{srv.base} degraded")
            # While Redis is away the log carries the messages: the readers on b and c
            # get what a commits now (polled every bus_poll_interval).
            await writer.until(lambda: writer.last_seq > 0, "an ack")
            mark = writer.last_seq + 10
            await writer.until(lambda: writer.last_seq >= mark, f"seq {mark}")
            for f in followers:
                await f.reach(mark)
            if outage == "pause":  # blocked for a few seconds at least
                await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - began)))
        finally:
            if outage == "restart":
                await asyncio.to_thread(redis_server.start)
            else:
                redis_server.resume()

        for srv in cluster:
            await eventually(lambda srv=srv: bus_state(http, srv), lambda s: s == HEALTHY,
                             what=f"{srv.base} healthy again")
        for srv, before in zip(cluster, reconnects, strict=True):
            assert await metric(http, srv, "roomlog_bus_reconnects_total") > before
        # The bus carries messages again (b and c receive a's commits from it).
        carried = [await metric(http, srv, "roomlog_bus_messages_in_total") for srv in (b, c)]
        mark = writer.last_seq + 20
        for f in followers:
            await f.reach(mark)
        for srv, before in zip((b, c), carried, strict=True):
            assert await metric(http, srv, "roomlog_bus_messages_in_total") > before

        await writer.stop()
        log = await read_log(http, b, room)
        check_log(log, writers, followers[0].epoch)
        assert writer.refused == writer.lost == []  # commits never needed Redis
        for f in followers:
            await f.reach(len(log))
            f.check_stream(log)
            assert f.closes == []

        # Presence lives in Redis: every instance writes its own entries again.
        listing = await eventually(lambda: presence(http, a, room),
                                   lambda p: p["connections"] == len(followers),
                                   within=PRESENCE_BOUND, what="presence rewritten")
        assert per_user(listing) == {f.name: 1 for f in followers}
        # Nobody left: an outage of Redis must not announce live connections as gone.
        assert left(followers[0].diffs) == []
        # The bus subscribed the room again after the outage: the watcher got the list again.
        assert len(followers[0].lists) >= 2
    finally:
        await stop_all(writers, followers)


# ---------------------------------------------------------------------------
# 5. SIGTERM drain


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def test_a_draining_instance_hands_its_clients_over_without_losing_a_write(
    cluster: list[Server], http: httpx.AsyncClient, pg_migrated: str,
) -> None:
    a, b, c = cluster
    room = unique_room()
    # The held room is in another commit lane than the writers' room: a room whose
    # lock is held delays its own lane only (tests/test_publisher.py), and this test
    # is about the drain, which must not wait for the writers' commits.
    lanes = Settings(database_url=pg_migrated).lanes  # the cluster's (on PostgreSQL)
    held_room = next(name for name in (unique_room() for _ in range(100))
                     if lane_of(name, lanes) != lane_of(room, lanes))
    followers = [Follower(f"reader{i}", room, cluster, i % 3) for i in range(6)]
    writers: list[Writer] = []
    holder = retry = None
    db = await asyncpg.connect(asyncpg_dsn(pg_migrated), timeout=10)
    lock = db.transaction()
    try:
        for f in followers:
            await f.start()
        writers = [await Writer(f"writer-{name}", room, cluster, i).start()
                   for i, name in enumerate("abc")]
        for f in followers:
            await f.reach(20)

        # A write on c that cannot commit yet: its room's row is locked in the database,
        # so the drain has a commit in flight to wait for.
        holder = await open_client(c.ws_url, user="holder", role=Role.SERVICE)
        await holder.publish(held_room, {"id": "held-0"}, "held-0")
        await lock.start()
        await db.execute("SELECT 1 FROM rt_rooms WHERE name = $1 FOR UPDATE", held_room)
        await holder.send({"type": "publish", "room": held_room, "id": "held-1",
                           "data": {"id": "held-1"}})
        await eventually(
            lambda: db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE "
                                "datname = current_database() AND wait_event_type = 'Lock'"),
            lambda n: n >= 1, what="the held write waiting for the room's lock")

        async with httpx.AsyncClient(timeout=TIMEOUT) as to_c:  # kept alive through the drain
            assert (await ready(to_c, c))["status"] == "ok"
            stopping = asyncio.create_task(c.astop())
            advice = await holder.expect("reconnect")
            assert advice["reason"] == "server draining" and 0 <= advice["retry_after"] <= 1
            health = await ready(to_c, c)
            assert (health["status"], health["http"]) == ("draining", 503)

        # New writes on c are refused; the same id then takes effect once elsewhere.
        await holder.send({"type": "publish", "room": room, "id": "holder-1",
                           "data": {"id": "holder-1"}})
        refused = await holder.reply("holder-1")
        assert (refused["type"], refused["code"]) == ("error", "UNAVAILABLE"), refused
        assert refused["retry_after"] > 0
        await writers[2].until(lambda: bool(writers[2].refused), "a refused publish on c")
        retry = await open_client(a.ws_url, user="holder", role=Role.SERVICE)
        first = await retry.publish(room, {"id": "holder-1"}, "holder-1")
        assert first["duplicate"] is False
        await retry.close()
        retry = await open_client(b.ws_url, user="holder", role=Role.SERVICE)
        again = await retry.publish(room, {"id": "holder-1"}, "holder-1")
        assert (again["duplicate"], again["seq"]) == (True, first["seq"])

        # The commit in flight finishes: its ack arrives, then the close.
        await lock.rollback()
        held = await holder.reply("held-1")
        assert (held["type"], held["seq"], held["duplicate"]) == ("ack", 2, False), held
        assert await holder.closed() == 1001
        assert await stopping in (0, -signal.SIGTERM)
        c.assert_clean_log()

        # c's readers were told, closed with 1001, and resumed on a.
        for f in followers:
            if f.hops[0] == 2:
                await f.until(lambda f=f: len(f.resumed) == 1, "a resubscription")
                assert f.closes == [1001] and f.hops == [2, 0]
                assert [r["reason"] for r in f.reconnects] == ["server draining"]
        assert writers[2].hops[:2] == [2, 0] and writers[2].lost == []
        assert [r["reason"] for r in writers[2].reconnects] == ["server draining"]
        mark = max(w.last_seq for w in writers) + 20
        for f in followers:
            await f.reach(mark)

        for writer in writers:
            await writer.stop()
        log = await read_log(http, a, room)
        check_log(log, writers, followers[0].epoch)
        ids = Counter(m["data"]["id"] for m in log)
        assert ids["holder-1"] == 1 and log[first["seq"] - 1]["data"] == {"id": "holder-1"}
        for ident in writers[2].refused:  # refused on c, retried on a: stored once
            assert ident in writers[2].acks and ids[ident] == 1
        for f in followers:
            await f.reach(len(log))
            f.check_stream(log)
        assert [m["data"]["id"] for m in await read_log(http, b, held_room)] == [
            "held-0", "held-1"]
    finally:
        with contextlib.suppress(Exception):  # when the test failed with the lock held
            await lock.rollback()
        await db.close()
        await stop_all(writers, followers)
        for client in (holder, retry):
            if client is not None:
                client.abort()


# ---------------------------------------------------------------------------
# 6. Presence across instances


async def diffs_until(client: WsClient, room: str, done: Callable[[list[dict[str, Any]]], bool],
                      seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Take ``presence_diff`` frames of ``room`` into ``seen`` until ``done(seen)``."""
    while not done(seen):
        try:
            diff = await client.expect("presence_diff", room=room)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; notices so far: {seen}") from None
        assert set(diff) == {"type", "room", "joins", "leaves"}, diff
        seen.append(diff)
    return seen


def joined(diffs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for d in diffs for m in d["joins"]]


def left(diffs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for d in diffs for m in d["leaves"]]


async def test_presence_is_shared_and_announced_across_instances(
    cluster: list[Server], redis_server: RedisServer, http: httpx.AsyncClient,
) -> None:
    a, b, c = cluster
    room = unique_room()
    instance = [(await ready(http, srv))["instance"] for srv in cluster]
    assert len(set(instance)) == 3
    async with contextlib.AsyncExitStack() as stack:
        async def member(srv: Server, user: str, role: Role = Role.GUEST,
                         **extra: Any) -> WsClient:
            client = await open_client(srv.ws_url, user=user, role=role)
            stack.push_async_callback(client.close)
            await client.subscribe(room, **extra)
            return client

        watcher = await member(a, "watcher", presence=True)
        quiet = await member(a, "quiet")  # did not ask for notices
        # The list comes once a's bus carries the room's signals: every join after it
        # arrives as a diff (the join of someone on b or c is never lost in between).
        initial = await watcher.expect("presence", room=room)
        assert {u["user"] for u in initial["users"]} <= {"watcher", "quiet"}
        await member(b, "alice")
        alice_c = await member(c, "alice")
        bob = await member(c, "bob", Role.DJ)
        carol_stream = await stack.enter_async_context(contextlib.AsyncExitStack())
        carol = await carol_stream.enter_async_context(
            sse(http, b, room, headers=bearer("carol")))  # an SSE stream is present too
        assert (await carol.next())["event"] == "subscribed"

        diffs: list[dict[str, Any]] = []
        await diffs_until(watcher, room, lambda d: {m["user"] for m in joined(d)} >= {
            "quiet", "alice", "bob", "carol"} and len(joined(d)) >= 6, diffs)
        assert left(diffs) == []
        by_user: dict[str, list[dict[str, Any]]] = {}
        for m in joined(diffs):
            by_user.setdefault(m["user"], []).append(m)
        home = {conn["conn"].rsplit(".", 1)[0] for conn in by_user["alice"]}
        assert home == {instance[1], instance[2]}  # one connection on b, one on c
        assert [(m["role"], m["conn"].rsplit(".", 1)[0]) for m in by_user["bob"]] == [
            ("dj", instance[2])]
        assert [m["conn"].rsplit(".", 1)[0] for m in by_user["carol"]] == [instance[1]]
        assert len({m["conn"] for m in joined(diffs)}) == len(joined(diffs)) == 6

        expected = {"room": room, "connections": 6, "users": [
            {"user": "alice", "role": "guest", "connections": 2},
            {"user": "bob", "role": "dj", "connections": 1},
            {"user": "carol", "role": "guest", "connections": 1},
            {"user": "quiet", "role": "guest", "connections": 1},
            {"user": "watcher", "role": "guest", "connections": 1}]}
        for srv in cluster:
            assert await eventually(lambda srv=srv: presence(http, srv, room),
                                    lambda p: p == expected, what="presence listing") == expected
        await watcher.send({"type": "presence", "room": room, "id": "who"})
        assert await watcher.expect("presence", id="who") == {"type": "presence", "id": "who",
                                                              **expected}

        # Leaves: a closed WebSocket, an unsubscribe, an SSE stream that ends.
        alice_conn = next(m["conn"] for m in by_user["alice"]
                          if m["conn"].startswith(instance[2] + "."))
        await alice_c.close()
        await bob.send({"type": "unsubscribe", "room": room})
        await bob.expect("unsubscribed", room=room)
        await carol_stream.aclose()
        gone = await diffs_until(watcher, room, lambda d: len(left(d)) >= 3, [])
        assert sorted((m["user"], m["role"], m["conn"]) for m in left(gone)) == [
            ("alice", "guest", alice_conn), ("bob", "dj", by_user["bob"][0]["conn"]),
            ("carol", "guest", by_user["carol"][0]["conn"])]
        assert joined(gone) == []
        expected = {"room": room, "connections": 3, "users": [
            {"user": "alice", "role": "guest", "connections": 1},
            {"user": "quiet", "role": "guest", "connections": 1},
            {"user": "watcher", "role": "guest", "connections": 1}]}
        for srv in cluster:
            await eventually(lambda srv=srv: presence(http, srv, room), lambda p: p == expected,
                             what="presence after leaves")

        # Only the subscriber that asked gets notices.
        await quiet.ping()
        assert [f for f in quiet.frames if f["type"] == "presence_diff"] == []


# ---------------------------------------------------------------------------
# 7. Admin disconnects across instances


async def sse_ended(stream: Any) -> bool:
    """Read the stream to its end (True), within the upper bound."""
    try:
        while True:
            await stream.next()
    except StopAsyncIteration:
        return True


async def test_an_admin_disconnect_on_one_instance_closes_the_user_everywhere(
    cluster: list[Server], redis_server: RedisServer, http: httpx.AsyncClient,
) -> None:
    a, b, c = cluster
    room = unique_room()
    instance = [(await ready(http, srv))["instance"] for srv in cluster]
    async with contextlib.AsyncExitStack() as stack:
        async def member(srv: Server, user: str, **extra: Any) -> WsClient:
            client = await open_client(srv.ws_url, user=user)
            stack.push_async_callback(client.close)
            await client.subscribe(room, **extra)
            return client

        watcher = await member(a, "watcher", presence=True)
        await watcher.expect("presence", room=room)  # a's bus carries the room's signals
        mallory = [await member(b, "mallory"), await member(c, "mallory")]
        mallory_sse = await stack.enter_async_context(
            sse(http, b, room, headers=bearer("mallory")))
        assert (await mallory_sse.next())["event"] == "subscribed"
        trent = [await member(srv, "trent") for srv in cluster]
        diffs = await diffs_until(watcher, room, lambda d: len(joined(d)) >= 7, [])
        conns = [(m["user"], m["conn"]) for m in joined(diffs)]
        trent_on_c = [conn for user, conn in conns
                      if user == "trent" and conn.startswith(instance[2] + ".")]
        assert len(trent_on_c) == 1
        await eventually(lambda: presence(http, c, room),
                         lambda p: per_user(p) == {"mallory": 3, "trent": 3, "watcher": 1},
                         what="everyone present")

        # Only admins and services may.
        denied = await http.post(a.base + "/v1/admin/disconnect", json={"user": "mallory"},
                                 headers=bearer("trent"))
        assert (denied.status_code, denied.json()["error"]["code"]) == (403, "FORBIDDEN")

        # From a, where mallory has no connection: closed on b and c, with the code asked.
        reply = await http.post(a.base + "/v1/admin/disconnect",
                                json={"user": "mallory", "code": 4003, "reason": "banned"},
                                headers=bearer("root", Role.ADMIN))
        assert reply.status_code == 200, reply.text
        assert reply.json()["audit_seq"] >= 1  # the action's entry in audit:moderation
        assert reply.json() == {"closed_here": 0, "broadcast": True,
                                "audit_seq": reply.json()["audit_seq"]}
        for client in mallory:
            assert await client.closed() == 4003
            assert client.close_reason == "banned"
        assert await asyncio.wait_for(sse_ended(mallory_sse), TIMEOUT)
        gone = await diffs_until(watcher, room, lambda d: len(left(d)) >= 3, [])
        assert sorted(m["conn"] for m in left(gone)) == sorted(
            conn for user, conn in conns if user == "mallory")
        await eventually(lambda: presence(http, a, room),
                         lambda p: per_user(p) == {"trent": 3, "watcher": 1},
                         what="mallory gone from presence")

        # One connection by its id, from b, with another code: only that one closes.
        reply = await http.post(b.base + "/v1/admin/disconnect",
                                json={"conn": trent_on_c[0], "code": 4001},
                                headers=bearer("backend", Role.SERVICE))
        assert reply.json() == {"closed_here": 0, "broadcast": True,
                                "audit_seq": reply.json()["audit_seq"]}
        assert await trent[2].closed() == 4001
        assert trent[2].close_reason == "disconnected by an admin"
        for client in (*trent[:2], watcher):
            await client.ping()
            assert client.close_code is None
        await eventually(lambda: presence(http, b, room),
                         lambda p: per_user(p) == {"trent": 2, "watcher": 1},
                         what="trent's closed connection gone from presence")

    counted = [await metric(http, srv, "roomlog_admin_disconnects_total") for srv in cluster]
    assert counted == [0, 2, 2]  # b: a WebSocket and an SSE stream; c: two WebSockets
