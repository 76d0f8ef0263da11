"""Long-polling mode: the same rooms and outbox over plain HTTP.

Entered after ``poll_after`` failed WebSocket attempts in a row (a proxy that
refuses WebSockets, a network that drops them). Each room is read with
``GET /v1/rooms/{room}/messages?after=<seq>&epoch=<epoch>&wait=…`` from its
position, through the same ``Reader`` as WebSocket frames; the outbox is sent
one entry at a time, in order, with ``POST .../messages`` or
``POST .../commands`` and the entries' ids. A prober tries the WebSocket every
``ws_probe_interval`` seconds; when it gets an authenticated link, the pollers
and the sender are cancelled (positions and the outbox are consistent at any
await) and the link is handed back to the supervisor, which subscribes every
room from its position: nothing is lost or repeated at the switch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from roomlog_client.errors import ClientStopped, SubscriptionError
from roomlog_client.http import HttpRefused, TransportError
from roomlog_client.rooms import Resync, Room
from roomlog_client.session import FINAL_SUBSCRIBE_CODES
from roomlog_client.ws import Link, OpenFailed

if TYPE_CHECKING:
    from roomlog_client.client import Client

__all__ = ["Polling"]

logger = logging.getLogger("roomlog_client")


class Polling:
    def __init__(self, client: Client) -> None:
        self._c = client
        self._stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def run(self) -> Link:
        """Poll until a WebSocket works again; return it. Raises ClientStopped when a
        refusal means stop (a token refused twice)."""
        loop = asyncio.get_running_loop()
        for room in list(self._c.rooms.values()):
            self.follow(room)
        sender = loop.create_task(self._guard(self._send()))
        prober = loop.create_task(self._probe())
        try:
            waiters: list[asyncio.Future[Any]] = [prober, self._stopped]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if prober.done():
                return prober.result()
            self._stopped.result()  # raises the ClientStopped
            raise AssertionError("unreachable")
        finally:
            tasks = [sender, prober]
            for room in self._c.rooms.values():
                if room.poller is not None:
                    tasks.append(room.poller)
                    room.poller = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not self._stopped.done():
                self._stopped.cancel()

    def follow(self, room: Room) -> None:
        """Start polling ``room`` (at once, or when it is subscribed meanwhile)."""
        if room.poller is None:
            room.poller = asyncio.get_running_loop().create_task(self._guard(self._poll(room)))

    async def _guard(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a poller or the sender; a stop ends polling (and the client)."""
        try:
            await work
        except ClientStopped as stopped:
            if not self._stopped.done():
                self._stopped.set_exception(stopped)

    async def _probe(self) -> Link:
        while True:
            await self._c.pause(self._c.ws_probe_interval)
            try:
                return await self._c.open()
            except OpenFailed as failed:
                logger.debug("WebSocket probe failed: %s", failed)

    async def _poll(self, room: Room) -> None:
        c = self._c
        attempt = 0
        while True:
            token = c.auth.token
            try:
                if room.cursor.position is None:
                    async with room.lock:
                        await c.reader.place(room)
                pos = room.cursor.position
                assert pos is not None
                page = await c.http.read(room.name, pos.seq, pos.epoch, wait=c.poll_wait)
                async with room.lock:
                    for frame in page.frames:
                        await c.reader.apply(room, frame)
                attempt = 0
                c.auth.accepted()
                c.polling_works(True)
                continue
            except HttpRefused as refused:
                if refused.status == 401:
                    await c.auth.refused(token, refused.error.message)
                    continue
                if refused.error.code in FINAL_SUBSCRIBE_CODES:
                    error = refused.error
                    c.fail_room(room, SubscriptionError(error.code, error.message,
                                                        details=error.details, room=room.name))
                    return
                delay = refused.error.retry_after
                logger.info("polling %s: %s", room.name, refused)
            except (TransportError, Resync) as exc:
                delay = None
                logger.info("polling %s: %r", room.name, exc)
                if isinstance(exc, TransportError):
                    c.polling_works(False)
            except Exception:  # a bug or a body that is not ours: log, back off, go on
                delay = None
                logger.exception("polling %s failed", room.name)
            await asyncio.sleep(delay if delay is not None else c.retry_delay(attempt))
            attempt += 1

    async def _send(self) -> None:
        c = self._c
        outbox = c.outbox
        attempt = 0
        while True:
            due = outbox.due(1)
            if not due:
                await outbox.wait(outbox.next_due_in(1))
                continue
            entry = due[0]
            token = c.auth.token
            outbox.sent(entry)
            try:
                ack = await c.http.send(entry)
            except HttpRefused as refused:
                if refused.status == 401:
                    entry.inflight = False
                    await c.auth.refused(token, refused.error.message)
                else:
                    c.reject(entry.id, refused.error)
                    attempt += 1
                continue
            except TransportError as exc:
                logger.info("sending %s: %r", entry.id, exc)
                outbox.retry_later(entry.id, c.retry_delay(attempt))
                attempt += 1
                continue
            except Exception:  # a body that is not ours (a proxy's page): log, back off
                logger.exception("sending %s failed", entry.id)
                outbox.retry_later(entry.id, c.retry_delay(attempt))
                attempt += 1
                continue
            outbox.resolve(entry.id, ack)
            c.polling_works(True)
            attempt = 0
