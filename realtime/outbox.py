"""A bounded outbox per connection and the writer task that drains it.

The hub calls :meth:`Outbox.put` / :meth:`Outbox.extend` without awaiting:
they append encoded frames and wake the writer. The writer sends whatever has
accumulated as one wire payload (:func:`realtime.protocol.batch`), so a client
that falls behind gets fewer, larger frames instead of slowing the sender. If
the backlog passes its bound the outbox overflows: the connection is closed
with ``CloseCode.SLOW`` and the client resumes by replay. Memory held per
connection is therefore bounded by the settings, whatever the client does.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from realtime.protocol import Format, batch

__all__ = ["Outbox", "Send"]

Send = Callable[[bytes], Awaitable[None]]


class Outbox:
    def __init__(
        self,
        fmt: Format,
        *,
        max_frames: int,
        max_bytes: int,
        coalesce: int,
        on_overflow: Callable[[], None],
    ) -> None:
        self.format = fmt
        self._items: deque[bytes] = deque()
        self._bytes = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._coalesce = coalesce
        self._on_overflow = on_overflow
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self.overflowed = False
        self.closed = False
        self.frames_sent = 0  # wire frames
        self.items_sent = 0  # server frames inside them

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: bytes) -> None:
        if self.closed:
            return
        self._items.append(item)
        self._bytes += len(item)
        self._after_add()

    def extend(self, items: Sequence[bytes], nbytes: int | None = None) -> None:
        """Queue several frames; ``nbytes`` (their total size) saves a pass when
        the caller hands the same run to many outboxes."""
        if self.closed:
            return
        self._items.extend(items)
        self._bytes += sum(map(len, items)) if nbytes is None else nbytes
        self._after_add()

    def fits(self, frames: int, nbytes: int) -> bool:
        """Whether ``frames`` more items of ``nbytes`` in all stay within the bound."""
        return (len(self._items) + frames <= self._max_frames
                and self._bytes + nbytes <= self._max_bytes)

    def _after_add(self) -> None:
        if len(self._items) > self._max_frames or self._bytes > self._max_bytes:
            self.overflowed = True
            self.close()
            self._on_overflow()
            return
        self._empty.clear()
        self._wake.set()

    def close(self) -> None:
        """Drop the backlog and stop the writer; later puts are ignored."""
        self.closed = True
        self._items.clear()
        self._bytes = 0
        self._empty.set()
        self._wake.set()

    async def drained(self) -> None:
        """Wait until everything queued so far has been handed to the transport."""
        await self._empty.wait()

    async def run(self, send: Send) -> None:
        """The writer: send backlogs as they come until closed. One per connection."""
        items = self._items
        while True:
            await self._wake.wait()
            self._wake.clear()
            while items and not self.closed:
                n = min(len(items), self._coalesce)
                chunk = [items.popleft() for _ in range(n)]
                for item in chunk:
                    self._bytes -= len(item)
                await send(batch(self.format, chunk))
                self.frames_sent += 1
                self.items_sent += n
            if not items:
                self._empty.set()
            if self.closed:
                return
