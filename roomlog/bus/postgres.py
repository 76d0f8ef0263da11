"""The PostgreSQL bus: ``LISTEN``/``NOTIFY`` between instances, presence in two
tables. The one module of the bus that imports ``asyncpg``.

It lets several instances (``roomlog serve --workers N``, or several hosts) run
with PostgreSQL alone, no Redis: the log's own database carries the bus.

Channels and tables:

* ``{prefix}r{hash}``: a room's channel (a hash of the room name, since channel
  names are identifiers of at most 63 bytes); messages and signals.
* ``{prefix}control``: broadcasts to every instance.
* ``rt_bus_instances``: ``instance -> beat_ms``, the last heartbeat.
* ``rt_bus_presence``: ``(room, conn) -> instance, entry`` (JSON).
* ``rt_bus_buckets``: ``key -> tokens, at_ms, granted, wait``: the shared rate
  buckets (``take``), refilled on PostgreSQL's clock in one statement per round of
  takes (migrations 0007 and 0008).

Every payload is base64 of msgpack ``[instance, n, kind, body]`` (``n`` counts
this instance's notifications: PostgreSQL folds identical payloads sent in one
transaction into one). An instance drops what it sent itself. A payload may
hold at most 8000 bytes: a publish is split into notifications that fit, and a
message too large for any is not carried: its receivers are told to resync the
room from the log instead.

Three background tasks, as in the Redis bus:

* the **listener** owns a connection that only listens. It applies (un)listen
  requests as they come, pings every ``ping_interval`` and, when nothing
  answers within ``ping_timeout`` or the link drops, reconnects with capped,
  jittered backoff, listens again and resyncs every room. A confirmed
  ``LISTEN`` asks the instance to resync that room from the log.
* the **writer** sends queued notifications and presence writes in order on a
  connection of its own, never blocking the commit path. When PostgreSQL
  fails, queued publishes are dropped (receivers repair from the log) and
  presence is written again in full once it answers.
* the **heartbeat** marks this instance alive every ``presence_ttl / 3`` and
  removes the entries of instances silent for ``presence_ttl``; the ``DELETE``
  that removes a dead instance's row is won by one sweeper, which signals its
  leaves.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import random
import secrets
import socket
import time
from collections import deque
from typing import Any

import asyncpg
import msgpack
import orjson

from roomlog.bus import Inbound
from roomlog.bus.takes import TakeRounds
from roomlog.errors import Unavailable, describe
from roomlog.protocol import Message
from roomlog.ratelimit import Buckets

__all__ = ["MAX_PAYLOAD", "PostgresBus", "dsn_of"]

logger = logging.getLogger(__name__)

MAX_PAYLOAD = 7999  # bytes of one NOTIFY payload (PostgreSQL refuses 8000 and more)
_START_WAIT = 3.0  # seconds start() waits for the first connection before going on degraded
_ROUND_MAX = 500  # notifications sent in one statement at most

# An outbound operation: a notification (channel, payload, is a publish), or a SQL
# statement with its arguments (presence writes).
_Notify = tuple[str, str, bool]
_Sql = tuple[str, tuple[Any, ...]]
_Key = tuple[str, str]  # (room, conn)

# ``$4`` tokens at most from a shared bucket, atomically, on the database's clock. $1
# key, $2 rate per second, $3 burst. A new bucket starts full. The row keeps how many
# it granted and the wait it answered for the rest (the time until the next token),
# which RETURNING cannot compute from the new row.
_REFILLED = ("least($3::float8, b.tokens + greatest(0, EXCLUDED.at_ms - b.at_ms) "
             "* $2::float8 / 1000)")  # the tokens now, before these are taken


def _granting(tokens: str) -> str:
    """SET-list values for ``$4`` tokens asked of a bucket holding ``tokens``."""
    whole = f"floor({tokens})"
    return (f"least($4::int, {whole})::int, "
            f"{tokens} - least($4::int, {whole}), "
            f"CASE WHEN {whole} >= $4::int THEN 0 ELSE (1 - ({tokens} - {whole})) / $2::float8 END")


_NOW_MS = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
_TAKE = f"""
INSERT INTO rt_bus_buckets AS b (key, granted, tokens, wait, at_ms)
VALUES ($1, {_granting("$3::float8")}, {_NOW_MS})
ON CONFLICT (key) DO UPDATE SET
  (granted, tokens, wait) = (SELECT {_granting(_REFILLED)}),
  at_ms = EXCLUDED.at_ms
RETURNING b.granted, b.wait
"""
# Buckets untouched for an hour are full again: dropping them changes nothing.
_FORGET_BUCKETS = ("DELETE FROM rt_bus_buckets WHERE at_ms < "
                   "(extract(epoch FROM clock_timestamp()) * 1000)::bigint - 3600000")


def dsn_of(url: str) -> str:
    """asyncpg's DSN for an SQLAlchemy URL (``postgresql+asyncpg://`` -> ``postgresql://``)."""
    scheme, sep, rest = url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest


class PostgresBus:
    def __init__(self, dsn: str, *, prefix: str = "roomlog_", instance: str | None = None,
                 ping_interval: float = 1.0, ping_timeout: float = 2.0,
                 reconnect_max: float = 5.0, presence_ttl: float = 15.0,
                 outbox_max: int = 10_000) -> None:
        self.instance = instance or (
            f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}")
        self._dsn = dsn_of(dsn)
        self._prefix = prefix
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._reconnect_max = reconnect_max
        self._ttl_ms = int(presence_ttl * 1000)
        self._outbox_max = outbox_max
        self._inbound: Inbound | None = None
        self._rooms: set[str] = set()
        self._rooms_changed = asyncio.Event()
        self._out: deque[_Notify | _Sql] = deque()
        self._out_ready = asyncio.Event()
        self._entries: dict[_Key, str] = {}  # this instance's presence (JSON)
        self._left: set[_Key] = set()  # leaves not yet known to be written
        self._rewrites_asked = 1  # the first round writes the heartbeat and presence
        self._rewrites_done = 0
        self._out_ready.set()
        self._sent = 0  # notifications made (the ``n`` of each payload)
        self._listen_ok = False
        self._write_ok = True
        self._reported: bool | None = None
        self._up = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._pool: asyncpg.Pool | None = None  # presence reads and heartbeats
        self._local = Buckets(time.monotonic)  # take() while PostgreSQL does not answer
        self._takes = TakeRounds(self._take_many, self._local.take)
        self.reconnects = 0
        self.dropped = 0

    # -- names -----------------------------------------------------------------------

    def _channel(self, room: str) -> str:
        digest = hashlib.blake2b(room.encode(), digest_size=16).hexdigest()
        return f"{self._prefix}r{digest}"

    @property
    def _control(self) -> str:
        return f"{self._prefix}control"

    # -- lifetime --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._listen_ok and self._write_ok

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn, timeout=self._ping_timeout)
        return conn

    async def start(self, inbound: Inbound) -> None:
        self._inbound = inbound
        self._pool = asyncpg.create_pool(self._dsn, min_size=0, max_size=2,
                                         timeout=self._ping_timeout,
                                         command_timeout=self._ping_timeout)
        await self._pool  # min_size=0: opens nothing yet
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(coro) for coro in
                       (self._listen_forever(), self._write_forever(),
                        self._heartbeat_forever())]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), _START_WAIT)
        if not self.connected:
            logger.warning("the PostgreSQL bus cannot reach its database yet: starting "
                           "degraded (polling the log) and retrying")

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):  # the last publishes (drain) go out first
            await asyncio.wait_for(self._flushed(), self._ping_timeout)
        await self._takes.close()
        pending = set(self._tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pool is not None:  # leave no entries behind (a SIGKILL leaves them to expire)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._remove_instance(self.instance),
                                       self._ping_timeout)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), self._ping_timeout)
            self._pool.terminate()

    async def _flushed(self) -> None:
        while self._out and self._write_ok:  # noqa: ASYNC110 (polled once, at shutdown)
            await asyncio.sleep(0.005)

    def _report(self) -> None:
        now = self.connected
        if now:
            self._up.set()
        if now != self._reported:
            self._reported = now
            if self._inbound is not None:
                self._inbound.bus_state(now)

    # -- outbound --------------------------------------------------------------------

    def _notify(self, channel: str, kind: str, body: Any, *, publish: bool) -> bool:
        """Queue one notification; False if it does not fit in a payload."""
        self._sent += 1
        data = msgpack.packb([self.instance, self._sent, kind, body], use_bin_type=True)
        payload = base64.b64encode(data).decode()
        if len(payload) > MAX_PAYLOAD:
            return False
        if publish and len(self._out) >= self._outbox_max:
            self.dropped += 1  # PostgreSQL is not keeping up: receivers read the log
            return True
        self._out.append((channel, payload, publish))
        self._out_ready.set()
        return True

    def publish(self, room: str, messages: list[Message]) -> None:
        channel = self._channel(room)
        rows = [[m.seq, m.epoch, m.ts, m.by, m.raw] for m in messages]
        if self._notify(channel, "m", [room, rows], publish=True):
            return
        # Too large for one notification: halves until each fits; a single message
        # too large for any only tells the receivers to read the room from the log.
        if len(messages) > 1:
            half = len(messages) // 2
            self.publish(room, messages[:half])
            self.publish(room, messages[half:])
        else:
            self._notify(channel, "g", room, publish=True)

    def signal(self, room: str, payload: dict[str, Any]) -> None:
        if not self._notify(self._channel(room), "s", [room, payload], publish=True):
            logger.warning("a signal of %d keys for %s is too large for the bus; dropped",
                           len(payload), room)

    def broadcast(self, payload: dict[str, Any]) -> None:
        if not self._notify(self._control, "c", payload, publish=True):
            logger.warning("a broadcast is too large for the bus; dropped")

    def subscribe(self, room: str) -> None:
        if room not in self._rooms:
            self._rooms.add(room)
            self._rooms_changed.set()

    def unsubscribe(self, room: str) -> None:
        if room in self._rooms:
            self._rooms.discard(room)
            self._rooms_changed.set()

    def presence_join(self, room: str, conn: str, entry: dict[str, Any]) -> None:
        value = orjson.dumps(entry | {"instance": self.instance}).decode()
        self._entries[(room, conn)] = value
        self._left.discard((room, conn))
        self._out.append((_UPSERT_PRESENCE, (room, conn, self.instance, value)))
        self._out_ready.set()

    def presence_leave(self, room: str, conn: str) -> None:
        if self._entries.pop((room, conn), None) is None:
            return
        self._left.add((room, conn))
        self._out.append((_DELETE_PRESENCE, (room, conn, self.instance)))
        self._out_ready.set()

    async def take(self, key: str, rate: float, burst: float) -> float:
        """One token from the bucket ``key`` in PostgreSQL; while it does not
        answer, from this instance's own bucket (a write is never refused because
        the bus is down). The takes of a bucket go in rounds of one statement
        (``roomlog.bus.takes``)."""
        if self._pool is None or not self._write_ok:
            return self._local.take(key, rate, burst)
        return await self._takes.take(key, rate, burst)

    async def _take_many(self, key: str, rate: float, burst: float, n: int
                         ) -> tuple[int, float] | None:
        """Up to ``n`` tokens in one statement: how many, and the wait for the rest."""
        if self._pool is not None and self._write_ok:
            try:
                async with asyncio.timeout(self._ping_timeout):
                    granted, wait = await self._pool.fetchrow(_TAKE, key, rate, burst, n)
                return int(granted), float(wait)
            except (TimeoutError, asyncpg.PostgresError, OSError) as exc:
                logger.debug("rate bucket in PostgreSQL not reached: %s", describe(exc))
        return None

    async def presence(self, room: str) -> dict[str, dict[str, Any]]:
        assert self._pool is not None
        try:
            rows = await self._pool.fetch(_LIST_PRESENCE, room, _now_ms() - self._ttl_ms)
        except (TimeoutError, asyncpg.PostgresError, OSError) as exc:
            raise Unavailable(f"presence is kept in PostgreSQL, which failed: "
                              f"{describe(exc)}") from None
        return {row["conn"]: orjson.loads(row["entry"]) for row in rows}

    async def _write_forever(self) -> None:
        delay = 0.1
        conn: asyncpg.Connection | None = None
        while True:
            await self._out_ready.wait()
            self._out_ready.clear()
            while self._out or self._rewrites_asked > self._rewrites_done:
                ops = list(self._out)[:_ROUND_MAX]
                left = set(self._left)
                asked = self._rewrites_asked
                try:
                    if conn is None or conn.is_closed():
                        conn = await self._connect()
                    async with asyncio.timeout(self._ping_timeout):
                        if asked > self._rewrites_done:
                            await self._rewrite_presence(conn, left)
                        await _send(conn, ops)
                except asyncio.CancelledError:
                    if conn is not None:
                        conn.terminate()
                    raise
                except Exception as exc:  # down or blocked: try again with backoff
                    if conn is not None:
                        conn.terminate()
                        conn = None
                    self._fail_writes(exc, len(ops))
                    self._report()
                    await asyncio.sleep(_jitter(delay))
                    delay = min(delay * 2, self._reconnect_max)
                    continue
                for _ in ops:
                    self._out.popleft()
                self._left -= left
                self._rewrites_done = asked
                delay = 0.1
                if not self._write_ok:
                    self._write_ok = True
                    self._report()

    def _fail_writes(self, exc: Exception, sent: int) -> None:
        if self._write_ok:
            why = (f"no answer within {self._ping_timeout:g} s" if isinstance(exc, TimeoutError)
                   else describe(exc))
            logger.warning("sending %d notifications and presence updates to PostgreSQL "
                           "failed (%s); peers read the log meanwhile", sent, why)
        self._write_ok = False
        for _ in range(sent):  # receivers repair publishes from the log; presence is rewritten
            op = self._out.popleft()
            self.dropped += len(op) == 3 and bool(op[2])
        self._rewrites_asked += 1

    async def _rewrite_presence(self, conn: asyncpg.Connection, left: set[_Key]) -> None:
        """Everything this instance holds in presence, written again as a whole."""
        async with conn.transaction():
            await conn.execute(_BEAT, self.instance, _now_ms())
            for room, c in left:
                await conn.execute(_DELETE_PRESENCE, room, c, self.instance)
            if self._entries:
                rooms, conns, values = zip(*[(r, c, v) for (r, c), v in self._entries.items()],
                                           strict=True)
                await conn.execute(_UPSERT_PRESENCE_MANY, list(rooms), list(conns),
                                   self.instance, list(values))

    # -- inbound ---------------------------------------------------------------------

    async def _listen_forever(self) -> None:
        delay = 0.1
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                await self._listen(conn)
            except asyncio.CancelledError:
                if conn is not None:
                    conn.terminate()
                raise
            except Exception as exc:  # dropped, restarted or blocked: reconnect
                if self._listen_ok:
                    logger.warning("the PostgreSQL bus lost its listening connection (%s); "
                                   "polling the log until it is back", describe(exc))
                    delay = 0.1
                self._listen_ok = False
                self._report()
            if conn is not None:
                conn.terminate()
            await asyncio.sleep(_jitter(delay))
            delay = min(delay * 2, self._reconnect_max)

    async def _listen(self, conn: asyncpg.Connection) -> None:
        loop = asyncio.get_running_loop()
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        listening: dict[str, str] = {}  # room -> channel
        await conn.add_listener(self._control, self._on_notify)
        # Up from here: every room subscribed so far is listened to and resynced below.
        if not self._listen_ok:
            if self._reported is not None:
                self.reconnects += 1
                logger.warning("the PostgreSQL bus listens again; resyncing %d rooms",
                               len(self._rooms))
                self._rewrites_asked += 1  # a restarted database lost the unlogged tables
                self._out_ready.set()
            self._listen_ok = True
            self._report()
        last_ping = loop.time()
        while True:
            self._rooms_changed.clear()
            want = set(self._rooms)
            for room in [r for r in listening if r not in want]:
                async with asyncio.timeout(self._ping_timeout):
                    await conn.remove_listener(listening.pop(room), self._on_notify)
            added = [r for r in want if r not in listening]
            for room in added:
                channel = self._channel(room)
                async with asyncio.timeout(self._ping_timeout):
                    await conn.add_listener(channel, self._on_notify)
                listening[room] = channel
            if added and self._inbound is not None:
                self._inbound.resync(added)  # active now: older messages come from the log
            wait = max(0.0, last_ping + self._ping_interval - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await _first(self._rooms_changed.wait(), lost.wait())
            if lost.is_set():
                raise ConnectionError("the listening connection closed")
            if loop.time() - last_ping >= self._ping_interval:
                async with asyncio.timeout(self._ping_timeout):
                    await conn.fetchval("SELECT 1")
                last_ping = loop.time()

    def _on_notify(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        inbound = self._inbound
        if inbound is None:
            return
        try:
            sender, _n, what, body = msgpack.unpackb(base64.b64decode(payload), raw=False)
        except Exception:
            logger.warning("undecodable bus payload on %s", channel)
            return
        if sender == self.instance:
            return
        if what == "c":
            inbound.control(body)
            return
        room = body if what == "g" else body[0]
        if room not in self._rooms:  # a hash collision, or unlistened meanwhile
            return
        if what == "m":
            inbound.messages(room, [Message(room, seq, epoch, ts, by, raw)
                                    for seq, epoch, ts, by, raw in body[1]])
        elif what == "s":
            inbound.signal(room, body[1])
        elif what == "g":
            inbound.resync([room])

    # -- presence of instances ---------------------------------------------------------

    async def _heartbeat_forever(self) -> None:
        interval = self._ttl_ms / 3000
        loop = asyncio.get_running_loop()
        beating_since: float | None = None
        while True:
            await asyncio.sleep(interval)
            try:
                assert self._pool is not None
                if await self._pool.fetchval(_BEAT, self.instance, _now_ms()):
                    # We were not listed: the database lost the table, or swept us.
                    self._rewrites_asked += 1
                    self._out_ready.set()
                if beating_since is None:
                    beating_since = loop.time()
                if loop.time() - beating_since < self._ttl_ms / 1000:
                    continue  # just back: the others' silence proves nothing yet
                dead = await self._pool.fetch(_SWEEP, _now_ms() - self._ttl_ms)
                for row in dead:
                    await self._remove_instance(row["instance"], signal=True)
                if random.random() < 0.01:  # now and then: buckets long full again
                    await self._pool.execute(_FORGET_BUCKETS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the listener reports an outage; try again later
                beating_since = None
                logger.debug("presence heartbeat failed: %s", describe(exc))

    async def _remove_instance(self, instance: str, *, signal: bool = False) -> None:
        """Delete an instance's presence (its own at close; a dead one's after the
        sweep that removed its row, signalling each leave)."""
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_FORGET, instance)
            rows = await conn.fetch(_DELETE_ENTRIES, instance)
        if not signal:
            return
        for row in rows:
            entry = orjson.loads(row["entry"])
            room = row["room"]
            leave = {"presence": "leave", "conn": row["conn"],
                     "user": entry.get("user"), "role": entry.get("role")}
            self.signal(room, leave)
            if self._inbound is not None and room in self._rooms:
                self._inbound.signal(room, leave)


async def _send(conn: asyncpg.Connection, ops: list[_Notify | _Sql]) -> None:
    """Run ``ops`` in order: consecutive notifications as one statement."""
    channels: list[str] = []
    payloads: list[str] = []
    for op in ops:
        if len(op) == 3:
            channels.append(op[0])
            payloads.append(op[1])
            continue
        if channels:
            await conn.execute(_NOTIFY_MANY, channels, payloads)
            channels, payloads = [], []
        query, args = op
        await conn.execute(query, *args)
    if channels:
        await conn.execute(_NOTIFY_MANY, channels, payloads)


async def _first(*waits: Any) -> None:
    """Wait until the first of these coroutines ends; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


_NOTIFY_MANY = ("SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) "
                "WITH ORDINALITY AS t(c, p, i) ORDER BY i")
_UPSERT_PRESENCE = ("INSERT INTO rt_bus_presence (room, conn, instance, entry) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (room, conn) "
                    "DO UPDATE SET instance = excluded.instance, entry = excluded.entry")
_UPSERT_PRESENCE_MANY = ("INSERT INTO rt_bus_presence (room, conn, instance, entry) "
                         "SELECT r, c, $3, e FROM unnest($1::text[], $2::text[], $4::text[]) "
                         "AS t(r, c, e) ON CONFLICT (room, conn) "
                         "DO UPDATE SET instance = excluded.instance, entry = excluded.entry")
_DELETE_PRESENCE = "DELETE FROM rt_bus_presence WHERE room = $1 AND conn = $2 AND instance = $3"
_LIST_PRESENCE = ("SELECT p.conn, p.entry FROM rt_bus_presence p JOIN rt_bus_instances i "
                  "ON i.instance = p.instance WHERE p.room = $1 AND i.beat_ms >= $2")
# True when the row was inserted (we were not listed), False when updated.
_BEAT = ("INSERT INTO rt_bus_instances (instance, beat_ms) VALUES ($1, $2) "
         "ON CONFLICT (instance) DO UPDATE SET beat_ms = excluded.beat_ms "
         "RETURNING (xmax = 0)")
_SWEEP = "DELETE FROM rt_bus_instances WHERE beat_ms < $1 RETURNING instance"
_FORGET = "DELETE FROM rt_bus_instances WHERE instance = $1"
_DELETE_ENTRIES = "DELETE FROM rt_bus_presence WHERE instance = $1 RETURNING room, conn, entry"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _jitter(delay: float) -> float:
    return delay * random.uniform(0.5, 1.5)
