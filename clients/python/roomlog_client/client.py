"""The client: one object that keeps a link to the hub and never loses an update.

``Client`` runs one supervising task. It opens a WebSocket (``ws.open_link``),
runs a session on it (``session.WsSession``) until it ends, and decides what
next from how it ended: reconnect after a backoff, refresh the token once, stop,
or after ``poll_after`` failed attempts in a row switch to long-polling
(``polling.Polling``) until a background probe gets a WebSocket through again.

Whatever the transport, frames of a room go through one ``rooms.Reader`` (the
position decides what is new) and writes through one ``outbox.Outbox`` (each
entry sent again with its id until answered), so a switch in either direction
neither loses nor repeats anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self

from roomlog_client.auth import Auth, TokenProvider
from roomlog_client.backoff import DEFAULT_SCHEDULE, Backoff
from roomlog_client.codec import Codec
from roomlog_client.errors import (
    SLOW_CLOSE,
    UNAUTHORIZED_CLOSE,
    ClientClosed,
    ClientError,
    ClientStopped,
    CommandError,
    ConnectFailed,
    ServerError,
    reconnects,
    retry_delay,
)
from roomlog_client.events import Ack, ConnectionState, Event, Pending, Position
from roomlog_client.http import HttpApi, HttpRefused
from roomlog_client.outbox import Outbox, Settled
from roomlog_client.polling import Polling
from roomlog_client.rooms import Reader, Room
from roomlog_client.session import SessionEnd, WsSession
from roomlog_client.store import Saved, StateFile
from roomlog_client.subscription import Subscription
from roomlog_client.ws import Link, OpenFailed, open_link

__all__ = ["Client"]

logger = logging.getLogger("roomlog_client")

EventCallback = Callable[[Event], Awaitable[None] | None]
StateCallback = Callable[[ConnectionState], None]


class Client:
    """A client of the hub at ``url`` (``ws://host:port/ws``).

    ``token`` authenticates; ``token_provider`` (sync or async, returning a token)
    is called to refresh it before it expires and once after it was refused. Use it
    as ``async with Client(url, token=...) as client:`` (or ``await start()`` and
    ``await close()``).

    Tuning (defaults follow docs/protocol.md): ``backoff`` the reconnect schedule in
    seconds (the last entry repeats) with ``jitter``; ``poll_after`` failed
    WebSocket attempts in a row before long-polling; ``ws_probe_interval`` between
    WebSocket attempts while polling; ``ping_interval`` / ``ping_timeout`` of the
    application ping; ``network_probe_interval`` between ``/health/live`` checks
    during a long backoff after a network failure (``None``: off); ``poll_wait``
    seconds a long-poll is held open; ``window`` unanswered writes in flight on a
    WebSocket; ``backfill`` reads the messages still kept after a ``reset``;
    ``max_frame_bytes`` the server's limit (a larger write is refused here with
    ``PAYLOAD_TOO_LARGE`` rather than sent: the server would close with 1009).

    ``state_file``: where positions and the outbox are kept (JSON, written
    atomically) so that a new client with the same file resumes every room and
    sends unanswered writes again with their ids. Positions are written at most
    every ``save_interval`` seconds (and at ``close()``); new writes at once.

    ``fail_fast``: ``start()`` (and ``async with``) waits for the first connection and
    raises ``ConnectFailed`` (``ClientStopped`` for a refused token) if it does not
    work, instead of retrying for ever: for scripts, tools and a first try, where a
    wrong URL should be an error. Outages after the first connection are waited out
    as always. Either way the first failed attempt is logged as a warning.
    """

    def __init__(
        self, url: str, *, token: str | None = None,
        token_provider: TokenProvider | None = None, http_url: str | None = None,
        format: str = "json", backoff: Sequence[float] = DEFAULT_SCHEDULE,
        jitter: float = 0.3, poll_after: int = 5, ws_probe_interval: float = 30.0,
        ping_interval: float = 15.0, ping_timeout: float = 10.0,
        network_probe_interval: float | None = 2.0, poll_wait: float = 25.0,
        connect_timeout: float = 10.0, window: int = 100, page_limit: int | None = None,
        backfill: bool = True, max_frame_bytes: int = 1_048_576,
        state_file: str | None = None, save_interval: float = 0.5,
        on_state: StateCallback | None = None, on_settled: Settled | None = None,
        fail_fast: bool = False,
    ) -> None:
        self.url = url
        self.fail_fast = fail_fast
        self._first: asyncio.Future[None] | None = None  # fail_fast: the first connection
        self._auth = Auth(token, token_provider)
        self._codec = Codec(format)
        self._backoff = Backoff(backoff, jitter=jitter)
        self.poll_after = poll_after
        self.ws_probe_interval = ws_probe_interval
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.network_probe_interval = network_probe_interval
        self.poll_wait = poll_wait
        self.connect_timeout = connect_timeout
        self.window = window
        self._backfill = backfill
        self.max_frame_bytes = max_frame_bytes
        self.http = HttpApi(http_url or _http_base(url), lambda: self._auth.token,
                            timeout=connect_timeout)
        self.reader = Reader(self.http, self._moved, page_limit=page_limit)
        self.outbox = Outbox(on_change=self._outbox_changed, on_settled=on_settled)
        self.rooms: dict[str, Room] = {}
        self._store = StateFile(state_file) if state_file else None
        self._saved: dict[str, Position] = {}
        self._save_interval = save_interval
        self._save_handle: asyncio.TimerHandle | None = None
        self._state = ConnectionState.CLOSED
        self._on_state = [on_state] if on_state else []
        self._state_queues: list[asyncio.Queue[ConnectionState | None]] = []
        self._task: asyncio.Task[None] | None = None
        self._consumers: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._session: WsSession | None = None
        self._polling: Polling | None = None
        self._ever_up = False
        self._closed = False
        self.stop_reason: ClientStopped | None = None
        if self._store is not None:
            saved = self._store.load()
            self._saved = dict(saved.rooms)
            self.outbox.restore(saved.outbox)

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        """Start connecting (in the background); returns at once, or with ``fail_fast``
        once connected (raising ``ConnectFailed`` or ``ClientStopped`` if that failed)."""
        if self._task is None and not self._closed:
            loop = asyncio.get_running_loop()
            if self.fail_fast:
                self._first = loop.create_future()
            self._task = loop.create_task(self._run(), name="roomlog-client")
        if self._first is not None:
            await asyncio.shield(self._first)

    async def close(self) -> None:
        """Close the link and stop. Subscriptions end; callers still waiting for a
        write get ``ClientClosed`` (with a state file the write stays saved and is
        sent by the next client)."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait([self._task], timeout=5.0)
        self._finish(ClientClosed())
        for task in list(self._consumers):
            task.cancel()
        await asyncio.gather(*self._consumers, return_exceptions=True)
        await self.http.aclose()

    def _finish(self, reason: ClientStopped) -> None:
        """Stop for good: the state file is written, everyone waiting is told."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self._first is not None and not self._first.done():
            self._first.set_exception(self.stop_reason)
            self._first.exception()  # retrieved: start() may be gone (close() first)
        self._save(final=True)
        end = None if isinstance(reason, ClientClosed) else reason
        for room in self.rooms.values():
            room.end(end)
        self.outbox.fail_waiters(reason)
        self._set_state(ConnectionState.CLOSED)
        for queue in self._state_queues:
            queue.put_nowait(None)

    # -- connection state ------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    def on_state_change(self, callback: StateCallback) -> None:
        """Call ``callback(state)`` at every change of :attr:`state`."""
        self._on_state.append(callback)

    async def states(self) -> AsyncIterator[ConnectionState]:
        """The current state, then every change, until the client stops."""
        queue: asyncio.Queue[ConnectionState | None] = asyncio.Queue()
        queue.put_nowait(self._state)
        if self.stop_reason is not None:
            queue.put_nowait(None)
        self._state_queues.append(queue)
        try:
            while (state := await queue.get()) is not None:
                yield state
        finally:
            self._state_queues.remove(queue)

    def _set_state(self, state: ConnectionState) -> None:
        if state is self._state:
            return
        logger.debug("state %s -> %s", self._state.value, state.value)
        self._state = state
        for queue in self._state_queues:
            queue.put_nowait(state)
        for callback in self._on_state:
            try:
                callback(state)
            except Exception:
                logger.exception("on_state callback failed")

    def reconnect_now(self) -> None:
        """Cut the current wait short (call it when the network is known to be back)."""
        self._wake.set()

    # -- rooms -------------------------------------------------------------------------

    def subscribe(self, room: str, *, since: Position | None = None, presence: bool = False,
                  on_event: EventCallback | None = None,
                  max_pending: int = 10_000) -> Subscription:
        """Follow ``room``: its messages (and resets) once each, in order.

        The position comes from ``since``, else from the state file, else the server
        places it at the head (a domain room then starts with a ``Reset(reason=
        "initial")`` carrying its state). Iterate the returned subscription, or pass
        ``on_event`` (a function or coroutine function) to have it called for each.
        """
        if self.stop_reason is not None:
            raise self.stop_reason
        entry = self.rooms.get(room)
        if entry is None:
            entry = Room(room, since or self._saved.get(room), backfill=self._backfill,
                         presence=presence)
            self.rooms[room] = entry
            self._moved(entry)
            if self._session is not None:
                self._session.subscribe(entry)
            elif self._polling is not None:
                self._polling.follow(entry)
        sub = Subscription(entry, max_pending, self._sink_closed, self._schedule_save)
        entry.sinks.append(sub)
        if on_event is not None:
            task = asyncio.get_running_loop().create_task(_consume(sub, on_event))
            self._consumers.add(task)
            task.add_done_callback(self._consumers.discard)
        return sub

    def unsubscribe(self, room: str) -> None:
        """Stop following ``room`` (every subscription of it ends) and forget its
        position."""
        entry = self.rooms.pop(room, None)
        self._saved.pop(room, None)
        if entry is None:
            return
        entry.end()
        if self._session is not None:
            self._session.unsubscribe(entry)
        self._schedule_save()

    def _sink_closed(self, sub: Subscription) -> None:
        entry = self.rooms.get(sub.room)
        if entry is not None and sub in entry.sinks:
            entry.sinks.remove(sub)
            if not entry.sinks:
                self.unsubscribe(sub.room)

    def position(self, room: str) -> Position | None:
        entry = self.rooms.get(room)
        return entry.cursor.position if entry is not None else self._saved.get(room)

    def fail_room(self, room: Room, error: ServerError) -> None:
        """The server refused ``room`` for good: its subscriptions raise ``error``."""
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            self._saved.pop(room.name, None)
            self._schedule_save()
        room.end(error)

    # -- writes ------------------------------------------------------------------------

    async def publish(self, room: str, data: Any, *, id: str | None = None) -> Ack:
        """Publish ``data`` to ``room``; returns the ack once it is committed.

        Kept in the outbox (with its id) while offline or unanswered and sent again
        until answered, so it is stored once. Raises ``CommandError`` if the server
        rejects it (FORBIDDEN, PAYLOAD_TOO_LARGE, ...)."""
        return await self._issue(Pending(id or _new_id(), "publish", room, {"data": data}))

    async def command(self, room: str, name: str, args: dict[str, Any] | None = None, *,
                      id: str | None = None, expected_seq: int | None = None) -> Any:
        """Run command ``name`` in a domain room; returns the ack's ``result``.

        Exactly once, however often it has to be sent; a rejection raises
        ``CommandError`` with the server's code (roll the UI back)."""
        return (await self.command_ack(room, name, args, id=id,
                                       expected_seq=expected_seq)).result

    async def command_ack(self, room: str, name: str, args: dict[str, Any] | None = None, *,
                          id: str | None = None, expected_seq: int | None = None) -> Ack:
        """As :meth:`command`, returning the whole ack (``seqs``, ``duplicate``, ...)."""
        body: dict[str, Any] = {"name": name, "args": args or {}}
        if expected_seq is not None:
            body["expected_seq"] = expected_seq
        return await self._issue(Pending(id or _new_id(), "command", room, body))

    async def _issue(self, entry: Pending) -> Ack:
        if self.stop_reason is not None:
            raise self.stop_reason
        size = len(self._codec.encode(entry.frame()))
        if size > self.max_frame_bytes:  # the server would close with 1009: stop
            raise CommandError("PAYLOAD_TOO_LARGE", f"the frame would be {size} bytes, more "
                               f"than max_frame_bytes ({self.max_frame_bytes})",
                               room=entry.room, id=entry.id)
        return await self.outbox.add(entry)

    def pending(self) -> list[Pending]:
        """Writes not answered yet, oldest first."""
        return list(self.outbox.entries.values())

    async def presence(self, room: str) -> dict[str, Any]:
        """Who is in ``room`` now: ``{"room", "connections", "users": [...]}``."""
        if self._session is not None:
            return await self._session.presence(room)
        try:
            return await self.http.presence(room)
        except HttpRefused as refused:
            raise refused.error from None

    # -- persistence -------------------------------------------------------------------

    def _moved(self, room: Room) -> None:
        self._schedule_save()

    def _outbox_changed(self, urgent: bool) -> None:
        if urgent:
            self._save()
        else:
            self._schedule_save()

    def _schedule_save(self) -> None:
        if self._store is None or self._save_handle is not None:
            return
        if self._save_interval <= 0:
            self._save()
            return
        with contextlib.suppress(RuntimeError):  # no running loop: saved at close
            self._save_handle = asyncio.get_running_loop().call_later(
                self._save_interval, self._save)

    def _save(self, *, final: bool = False) -> None:
        """Write the state file: each room at what its consumers finished (``final``,
        when the client stops: at what they took), and the outbox."""
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        if self._store is None:
            return
        rooms = dict(self._saved)
        for name, room in self.rooms.items():
            position = room.saved_position(final=final)
            if position is not None:
                rooms[name] = position
        try:
            self._store.save(Saved(rooms, list(self.outbox.entries.values())))
        except OSError:
            logger.exception("could not write the state file %s", self._store.path)

    # -- the supervisor ----------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._supervise()
        except ClientStopped as stopped:
            logger.warning("roomlog client stopped: %s", stopped)
            self._finish(stopped)
        except Exception as exc:  # a bug: stop visibly rather than hang
            logger.exception("roomlog client failed")
            self._finish(ClientStopped(f"internal error: {exc!r}"))

    def _trying(self) -> ConnectionState:
        return ConnectionState.RECONNECTING if self._ever_up else ConnectionState.CONNECTING

    async def _supervise(self) -> None:
        attempts = 0  # failed WebSocket attempts in a row (the backoff's index)
        failures = 0  # those of them that reached the host (they lead to polling)
        link: Link | None = None
        while True:
            if link is None and failures >= self.poll_after:
                link = await self._run_polling()
            if link is None:
                if self._state is not ConnectionState.OFFLINE:
                    self._set_state(self._trying())
                try:
                    link = await self.open()
                except OpenFailed as failed:
                    if failed.kind == "busy":  # the server is saturated: come back as asked
                        self._set_state(self._trying())
                        await self.pause((failed.retry_after or self._backoff.delay(0))
                                         + self._backoff.spread(1.0))
                        continue
                    attempts += 1
                    if self.fail_fast and not self._ever_up:
                        raise ConnectFailed(self.url, failed.detail, failed.code) from None
                    # The first failure of an outage is said out loud: a wrong URL
                    # must not look like a client that is quietly waiting.
                    log = logger.warning if attempts == 1 else logger.info
                    log("cannot connect to %s (attempt %d): %s; trying again", self.url,
                        attempts, failed)
                    if failed.kind == "unreachable":  # the network, not the WebSocket
                        self._set_state(ConnectionState.OFFLINE)
                    else:
                        self._set_state(self._trying())
                        failures += 1
                        if failures >= self.poll_after:
                            continue
                    await self.pause(self._backoff.delay(attempts - 1),
                                     probe=failed.kind in ("network", "unreachable"))
                    continue
            attempts = failures = 0
            self._ever_up = True
            end = await self._run_session(link)
            link = None
            if self._closed:
                return
            logger.info("WebSocket closed: %d %s", end.code, end.reason)
            if end.code == UNAUTHORIZED_CLOSE:
                await self._auth.refused(end.token, end.reason or "closed with 4001")
                continue  # at once, with the fresh token
            if not reconnects(end.code):
                raise ClientStopped(end.reason or "closed by the server", end.code)
            self._set_state(ConnectionState.RECONNECTING)
            if end.retry_after is not None:  # the server drains: come back after this
                delay = end.retry_after + self._backoff.spread(1.0)
            elif end.code == SLOW_CLOSE or end.resync:
                delay = self._backoff.spread(0.5)
            else:
                delay = self._backoff.delay(0)
            await self.pause(delay, probe=end.code == 1006)

    async def open(self) -> Link:
        """One WebSocket attempt: an authenticated link, or OpenFailed. A refused token
        is refreshed (once) and tried again on the spot; 4001 again stops."""
        while True:
            token = await self._auth.current()
            try:
                link = await open_link(self.url, self._codec, token,
                                       within=self.connect_timeout)
            except OpenFailed as failed:
                if failed.kind == "auth":
                    await self._auth.refused(token, failed.detail)
                    continue
                if failed.code is not None and not reconnects(failed.code):
                    raise ClientStopped(failed.detail or "closed by the server",
                                        failed.code) from None
                raise
            self._auth.accepted()
            return link

    async def _run_session(self, link: Link) -> SessionEnd:
        session = WsSession(self, link)
        self._session = session
        self._set_state(ConnectionState.CONNECTED)
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        try:
            return await session.run()
        finally:
            self._session = None

    async def _run_polling(self) -> Link:
        polling = Polling(self)
        self._polling = polling
        # POLLING once a read over HTTP worked (polling_works): a network where nothing
        # gets through is not shown as live.
        if not self.rooms:
            self._set_state(ConnectionState.POLLING)
        try:
            return await polling.run()
        finally:
            self._polling = None

    def polling_works(self, works: bool) -> None:
        """A long-poll (or a write over HTTP) got an answer, or failed on the network."""
        if self._polling is None:
            return
        if works:
            self._ever_up = True
            self._set_state(ConnectionState.POLLING)
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
        elif self._state is ConnectionState.POLLING:
            self._set_state(self._trying())

    async def pause(self, delay: float, *, probe: bool = False) -> None:
        """Wait ``delay`` seconds, or less: :meth:`reconnect_now`, or (``probe``, after
        a network failure) the server answering ``/health/live`` again."""
        self._wake.clear()
        deadline = time.monotonic() + delay
        step = self.network_probe_interval if probe else None
        while (remaining := deadline - time.monotonic()) > 0:
            wait = min(remaining, step) if step else remaining
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that races with the event (close() would then wait forever).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
                return
            if step and deadline - time.monotonic() > 0 and await self.http.live():
                await asyncio.sleep(self._backoff.spread(0.5))  # not all clients at once
                return

    def retry_delay(self, attempt: int) -> float:
        return self._backoff.delay(attempt)

    @property
    def auth(self) -> Auth:
        return self._auth

    def reject(self, entry_id: str, error: ServerError) -> None:
        """Settle a write the server refused: retryable codes go back in line."""
        entry = self.outbox.entries.get(entry_id)
        if entry is None:
            return
        delay = retry_delay(error.code, error.retry_after, entry.attempts - 1)
        if delay is not None:
            self.outbox.retry_later(entry_id, delay)
        else:
            self.outbox.reject(entry_id, CommandError(
                error.code, error.message, details=error.details, retry_after=error.retry_after,
                room=error.room or entry.room, id=entry_id))


async def _consume(sub: Subscription, callback: EventCallback) -> None:
    """Feed a subscription to an ``on_event`` callback, one event at a time."""
    try:
        async for event in sub:
            try:
                result = callback(event)
                if result is not None:
                    await result
            except Exception:
                logger.exception("on_event callback for %s failed", sub.room)
    except ClientError as exc:
        logger.warning("subscription to %s ended: %s", sub.room, exc)


def _new_id() -> str:
    return uuid.uuid4().hex


def _http_base(url: str) -> str:
    """``ws://host:port/ws`` -> ``http://host:port`` (and wss -> https)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a WebSocket URL: {url!r}")
    host = rest.split("/", 1)[0]
    return {"ws": "http", "wss": "https"}.get(scheme, scheme) + "://" + host
