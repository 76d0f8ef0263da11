"""What the application holds for a room: ``async for event in subscription``.

Events (``Message`` and ``Reset``) are put here by the client, each once and in
the room's order, and wait until the application takes them. The buffer is
bounded by ``max_pending``: when it is full the client stops reading the
room's stream until the application catches up (it never drops anything; the
server's flow control, and a resume if it comes to that, do the rest).

Each item carries the room's position after it. The subscription tracks two
positions the state file uses: ``taken`` (the last event handed to the
application) and ``done`` (the last event the application finished: the one
before it asked for the next). A crash resumes from ``done`` (the event being
processed is delivered again: nothing lost); a ``close()`` from ``taken``.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import TYPE_CHECKING

from roomlog_client.errors import SubscriptionClosed
from roomlog_client.events import Event, Position

if TYPE_CHECKING:
    from roomlog_client.rooms import Room

__all__ = ["Subscription"]


class _End:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error


_Item = tuple[Event | None, Position | None]  # (None, position): the position moved silently


class Subscription:
    """One consumer of a room. Iterate it (``async for``), or pass ``on_event`` to
    ``Client.subscribe``. The iteration ends after :meth:`close` or when the client
    is closed; it raises ``SubscriptionError`` when the room cannot be read and
    ``ClientStopped`` when the client stops."""

    def __init__(self, room: Room, max_pending: int, on_close: Callable[[Subscription], None],
                 on_progress: Callable[[], None]) -> None:
        self._room = room
        self.room = room.name
        self._max = max_pending
        self._items: collections.deque[_Item | _End] = collections.deque()
        self._has_items = asyncio.Event()
        self._has_space = asyncio.Event()
        self._has_space.set()
        self._on_close = on_close
        self._on_progress = on_progress
        self._ended = False
        self.taken: Position | None = room.cursor.position
        self.done: Position | None = self.taken

    # -- the client's side ---------------------------------------------------------

    def put(self, event: Event | None, position: Position | None) -> None:
        """Never blocks (the client waits for :meth:`wait_space` before it accepts)."""
        if self._ended:
            return
        if event is None and not self._items and self.done == self.taken:
            # Nothing waits and the application holds nothing: the move is done already.
            self.taken = self.done = position
            self._on_progress()
            return
        self._items.append((event, position))
        self._has_items.set()
        if len(self._items) >= self._max:
            self._has_space.clear()

    async def wait_space(self) -> None:
        await self._has_space.wait()

    def end(self, error: BaseException | None = None) -> None:
        """No more events: the iteration stops (or raises ``error``) after what is queued."""
        if not self._ended:
            self._ended = True
            self._items.append(_End(error))
            self._has_items.set()
            self._has_space.set()

    # -- the application's side ------------------------------------------------------

    @property
    def position(self) -> Position | None:
        """The position after the last event the application took."""
        return self.taken

    async def ready(self) -> Position:
        """Wait until the server placed the room's position (``subscribed``, or the
        head read over HTTP while polling): from then on nothing committed is missed."""
        return await self._room.placed()

    def pending(self) -> int:
        """Items waiting for the application."""
        return sum(1 for item in self._items if not isinstance(item, _End))

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self.done != self.taken:  # asking for the next one: the last one is finished
            self.done = self.taken
            self._on_progress()
        while True:
            while not self._items:
                self._has_items.clear()
                await self._has_items.wait()
            item = self._items[0]
            if isinstance(item, _End):
                self._on_progress()
                if item.error is not None:
                    raise item.error
                raise StopAsyncIteration
            self._items.popleft()
            if len(self._items) < self._max:
                self._has_space.set()
            event, position = item
            self.taken = position
            if event is None:
                self.done = position
                continue
            self._on_progress()
            return event

    async def next(self) -> Event:
        """The next event (waiting for it), as one step of ``async for``: for scripts
        and tests that take events one at a time. Bound the wait with
        ``asyncio.timeout()`` if you need to (a cancelled wait loses nothing: ask
        again). Raises what the iteration raises (``SubscriptionError``,
        ``ClientStopped``) and ``SubscriptionClosed`` once the subscription was closed."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise SubscriptionClosed(self.room) from None

    def close(self) -> None:
        """Stop this consumer; the client unsubscribes the room when it was the last."""
        if not self._ended:
            self.end()
            self._on_close(self)
