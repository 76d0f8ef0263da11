"""A bounded outbox per connection, and the two ways it is drained.

The hub calls :meth:`Outbox.put` / :meth:`Outbox.extend` without awaiting:
they append encoded frames. Whatever has accumulated goes out as one wire
payload (:func:`roomlog.protocol.batch`), so a client that falls behind gets
fewer, larger frames instead of slowing the sender.

Two ways out:

* **direct** (WebSockets under ``roomlog serve``): the outbox is marked dirty
  and a single :class:`Flusher` callback at the end of the event-loop turn
  writes every dirty outbox synchronously through the transport's direct send.
  One fan-out to a thousand subscribers costs one callback, not a thousand
  task wake-ups and awaited sends.
* **writer task** (:meth:`Outbox.run`): when there is no direct send (SSE, other
  ASGI servers) or the socket is not writable, a per-connection task awaits
  the transport's send, which waits for the client to drain.

Both take from the front of the same list, and the flush stands aside while
the writer is mid-send, so frames never reorder. If the backlog passes its
bound the outbox overflows: ``on_overflow`` runs (the connection is closed
with ``CloseCode.SLOW``) and the client resumes by replay. Memory held per
connection is therefore bounded by the settings, whatever the client does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from roomlog.protocol import Format, batch

__all__ = ["Direct", "Flusher", "Outbox", "Send"]

Send = Callable[[bytes], Awaitable[None]]
Direct = Callable[[bytes], bool]  # write now; False when the socket cannot take it


class Flusher:
    """Flushes every outbox that got frames during this event-loop turn, once.

    Subscribers of one room mostly hold the very same run of frames, so the
    joined payload is built once per turn and shared (:meth:`join`).
    """

    def __init__(self) -> None:
        self._dirty: list[Outbox] = []
        self._scheduled = False
        self._joined: dict[tuple[Format, int, int], tuple[list[bytes], bytes]] = {}

    def join(self, fmt: Format, chunk: list[bytes]) -> bytes:
        """``batch(fmt, chunk)``, reusing a payload built this turn for the same
        frames (the same objects, in the same order: checked item by item)."""
        if len(chunk) == 1:
            return chunk[0]
        key = (fmt, len(chunk), id(chunk[0]))
        hit = self._joined.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], chunk, strict=True)):
            return hit[1]
        payload = batch(fmt, chunk)
        self._joined[key] = (chunk, payload)
        return payload

    def mark(self, outbox: Outbox) -> None:
        self._dirty.append(outbox)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        try:
            for outbox in dirty:
                outbox.flush()
        finally:
            self._joined.clear()  # ids are only meaningful while the chunks live


class Outbox:
    __slots__ = ("_bytes", "_coalesce", "_direct", "_empty", "_flusher", "_items", "_marked",
                 "_max_bytes", "_max_frames", "_on_overflow", "_sending", "_wake", "closed",
                 "format", "frames_sent", "items_sent", "overflowed")

    def __init__(
        self,
        fmt: Format,
        *,
        max_frames: int,
        max_bytes: int,
        coalesce: int,
        on_overflow: Callable[[], None],
        direct: Direct | None = None,
        flusher: Flusher | None = None,
    ) -> None:
        self.format = fmt
        # A list, not a deque: an empty deque holds a 64-slot block (~600 bytes) per
        # idle connection, and the front is taken a whole chunk at a time anyway.
        self._items: list[bytes] = []
        self._bytes = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._coalesce = coalesce
        self._on_overflow = on_overflow
        self._direct = direct if flusher is not None else None
        self._flusher = flusher
        self._marked = False  # waiting for the flusher
        self._sending = False  # the writer task is awaiting a send
        # Made when first awaited: most connections never wait for either (the native
        # WebSocket transport has no writer task), and an Event costs ~700 bytes.
        self._wake: asyncio.Event | None = None
        self._empty: asyncio.Event | None = None
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

    def offer(self, items: Sequence[bytes], nbytes: int, payload: Callable[[], bytes]) -> None:
        """``extend``, but when nothing is queued or being sent and the direct send can
        take it, write ``payload()`` (``items`` as one wire payload, built once by the
        caller for every subscriber) now: a fan-out to a thousand idle subscribers is
        one pass of socket writes, not a pass of queueing and one of flushing at the
        end of the loop turn. Order holds: a write happens only with nothing before it."""
        if (self._direct is not None and not self._items and not self._sending
                and not self._marked and not self.closed and len(items) <= self._coalesce
                and nbytes <= self._max_bytes and self._write_now(payload)):
            self.frames_sent += 1
            self.items_sent += len(items)
            return
        self.extend(items, nbytes)

    def _write_now(self, payload: Callable[[], bytes]) -> bool:
        assert self._direct is not None
        try:
            return self._direct(payload())
        except Exception:  # never the committer's failure: queued, the flush at the
            return False  # end of the turn meets the error where it always did

    def fits(self, frames: int, nbytes: int) -> bool:
        """Whether ``frames`` more items of ``nbytes`` in all stay within the bound."""
        return (len(self._items) + frames <= self._max_frames
                and self._bytes + nbytes <= self._max_bytes)

    def _after_add(self) -> None:
        if len(self._items) > self._max_frames or self._bytes > self._max_bytes:
            self.overflowed = True
            on_overflow = self._on_overflow  # close() lets go of it
            self.close()
            on_overflow()
            return
        if self._empty is not None:
            self._empty.clear()
        if self._direct is None:
            self._woken()
        elif not self._marked and not self._sending:
            assert self._flusher is not None
            self._marked = True
            self._flusher.mark(self)
        # else: the writer task is mid-send and takes these next

    def close(self) -> None:
        """Drop the backlog and stop the writer; later puts are ignored. Lets go of
        its owner's callbacks: a closed connection leaves no reference cycle behind
        for the collector to find."""
        self.closed = True
        self._items.clear()
        self._bytes = 0
        self._emptied()
        self._woken()
        self._on_overflow = _nothing
        self._direct = None

    async def drained(self) -> None:
        """Wait until everything queued so far has been handed to the transport."""
        if self._items and self._direct is not None and not self._sending and not self.closed:
            self.flush()  # written now if the socket takes it: no wait, no event (a fresh
            # subscription's `subscribed` frame, on every connect)
        if (self._items or self._sending) and not self.closed:
            if self._empty is None:
                self._empty = asyncio.Event()
            await self._empty.wait()

    def _emptied(self) -> None:
        event, self._empty = self._empty, None  # its waiters are woken; the next wait
        if event is not None:  # makes a new one
            event.set()

    def _woken(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _peek(self) -> list[bytes]:
        """The next frame's worth of items, still queued."""
        items = self._items
        if len(items) <= self._coalesce:
            return list(items)
        return items[:self._coalesce]

    def _consume(self, chunk: list[bytes]) -> None:
        """Drop ``chunk`` (the front of the queue) once it is written or handed over."""
        items = self._items
        if len(chunk) == len(items):
            items.clear()
        else:
            del items[:len(chunk)]
        self._bytes -= sum(map(len, chunk))
        self.frames_sent += 1
        self.items_sent += len(chunk)

    def flush(self) -> None:
        """Write the backlog now through the direct send (the Flusher calls this)."""
        self._marked = False
        if self._sending or self.closed or self._direct is None:
            return
        assert self._flusher is not None
        while self._items:
            chunk = self._peek()
            if not self._direct(self._flusher.join(self.format, chunk)):
                # not writable: the writer task waits for the socket (the native
                # transport calls flush() again when the socket drains)
                self._woken()
                return
            self._consume(chunk)
        self._emptied()

    async def run(self, send: Send) -> None:
        """The writer task: sends backlogs the direct path could not, until closed."""
        items = self._items
        if self._wake is None:
            self._wake = asyncio.Event()
            if items or self.closed:
                self._wake.set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while items and not self.closed:
                chunk = self._peek()
                self._consume(chunk)
                self._sending = True
                try:
                    await send(batch(self.format, chunk))
                finally:
                    self._sending = False
            if not items:
                self._emptied()
            if self.closed:
                return


def _nothing() -> None:
    return None
