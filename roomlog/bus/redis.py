"""The Redis bus: pub/sub between instances, presence in Redis. The one module
that imports ``redis``.

Keys and channels, all under ``prefix`` (default ``roomlog:``):

* ``{prefix}room:{room}``: a room's channel; messages and signals.
* ``{prefix}control``: broadcasts to every instance.
* ``{prefix}presence:{room}``: hash ``conn -> entry`` (JSON).
* ``{prefix}instances``: sorted set ``instance -> last heartbeat (ms)``.
* ``{prefix}instance-rooms:{instance}``: rooms an instance has entries in.
* ``{prefix}rate:{key}``: hash ``tokens``, ``at`` (ms) of a shared token bucket
  (``take``); it expires once it would be full again.

Every payload is msgpack ``[instance, kind, body]``; an instance drops what
it sent itself.

Three background tasks:

* the **reader** owns the pub/sub connection. It applies subscribe and
  unsubscribe requests between reads and pings Redis every ``ping_interval``.
  If nothing answers within ``ping_timeout`` (Redis blocked, a half-open
  link) or the connection drops (restart, eviction by the output-buffer
  limit), it reconnects with capped, jittered backoff and subscribes again. A
  confirmed subscription asks the instance to resync that room from the log.
* the **writer** sends queued publishes and presence writes in order, one
  pipeline per wake-up. It never blocks the commit path. When Redis fails,
  queued publishes are dropped (receivers repair from the log), and presence is
  written again in full once Redis answers.
* the **heartbeat** marks this instance alive every ``presence_ttl / 3``
  and removes the presence entries of instances silent for ``presence_ttl``.
  Exactly one sweeper wins each dead instance and signals its leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack
import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from roomlog.bus import Inbound
from roomlog.bus.takes import TakeRounds
from roomlog.errors import Unavailable, describe
from roomlog.protocol import Message
from roomlog.ratelimit import Buckets

__all__ = ["RedisBus"]

logger = logging.getLogger(__name__)

_OP_POLL = 0.05  # seconds a read waits before applying new (un)subscriptions
_START_WAIT = 3.0  # seconds start() waits for the first connection before going on degraded

# One token from a bucket, atomically, on Redis's clock (every instance shares it).
# KEYS[1] the bucket; ARGV rate per second, burst. Returns the wait in seconds as a
# string (a Lua number would come back truncated to an integer).
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3]) or 1
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(v[1]) or burst
local at = tonumber(v[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local granted = math.min(n, math.floor(tokens))
tokens = tokens - granted
local wait = 0
if granted < n then wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {granted, tostring(wait)}
"""

_Op = Callable[[Any], None]  # adds commands to a pipeline
_Key = tuple[str, str]  # (room, conn)


class RedisBus:
    def __init__(self, url: str, *, prefix: str = "roomlog:", instance: str | None = None,
                 ping_interval: float = 1.0, ping_timeout: float = 2.0,
                 reconnect_max: float = 5.0, presence_ttl: float = 15.0,
                 outbox_max: int = 10_000) -> None:
        self.instance = instance or (
            f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}")
        self._url = url
        self._prefix = prefix
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._reconnect_max = reconnect_max
        self._ttl_ms = int(presence_ttl * 1000)
        self._outbox_max = outbox_max
        self._inbound: Inbound | None = None
        self._client: aioredis.Redis | None = None  # presence and heartbeats
        self._writer: aioredis.Redis | None = None  # publishes, bounded per round instead
        self._rooms: set[str] = set()
        self._rooms_changed = False
        self._out: deque[tuple[bool, _Op]] = deque()  # (is a publish, op)
        self._out_ready = asyncio.Event()
        self._out_ready.set()  # the first round writes the heartbeat and presence
        self._entries: dict[_Key, bytes] = {}  # this instance's presence
        self._left: set[_Key] = set()  # leaves not yet known to be written
        self._rewrites_asked = 1  # the first round writes the heartbeat and presence
        self._rewrites_done = 0
        self._sub_ok = False
        self._pub_ok = True
        self._reported: bool | None = None
        self._up = asyncio.Event()  # set at the first connection (start waits for it)
        self._tasks: list[asyncio.Task[None]] = []
        self._local = Buckets(time.monotonic)  # take() while Redis does not answer
        self._take: Any = None  # the registered _TAKE script
        self._takes = TakeRounds(self._take_many, self._local.take)
        self.reconnects = 0  # connections made after the first (metrics)
        self.dropped = 0  # publishes dropped while Redis failed (metrics)

    # -- shared rate limits ------------------------------------------------------

    async def take(self, key: str, rate: float, burst: float) -> float:
        """One token from the bucket ``key`` in Redis; while Redis does not answer,
        from this instance's own bucket (a limit per instance beats none, and a
        write is never refused because Redis is down). The takes of a bucket go in
        rounds of one script call (``roomlog.bus.takes``)."""
        if self._client is None or not self._pub_ok:
            return self._local.take(key, rate, burst)
        return await self._takes.take(key, rate, burst)

    async def _take_many(self, key: str, rate: float, burst: float, n: int
                         ) -> tuple[int, float] | None:
        """Up to ``n`` tokens in one script call: how many, and the wait for the rest."""
        if self._client is not None and self._pub_ok:
            if self._take is None:
                self._take = self._client.register_script(_TAKE)
            try:
                granted, wait = await asyncio.wait_for(
                    self._take(keys=[f"{self._prefix}rate:{key}"], args=[rate, burst, n]),
                    self._ping_timeout)
                return int(granted), float(_text(wait))
            except (RedisError, OSError, TimeoutError, ValueError) as exc:
                logger.debug("rate bucket in Redis not reached: %s", describe(exc))
        return None

    # -- names ---------------------------------------------------------------------

    def _channel(self, room: str) -> str:
        return f"{self._prefix}room:{room}"

    @property
    def _control(self) -> str:
        return f"{self._prefix}control"

    def _presence_key(self, room: str) -> str:
        return f"{self._prefix}presence:{room}"

    @property
    def _instances(self) -> str:
        return f"{self._prefix}instances"

    def _rooms_key(self, instance: str) -> str:
        return f"{self._prefix}instance-rooms:{instance}"

    # -- lifetime ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._sub_ok and self._pub_ok

    def _new_client(self, *, timeout: bool = True) -> aioredis.Redis:
        """A client whose reads time out after ``ping_timeout`` (a blocked Redis must
        not hang us), or with ``timeout=False`` one without: redis-py then sends with
        no extra task per command (on Python 3.11, ``wait_for`` makes one), which the
        writer bounds per round itself."""
        limit = self._ping_timeout
        return aioredis.Redis.from_url(self._url, socket_timeout=limit if timeout else None,
                                       socket_connect_timeout=limit)

    async def start(self, inbound: Inbound) -> None:
        self._inbound = inbound
        self._client = self._new_client()
        self._writer = self._new_client(timeout=False)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(coro) for coro in
                       (self._read_forever(), self._write_forever(), self._heartbeat_forever())]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), _START_WAIT)
        if not self.connected:
            logger.warning("Redis at %s does not answer yet: starting degraded "
                           "(polling the log) and retrying", self._safe_url)

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):  # the last publishes (drain) go out first
            await asyncio.wait_for(self._flushed(), self._ping_timeout)
        if self._client is not None:  # leave no entries behind (a SIGKILL leaves them to expire)
            with contextlib.suppress(RedisError, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(self._remove_instance(self.instance), self._ping_timeout)
        await self._takes.close()
        # Cancel until they end: on Python 3.11 the asyncio.wait_for that redis-py
        # sends with swallows a cancel that lands as the send completes.
        pending = set(self._tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in (self._client, self._writer):
            if client is not None:
                await client.aclose()

    async def _flushed(self) -> None:
        while self._out and self._pub_ok:  # noqa: ASYNC110 (polled once, at shutdown)
            await asyncio.sleep(0.005)

    @property
    def _safe_url(self) -> str:
        return self._url.split("@")[-1]

    def _report(self) -> None:
        now = self.connected
        if now:
            self._up.set()
        if now != self._reported:
            self._reported = now
            if self._inbound is not None:
                self._inbound.bus_state(now)

    # -- outbound ------------------------------------------------------------------

    def _enqueue(self, op: _Op, *, publish: bool) -> None:
        if publish and len(self._out) >= self._outbox_max:
            self.dropped += 1  # Redis is not keeping up: receivers read this from the log
            return
        self._out.append((publish, op))
        self._out_ready.set()

    def _send(self, channel: str, kind: str, body: Any) -> None:
        data = msgpack.packb([self.instance, kind, body], use_bin_type=True)
        self._enqueue(lambda pipe: pipe.publish(channel, data), publish=True)

    def publish(self, room: str, messages: list[Message]) -> None:
        self._send(self._channel(room), "m",
                   [room, [[m.seq, m.epoch, m.ts, m.by, m.raw] for m in messages]])

    def signal(self, room: str, payload: dict[str, Any]) -> None:
        self._send(self._channel(room), "s", [room, payload])

    def broadcast(self, payload: dict[str, Any]) -> None:
        self._send(self._control, "c", payload)

    def subscribe(self, room: str) -> None:
        if room not in self._rooms:
            self._rooms.add(room)
            self._rooms_changed = True

    def unsubscribe(self, room: str) -> None:
        if room in self._rooms:
            self._rooms.discard(room)
            self._rooms_changed = True

    def presence_join(self, room: str, conn: str, entry: dict[str, Any]) -> None:
        value = orjson.dumps(entry | {"instance": self.instance})
        self._entries[(room, conn)] = value
        self._left.discard((room, conn))
        key, rooms_key = self._presence_key(room), self._rooms_key(self.instance)

        def op(pipe: Any) -> None:
            pipe.hset(key, conn, value)
            pipe.sadd(rooms_key, room)

        self._enqueue(op, publish=False)

    def presence_leave(self, room: str, conn: str) -> None:
        if self._entries.pop((room, conn), None) is None:
            return
        self._left.add((room, conn))
        key = self._presence_key(room)

        self._enqueue(lambda pipe: pipe.hdel(key, conn), publish=False)

    async def presence(self, room: str) -> dict[str, dict[str, Any]]:
        assert self._client is not None
        try:
            raw = await self._client.hgetall(self._presence_key(room))
            entries = {_text(k): orjson.loads(v) for k, v in raw.items()}
            instances = sorted({e.get("instance", "") for e in entries.values()})
            if not instances:
                return {}
            scores = await self._client.zmscore(self._instances, instances)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"presence is kept in Redis, which failed: {describe(exc)}") from None
        cutoff = _now_ms() - self._ttl_ms
        alive = {i for i, score in zip(instances, scores, strict=True)
                 if score is not None and score >= cutoff}
        return {conn: e for conn, e in entries.items() if e.get("instance") in alive}

    async def _write_forever(self) -> None:
        delay = 0.1
        while True:
            await self._out_ready.wait()
            self._out_ready.clear()
            while self._out or self._rewrites_asked > self._rewrites_done:
                assert self._writer is not None
                ops = list(self._out)
                left = set(self._left)
                asked = self._rewrites_asked
                rewrite = asked > self._rewrites_done
                try:
                    pipe = self._writer.pipeline(transaction=False)
                    if rewrite:
                        self._add_presence_rewrite(pipe, left)
                    for _, op in ops:
                        op(pipe)
                    async with asyncio.timeout(self._ping_timeout):
                        await pipe.execute()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Redis down or blocked: try again with backoff
                    self._fail_writes(exc, len(ops))
                    self._report()
                    await asyncio.sleep(_jitter(delay))
                    delay = min(delay * 2, self._reconnect_max)
                    continue
                for _ in ops:
                    self._out.popleft()
                self._left -= left  # written: by their own op or by the rewrite
                self._rewrites_done = asked  # one asked for meanwhile is still to come
                delay = 0.1
                if not self._pub_ok:
                    self._pub_ok = True
                    self._report()

    def _fail_writes(self, exc: Exception, sent: int) -> None:
        if self._pub_ok:
            why = (f"no answer within {self._ping_timeout:g} s" if isinstance(exc, TimeoutError)
                   else describe(exc))
            logger.warning("writing %d publishes and presence updates to Redis at %s failed "
                           "(%s); peers read the log meanwhile", sent, self._safe_url, why)
        self._pub_ok = False
        for _ in range(sent):  # receivers repair publishes from the log; presence is rewritten
            is_publish, _ = self._out.popleft()
            self.dropped += is_publish
        self._rewrites_asked += 1

    def _add_presence_rewrite(self, pipe: Any, left: set[_Key]) -> None:
        """Everything this instance holds in presence, written again as a whole."""
        for room, conn in left:
            pipe.hdel(self._presence_key(room), conn)
        pipe.zadd(self._instances, {self.instance: _now_ms()})
        for (room, conn), value in self._entries.items():
            pipe.hset(self._presence_key(room), conn, value)
            pipe.sadd(self._rooms_key(self.instance), room)

    # -- inbound -------------------------------------------------------------------

    async def _read_forever(self) -> None:
        delay = 0.1
        while True:
            client = self._new_client()
            pubsub = client.pubsub()
            try:
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # dropped, restarted, evicted or blocked: reconnect
                if self._sub_ok:
                    logger.warning("Redis pub/sub lost (%s); polling the log until it is back",
                                   describe(exc))
                    delay = 0.1  # it worked until now: the first retry comes soon
                self._sub_ok = False
                self._report()
                for other in (self._client, self._writer):  # idle sockets may be as dead
                    if other is not None:
                        with contextlib.suppress(Exception):
                            await other.connection_pool.disconnect(inuse_connections=False)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.aclose(), 1.0)
            await asyncio.sleep(_jitter(delay))
            delay = min(delay * 2, self._reconnect_max)

    async def _read(self, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        subscribed = set(self._rooms)
        self._rooms_changed = False
        await pubsub.subscribe(self._control, *[self._channel(r) for r in subscribed])
        await pubsub.ping()  # answered after the subscriptions are in place
        last_seen = last_ping = loop.time()
        while True:
            if self._rooms_changed:
                self._rooms_changed = False
                want = set(self._rooms)
                if want - subscribed:
                    await pubsub.subscribe(*[self._channel(r) for r in want - subscribed])
                if subscribed - want:
                    await pubsub.unsubscribe(*[self._channel(r) for r in subscribed - want])
                subscribed = want
            message = await pubsub.get_message(timeout=_OP_POLL)
            now = loop.time()
            if message is not None:
                last_seen = now
                self._on_message(message)
            elif now - last_seen > self._ping_interval + self._ping_timeout:
                raise TimeoutError(f"no answer from Redis for {now - last_seen:.1f}s")
            if now - last_ping >= self._ping_interval:
                await pubsub.ping()
                last_ping = now

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        inbound = self._inbound
        assert inbound is not None
        if kind == "message":
            try:
                sender, what, body = msgpack.unpackb(message["data"], raw=False)
            except Exception:
                logger.warning("undecodable bus payload on %s", message["channel"])
                return
            if sender == self.instance:
                return
            if what == "m":
                room, rows = body
                inbound.messages(room, [Message(room, seq, epoch, ts, by, raw)
                                        for seq, epoch, ts, by, raw in rows])
            elif what == "s":
                inbound.signal(body[0], body[1])
            elif what == "c":
                inbound.control(body)
        elif kind == "pong":
            if not self._sub_ok:
                if self._reported is not None:
                    self.reconnects += 1
                    logger.warning("Redis pub/sub is back; resyncing %d rooms", len(self._rooms))
                    self._rewrites_asked += 1  # a restarted Redis lost our entries
                    self._out_ready.set()
                self._sub_ok = True
                self._report()
        elif kind == "subscribe":
            channel = _text(message["channel"])
            prefix = self._channel("")
            if channel.startswith(prefix):
                inbound.resync([channel[len(prefix):]])

    # -- presence of instances -----------------------------------------------------

    async def _heartbeat_forever(self) -> None:
        interval = self._ttl_ms / 3000
        loop = asyncio.get_running_loop()
        beating_since: float | None = None  # start of our unbroken run of heartbeats
        while True:
            await asyncio.sleep(interval)
            try:
                assert self._client is not None
                if await self._client.zadd(self._instances, {self.instance: _now_ms()}):
                    # We were not listed: Redis lost its data or swept us as dead.
                    self._rewrites_asked += 1
                    self._out_ready.set()
                if beating_since is None:
                    beating_since = loop.time()
                if loop.time() - beating_since < self._ttl_ms / 1000:
                    # Redis just came back (or we just started): the others have
                    # had no chance to beat yet, their silence proves nothing.
                    continue
                dead = await self._client.zrangebyscore(
                    self._instances, "-inf", _now_ms() - self._ttl_ms)
                for name in map(_text, dead):
                    if await self._client.zrem(self._instances, name):  # we won the sweep
                        await self._remove_instance(name, signal=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: the reader reports it; try again later
                beating_since = None
                logger.debug("presence heartbeat failed: %s", describe(exc))

    async def _remove_instance(self, instance: str, *, signal: bool = False) -> None:
        """Delete an instance's presence entries (its own at close; a dead one's
        after a sweep, signalling each leave)."""
        assert self._client is not None
        rooms_key = self._rooms_key(instance)
        for room in map(_text, await self._client.smembers(rooms_key)):
            key = self._presence_key(room)
            for conn, raw in (await self._client.hgetall(key)).items():
                entry = orjson.loads(raw)
                if entry.get("instance") != instance:
                    continue
                if await self._client.hdel(key, conn) and signal:
                    leave = {"presence": "leave", "conn": _text(conn),
                             "user": entry.get("user"), "role": entry.get("role")}
                    self.signal(room, leave)
                    if self._inbound is not None and room in self._rooms:
                        self._inbound.signal(room, leave)
        await self._client.delete(rooms_key)
        await self._client.zrem(self._instances, instance)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _jitter(delay: float) -> float:
    return delay * random.uniform(0.5, 1.5)
