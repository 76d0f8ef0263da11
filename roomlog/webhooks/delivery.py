"""Delivering one endpoint: a task per room with work, the log, the Outbound port.

:class:`EndpointWorker` runs on the instance that holds the endpoint's lease
(``roomlog.webhooks.manager``). It keeps the endpoint's cursors in memory, loaded
from the store when it starts and written back every ``flush_interval``, fenced
by the lease. A crash loses at most that interval of cursor moves: those
messages are delivered again, with the same ids. The newest ``keep_attempts``
attempts are written with them: at once when one failed (what operators look
for), else at most every ``_ATTEMPTS_EVERY_MS``, so a healthy endpoint does not
cost the database a row per delivery (at 500 deliveries/s: 100 rows a second
instead of 500 written and 400 of them pruned again).

Where the messages come from:

* this instance's commits (``offer``), kept per room while contiguous with what
  the room's task already knows, so a live room costs no log read;
* the log (``Log.read``), whenever the task's knowledge has a gap: at start, after
  a scan found the room behind (a commit on another instance), after a room's
  buffer overflowed;
* a scan every ``poll_interval`` of the rooms whose head is past their stored
  cursor, which also finds rooms created on other instances.

Each room has at most one delivery in flight (seq order), and waits for its own
retries only, so a failing room never blocks the others; ``max_in_flight``
bounds the endpoint's concurrent requests. The decisions (what to send, what an
answer means, when to retry) are the pure functions of ``roomlog.webhooks.core``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from roomlog import logs
from roomlog.errors import RoomlogError
from roomlog.log import Log
from roomlog.outbound import Outbound, OutboundError
from roomlog.protocol import Message
from roomlog.signing import signature_headers
from roomlog.stats import Histogram
from roomlog.webhooks import core
from roomlog.webhooks.core import Cursor, Retry
from roomlog.webhooks.endpoint import Endpoint, wants
from roomlog.webhooks.store import Attempt, WebhookStore

__all__ = ["EndpointStats", "EndpointWorker", "Tuning"]

logger = logging.getLogger(__name__)

_BUFFER_MAX = 2000  # messages kept per room from local commits (beyond: read the log)
_IDLE = 30.0  # seconds a room's task waits for work before it ends
_MAX_REPLY = 4096  # bytes of a receiver's answer read (only its status counts)
_SCAN_LIMIT = 1000  # rooms one scan hands to tasks
_ATTEMPTS_EVERY_MS = 1000  # successful attempts are written at most this often


@dataclass(frozen=True, slots=True)
class Tuning:
    timeout: float = 5.0  # seconds for a 2xx
    retry: Retry = field(default_factory=Retry)
    page_size: int = 500
    max_in_flight: int = 32
    flush_interval: float = 0.2
    poll_interval: float = 1.0
    keep_attempts: int = 100


@dataclass
class EndpointStats:
    """Counters per endpoint (``roomlog_webhook_*`` metrics), on its deliverer."""

    delivered: int = 0  # messages acknowledged with a 2xx
    failed: int = 0  # attempts that got no 2xx
    skipped: int = 0  # messages trimmed away before they could be delivered
    latency: Histogram = field(default_factory=Histogram)  # one attempt, send to answer
    lag_seconds: float = 0.0  # age of the message delivered last (0: caught up)


class _Room:
    """What the worker knows of one room beyond its cursor."""

    __slots__ = ("buffer", "need_read", "task", "wake")

    def __init__(self) -> None:
        self.buffer: deque[Message] = deque()  # contiguous, after the cursor
        self.need_read = True  # the log may hold messages the buffer lacks
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class EndpointWorker:
    def __init__(self, endpoint: Endpoint, store: WebhookStore, log: Log, outbound: Outbound,
                 tuning: Tuning, *, holder: str | None, stats: EndpointStats,
                 on_expired: Callable[[Endpoint, str, Cursor], Awaitable[None]],
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 rand: Callable[[], float] = random.random) -> None:
        self.endpoint = endpoint
        self._store = store
        self._log = log
        self._outbound = outbound
        self._t = tuning
        self._holder = holder
        self.stats = stats
        self._on_expired = on_expired
        self._clock_ms = clock_ms
        self._rand = rand
        self._cursors: dict[str, Cursor] = {}
        self._heads: dict[str, int] = {}  # the last seq known to exist, per room (lag)
        self._rooms: dict[str, _Room] = {}
        self._dirty: set[str] = set()
        # the newest attempts not yet written (older ones would be pruned at once)
        self._attempts: deque[Attempt] = deque(maxlen=max(1, tuning.keep_attempts))
        self._attempt_failed = False  # one of them failed: write them with the next flush
        self._attempts_written_ms = -_ATTEMPTS_EVERY_MS
        self._slots = asyncio.Semaphore(tuning.max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.lost = asyncio.Event()  # the lease went to another instance

    # -- lifetime ----------------------------------------------------------------

    async def start(self) -> None:
        self._cursors = await self._store.cursors(self.endpoint.id)
        for loop in (self._flush_forever, self._scan_forever):
            self._spawn(loop())

    async def stop(self) -> None:
        """Stop delivering; write the cursors reached (unless the lease is lost)."""
        self._stopping = True
        tasks = [*self._tasks, *(r.task for r in self._rooms.values() if r.task)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not self.lost.is_set():
            try:
                await self._flush(final=True)
            except RoomlogError as err:
                logger.warning("webhook %s: cursors not saved at stop (%s); the next "
                               "deliverer sends the last ones again", self.endpoint.id,
                               err.message)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro, context=logs.detached())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def reconfigure(self, endpoint: Endpoint, rewinds: dict[str, Cursor]) -> None:
        """An operator changed the endpoint or asked for redeliveries."""
        self.endpoint = endpoint
        for room, cursor in rewinds.items():
            self._cursors[room] = cursor
            self._dirty.discard(room)  # the store holds it already
            state = self._room(room)
            state.buffer.clear()
            state.need_read = True
            self._kick(room, state)

    # -- sources -----------------------------------------------------------------

    def offer(self, room: str, messages: list[Message]) -> None:
        """Messages this instance committed to a room the endpoint follows."""
        state = self._room(room)
        if messages:
            self._heads[room] = max(self._heads.get(room, 0), messages[-1].seq)
        if not self._extend(room, state, messages):
            state.need_read = True
        self._kick(room, state)

    def poke(self, room: str) -> None:
        """Another instance committed to the room: read it from the log."""
        state = self._room(room)
        state.need_read = True
        self._kick(room, state)

    def _room(self, room: str) -> _Room:
        state = self._rooms.get(room)
        if state is None:
            state = self._rooms[room] = _Room()
        return state

    def _known(self, room: str, state: _Room) -> Cursor | None:
        cursor = self._cursors.get(room)
        if cursor is None:
            return None
        if state.buffer:
            return Cursor(cursor.epoch, state.buffer[-1].seq)
        return cursor

    def _extend(self, room: str, state: _Room, messages: list[Message]) -> bool:
        """Append what follows the known seq contiguously; False at a gap."""
        known = self._known(room, state)
        for message in messages:
            if known is None:  # a room first seen: it starts before its first message
                self._cursors[room] = known = Cursor(message.epoch, 0)
            if message.epoch != known.epoch:
                return False
            if message.seq <= known.seq:
                continue
            if message.seq != known.seq + 1 or len(state.buffer) >= _BUFFER_MAX:
                return False
            state.buffer.append(message)
            known = Cursor(known.epoch, message.seq)
        return True

    def _kick(self, room: str, state: _Room) -> None:
        if self._stopping:
            return
        state.wake.set()
        if state.task is None or state.task.done():
            state.task = asyncio.get_running_loop().create_task(
                self._deliver_room(room, state), context=logs.detached())

    # -- one room ----------------------------------------------------------------

    async def _deliver_room(self, room: str, state: _Room) -> None:
        try:
            while not self._stopping:
                cursor = self._cursors.get(room)
                if cursor is not None and cursor.due_ms > self._clock_ms():
                    await self._sleep_until(cursor.due_ms)
                    continue
                if not state.buffer and state.need_read:
                    if not await self._read(room, state):
                        await asyncio.sleep(self._t.poll_interval)  # database down
                    continue
                if not state.buffer:
                    state.wake.clear()
                    try:
                        async with asyncio.timeout(_IDLE):
                            await state.wake.wait()
                    except TimeoutError:  # idle: the next offer or scan starts one again
                        if not state.buffer and self._rooms.get(room) is state:
                            del self._rooms[room]  # its cursor stays; the rest is rebuilt
                        return
                    continue
                await self._deliver_next(room, state)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: log it; the next offer or scan starts the room again
            logger.exception("webhook %s: delivery of %s failed", self.endpoint.id, room)

    async def _sleep_until(self, due_ms: int) -> None:
        await asyncio.sleep(max(0.0, (due_ms - self._clock_ms()) / 1000))

    async def _read(self, room: str, state: _Room) -> bool:
        """Fill the buffer from the log after what is known. False: the database failed."""
        state.need_read = False  # an offer arriving during the read sets it again
        known = self._known(room, state)
        after = 0 if known is None else known.seq
        try:
            page = await self._log.read(room, after, self._t.page_size)
        except RoomlogError:
            state.need_read = True
            return False
        info = page.info
        cursor = self._cursors.get(room)
        if cursor is None or cursor.epoch != info.epoch:  # new room, or a reset: from seq 1
            self._cursors[room] = Cursor(info.epoch, 0)
            self._heads[room] = info.head
            self._dirty.add(room)
            state.buffer.clear()
            state.need_read = True
            return True
        if page.trimmed:  # retention dropped what this endpoint had not received
            lost = info.trimmed - cursor.seq
            self.stats.skipped += max(0, lost)
            logger.warning("webhook %s: %s was trimmed past its cursor; %d messages were "
                           "never delivered", self.endpoint.id, room, lost)
            self._cursors[room] = Cursor(info.epoch, info.trimmed)
            self._dirty.add(room)
            state.buffer.clear()
            state.need_read = True
            return True
        self._extend(room, state, page.messages)
        if len(page.messages) >= self._t.page_size:
            state.need_read = True
        return True

    async def _deliver_next(self, room: str, state: _Room) -> None:
        cursor = self._cursors[room]
        endpoint = self.endpoint
        batch = core.plan(cursor, state.buffer, lambda m: wants(endpoint, m),
                          endpoint.batch_max)
        if batch.messages:
            self.stats.lag_seconds = max(0.0, time.time() - batch.messages[0].ts / 1000)
            ok = await self._post(room, cursor, batch)
            if not ok or self._cursors.get(room) is not cursor:
                return  # a retry waits; or an operator rewound the room meanwhile
        self._cursors[room] = core.succeeded(cursor, batch.upto)
        self._dirty.add(room)
        while state.buffer and state.buffer[0].seq <= batch.upto:
            state.buffer.popleft()
        if not state.buffer:
            self.stats.lag_seconds = 0.0

    async def _post(self, room: str, cursor: Cursor, batch: core.Batch) -> bool:
        endpoint = self.endpoint
        now_ms = self._clock_ms()
        payload = core.body(endpoint.id, batch, now_ms)
        headers = {"content-type": "application/json",
                   **signature_headers(endpoint.signing_secrets(now_ms), batch.id,
                                       now_ms // 1000, payload)}
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        async with self._slots:
            started = time.perf_counter()
            try:
                reply = await self._outbound.post(endpoint.url, payload, headers,
                                                  within=self._t.timeout, max_body=_MAX_REPLY)
                status = reply.status
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
                    retry_after = _retry_after(reply.headers.get("retry-after"))
            except OutboundError as exc:
                error = f"{exc.kind}: {exc.message}"
            elapsed = time.perf_counter() - started
        self.stats.latency.observe(elapsed)
        first, last = batch.messages[0].seq, batch.messages[-1].seq
        self._attempts.append(Attempt(now_ms, room, batch.id, first, last, status,
                                      int(elapsed * 1000), error))
        if error is None:
            self.stats.delivered += len(batch.messages)
            return True
        self.stats.failed += 1
        self._attempt_failed = True  # operators see it with the next flush
        if self._cursors.get(room) is not cursor:
            return False  # an operator rewound the room meanwhile: its new cursor stands
        after = core.failed(cursor, self._clock_ms(), self._t.retry, retry_after=retry_after,
                            rand=self._rand())
        self._cursors[room] = after
        self._dirty.add(room)
        if core.expired(after, self._clock_ms(), self._t.retry):
            await self._on_expired(endpoint, room, after)
        return False

    # -- background --------------------------------------------------------------

    @property
    def retrying(self) -> int:
        """Rooms waiting to retry a failed delivery."""
        return sum(1 for c in self._cursors.values() if c.failures)

    @property
    def lag_messages(self) -> int:
        """Messages behind the head (as last seen by a commit here or a scan), over
        every room: committed, not yet delivered (or filtered out)."""
        lag = 0
        for room, head in self._heads.items():
            cursor = self._cursors.get(room)
            if cursor is not None:
                lag += max(0, head - cursor.seq)
        return lag

    async def _flush(self, *, final: bool = False) -> None:
        now_ms = self._clock_ms()
        with_attempts = bool(self._attempts) and (
            final or self._attempt_failed
            or now_ms - self._attempts_written_ms >= _ATTEMPTS_EVERY_MS)
        if not self._dirty and not with_attempts:
            return
        rooms, self._dirty = self._dirty, set()
        attempts: list[Attempt] = []
        if with_attempts:
            attempts = list(self._attempts)
            self._attempts.clear()
            failed, self._attempt_failed = self._attempt_failed, False
        cursors = {room: self._cursors[room] for room in rooms if room in self._cursors}
        try:
            kept = await self._store.save(self.endpoint.id, cursors, attempts, now_ms,
                                          holder=self._holder,
                                          keep_attempts=self._t.keep_attempts)
        except RoomlogError:
            self._dirty |= rooms  # the next flush writes them
            if with_attempts:  # and these, before the newer ones (the deque keeps the newest)
                newer = list(self._attempts)
                self._attempts.clear()
                self._attempts.extend(attempts + newer)
                self._attempt_failed = self._attempt_failed or failed
            raise
        if with_attempts:
            self._attempts_written_ms = now_ms
        if not kept:
            logger.warning("webhook %s: another instance holds its lease now; stopping here",
                           self.endpoint.id)
            self.lost.set()
            self._stopping = True  # no room starts another delivery

    async def _flush_forever(self) -> None:
        while not self.lost.is_set():
            await asyncio.sleep(self._t.flush_interval)
            try:
                await self._flush()
            except RoomlogError as err:
                logger.debug("webhook %s: cursor flush failed: %s", self.endpoint.id,
                             err.message)

    async def _scan_forever(self) -> None:
        """Rooms whose head is past the stored cursor: commits of other instances, rooms
        this instance never saw. Cheap when nothing is behind (one indexed query)."""
        while True:
            try:
                behind = await self._store.behind(self.endpoint, _SCAN_LIMIT)
            except RoomlogError as err:
                logger.debug("webhook %s: scan failed: %s", self.endpoint.id, err.message)
                behind = []
            for info in behind:
                known = self._cursors.get(info.room)
                if known is not None and known.epoch != info.epoch:
                    self._heads[info.room] = info.head  # a reset: the old head is void
                else:
                    self._heads[info.room] = max(self._heads.get(info.room, 0), info.head)
                state = self._room(info.room)
                known = self._known(info.room, state)
                if known is not None and known.epoch == info.epoch and known.seq >= info.head:
                    continue  # this worker knows it already (its cursor is not written yet)
                state.need_read = True
                self._kick(info.room, state)
            await asyncio.sleep(self._t.poll_interval)


def _retry_after(raw: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header (a number; an HTTP date is ignored)."""
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if 0 <= value < 1e9 else None
