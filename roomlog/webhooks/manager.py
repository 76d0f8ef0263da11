"""Which endpoints this instance delivers: leases, workers, operators' changes.

Every instance runs one :class:`Webhooks`. Every ``lease_ttl / 3`` seconds (and at
once after this instance's admin API changed an endpoint) it reads the endpoint
list and, for each enabled endpoint, takes or renews its lease
(:class:`~roomlog.webhooks.store.Leases`): the holder runs an
:class:`~roomlog.webhooks.delivery.EndpointWorker` for it. So one instance
delivers a given endpoint at a time; when it dies its lease runs out and
another takes the endpoint over within ``lease_ttl`` plus one round, starting
from the cursors it stored (nothing is lost; the last moves not yet written are
sent again, with the same ids). A clean stop releases the leases at once.

Commits on an instance that does not deliver an endpoint following the room are
announced to every instance (``Bus.broadcast``, ``{"webhook_rooms": [...]}``, at most
one every ``_HINT_DELAY`` per instance): the deliverer reads those rooms at once instead
of finding them at its next scan. A lost hint only delays (the scan still runs).

An instance that cannot renew a lease (its database link failed) stops that
worker before the lease can run out, so two instances never deliver one
endpoint for longer than a request in flight.

A room failing for longer than the horizon disables its endpoint: the endpoint
is stored disabled with the reason, operators are told in the ``admin:webhooks``
room (event ``webhook.disabled``) and by ``roomlog_webhooks_disabled_total``,
and an operator enables it again with an update (delivery resumes where it
stopped).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson

from roomlog import logs
from roomlog.errors import RoomlogError
from roomlog.log import Log
from roomlog.outbound import Outbound
from roomlog.protocol import Message
from roomlog.webhooks.core import Cursor
from roomlog.webhooks.delivery import EndpointStats, EndpointWorker, Tuning
from roomlog.webhooks.endpoint import Endpoint
from roomlog.webhooks.store import Leases, WebhookStore

__all__ = ["ADMIN_ROOM", "Webhooks"]

logger = logging.getLogger(__name__)

ADMIN_ROOM = "admin:webhooks"  # where operators are told about disabled endpoints
HINT_KEY = "webhook_rooms"  # a broadcast naming rooms with new commits
_HINT_DELAY = 0.005  # seconds a hint waits for more rooms to name
_HINT_MAX = 500  # rooms named by one hint (more: the scan finds them)


class Webhooks:
    def __init__(self, store: WebhookStore, leases: Leases, log: Log, *,
                 outbound: Callable[[], Outbound], tuning: Tuning, instance: str,
                 lease_ttl: float, fenced: bool,
                 notify: Callable[[str, bytes], Awaitable[object]],
                 broadcast: Callable[[dict[str, Any]], None] = lambda payload: None,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.store = store
        self._leases = leases
        self._log = log
        self._outbound = outbound
        self.tuning = tuning
        self._instance = instance
        self._ttl_ms = int(lease_ttl * 1000)
        self._fenced = fenced
        self._notify = notify
        self._broadcast = broadcast
        self._enabled: list[Endpoint] = []  # as of the last round (held here or not)
        self._hints: set[str] = set()
        self._hint_timer: asyncio.TimerHandle | None = None
        self._clock_ms = clock_ms
        self.workers: dict[str, EndpointWorker] = {}
        self._clients: dict[str, Outbound] = {}
        self._renewed: dict[str, float] = {}  # monotonic time of the last renewal
        self.stats: dict[str, EndpointStats] = {}  # per endpoint delivered here
        self.disabled_total = 0
        self.disabled: dict[str, bool] = {}  # every endpoint: disabled by the horizon?
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._disabling: set[str] = set()  # endpoints whose disabling runs now

    @property
    def round_interval(self) -> float:
        return self._ttl_ms / 3000

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._manage_forever(),
                                                            context=logs.detached())

    async def close(self) -> None:
        if self._hint_timer is not None:
            self._hint_timer.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for job in list(self._jobs):
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        for endpoint_id in list(self.workers):
            await self._stop(endpoint_id, release=True)

    # -- inputs ------------------------------------------------------------------

    def committed(self, room: str, messages: list[Message]) -> None:
        """This instance committed these: the workers that follow the room take them;
        the deliverers elsewhere of the other endpoints following it are told."""
        for worker in self.workers.values():
            if worker.endpoint.follows(room):
                worker.offer(room, messages)
        if any(e.id not in self.workers and e.follows(room) for e in self._enabled):
            self._hints.add(room)
            if self._hint_timer is None:
                self._hint_timer = asyncio.get_running_loop().call_later(
                    _HINT_DELAY, self._send_hints)

    def _send_hints(self) -> None:
        self._hint_timer = None
        rooms, self._hints = sorted(self._hints)[:_HINT_MAX], set()
        self._broadcast({HINT_KEY: rooms})

    def hinted(self, payload: dict[str, Any]) -> None:
        """Another instance committed to these rooms: the workers here that follow them
        read them now."""
        rooms = payload.get(HINT_KEY)
        if not isinstance(rooms, list):
            return
        for room in rooms[:_HINT_MAX]:
            if isinstance(room, str):
                for worker in self.workers.values():
                    if worker.endpoint.follows(room):
                        worker.poke(room)

    def changed(self) -> None:
        """An operator changed an endpoint here: look at the list now."""
        self._wake.set()

    # -- the rounds --------------------------------------------------------------

    async def _manage_forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except RoomlogError as err:
                logger.debug("webhook round failed: %s", err.message)
                self._drop_stale()
            except Exception:
                logger.exception("webhook round failed")
            try:
                async with asyncio.timeout(self.round_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _drop_stale(self) -> None:
        """Workers whose lease could not be renewed for most of its life stop now,
        before another instance may take the endpoint."""
        limit = time.monotonic() - self._ttl_ms / 1000 * 0.7
        for endpoint_id, renewed in list(self._renewed.items()):
            if renewed < limit:
                self._spawn(self._stop(endpoint_id, release=False))

    async def _round(self) -> None:
        endpoints = {e.id: e for e in await self.store.all()}
        self._enabled = [e for e in endpoints.values() if e.enabled]
        self.disabled = {e.id: not e.enabled and e.disabled_ms is not None
                         for e in endpoints.values()}
        for gone in set(self.stats) - set(endpoints):  # deleted: no more metrics
            del self.stats[gone]
        for endpoint_id, running in list(self.workers.items()):
            endpoint = endpoints.get(endpoint_id)
            if endpoint is None or not endpoint.enabled or running.lost.is_set():
                await self._stop(endpoint_id, release=not running.lost.is_set())
        for endpoint in endpoints.values():
            if not endpoint.enabled:
                continue
            now_ms = self._clock_ms()
            held = await self._leases.acquire(endpoint.id, self._instance, now_ms,
                                              self._ttl_ms)
            worker = self.workers.get(endpoint.id)
            if not held:
                if worker is not None:
                    await self._stop(endpoint.id, release=False)
                continue
            self._renewed[endpoint.id] = time.monotonic()
            if worker is None:
                await self._start(endpoint)
            elif worker.endpoint.version != endpoint.version:
                worker.reconfigure(endpoint, await self.store.take_rewinds(endpoint.id))
        self._drop_stale()

    async def _start(self, endpoint: Endpoint) -> None:
        client = self._outbound()
        stats = self.stats.setdefault(endpoint.id, EndpointStats())
        worker = EndpointWorker(endpoint, self.store, self._log, client, self.tuning,
                                holder=self._instance if self._fenced else None,
                                stats=stats, on_expired=self._expired,
                                clock_ms=self._clock_ms)
        try:
            await worker.start()
        except BaseException:
            await client.close()
            raise
        self.workers[endpoint.id] = worker
        self._clients[endpoint.id] = client
        logger.info("webhook %s: delivering from this instance", endpoint.id)

    async def _stop(self, endpoint_id: str, *, release: bool) -> None:
        worker = self.workers.pop(endpoint_id, None)
        self._renewed.pop(endpoint_id, None)
        if worker is None:
            return
        await worker.stop()
        client = self._clients.pop(endpoint_id, None)
        if client is not None:
            await client.close()
        if release:
            try:
                await self._leases.release(endpoint_id, self._instance)
            except RoomlogError as err:  # it runs out by itself
                logger.debug("webhook %s: lease not released: %s", endpoint_id, err.message)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro, context=logs.detached())
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    # -- the horizon ---------------------------------------------------------------

    async def _expired(self, endpoint: Endpoint, room: str, cursor: Cursor) -> None:
        """Called from the room's task: the disabling runs on its own (it stops the
        worker, and with it that task)."""
        if endpoint.id not in self._disabling:  # several rooms may pass it at once
            self._disabling.add(endpoint.id)
            self._spawn(self._disable(endpoint, room, cursor))

    async def _disable(self, endpoint: Endpoint, room: str, cursor: Cursor) -> None:
        try:
            await self._disable_now(endpoint, room, cursor)
        finally:
            self._disabling.discard(endpoint.id)

    async def _disable_now(self, endpoint: Endpoint, room: str, cursor: Cursor) -> None:
        now_ms = self._clock_ms()
        since = cursor.failing_since_ms or now_ms
        hours = (now_ms - since) / 3_600_000
        reason = (f"deliveries to {room} failed for {hours:.2f} h (since {since} ms), past "
                  f"the horizon of {self.tuning.retry.horizon:g} s")
        try:
            stored = await self.store.disable(endpoint.id, reason, now_ms)
        except RoomlogError as err:
            logger.warning("webhook %s: could not be disabled (%s); retrying next round",
                           endpoint.id, err.message)
            return
        await self._stop(endpoint.id, release=True)
        if stored is None:
            return
        self.disabled_total += 1
        logger.warning("webhook %s (%s) disabled: %s", endpoint.id, endpoint.url, reason)
        notice = {"event": "webhook.disabled", "endpoint": endpoint.id, "url": endpoint.url,
                  "room": room, "seq": cursor.seq + 1, "failing_since": since,
                  "reason": reason}
        try:
            await self._notify(ADMIN_ROOM, orjson.dumps(notice))
        except RoomlogError as err:
            logger.warning("webhook %s: the admin room was not told (%s)", endpoint.id,
                           err.message)
