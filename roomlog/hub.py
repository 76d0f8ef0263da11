"""Local subscribers per room and ordered, contiguous fan-out.

The hub never awaits a client: :meth:`Hub.deliver` runs synchronously and puts
each message's bytes (encoded once per format, see ``Message.encoded``) into
the subscribers' bounded outboxes.

A subscription is either *replaying* or *live*. While replaying, live messages
are held in the subscription's buffer (bounded by ``live_buffer``); the
replay reads the log page by page after the client's seq, then merges the
buffer by seq, dropping duplicates, and only then turns live. Any gap a live
subscription would see (a message that does not follow its cursor) sends it
back to replay from the log, so a subscriber never skips a seq silently.
When the wanted range is gone or the epoch differs, the subscriber gets a
``reset`` frame and continues from the room's head.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal
from roomlog.log import Log, Page, RoomInfo
from roomlog.outbox import Outbox
from roomlog.protocol import Format, Lens, Message, Since, batch, encode, error_frame

__all__ = ["Hub", "Subscription", "stale", "wire"]

logger = logging.getLogger(__name__)

Interest = Callable[[str], None]
# A domain room's (seq, epoch, state as the viewer may see it); None for plain rooms.
View = Callable[[str, "Principal | None"], Awaitable[tuple[int, str, dict[str, Any]] | None]]
# What a viewer may see of a room's messages; None: every message whole (the fast path).
Lenses = Callable[[str, "Principal | None"], "Lens | None"]
# Whether a reader may still read a room after these messages (None: they change nothing).
Gate = Callable[["Principal | None"], bool]
Gates = Callable[[str, list[Message]], "Gate | None"]
# Whether a reader may read a room now (a private domain room's state decides).
Admits = Callable[[str, "Principal | None"], Awaitable[bool]]


def wire(message: Message, fmt: Format, lens: Lens | None) -> bytes:
    """The bytes a reader with ``lens`` gets for ``message`` (cached per audience)."""
    return message.encoded(fmt) if lens is None else message.encoded_for(fmt, lens)


@dataclass(eq=False)
class Subscription:
    room: str
    outbox: Outbox
    since: Since | None
    ident: str | None = None
    epoch: str = ""
    cursor: int = 0  # last seq handed to the outbox
    live: bool = False
    buffer: list[Message] = field(default_factory=list)
    lost: bool = False  # the buffer overflowed during replay: read the log again
    task: asyncio.Task[None] | None = None
    on_drop: Callable[[], None] | None = None
    viewer: Principal | None = None  # whose view of a domain room's state it gets
    presence: bool = False  # wants join/leave notices of the room
    lens: Lens | None = None  # what the viewer may see of each message

    def send(self, frame: dict[str, Any]) -> None:
        self.outbox.put(encode(self.outbox.format, frame))


@dataclass(eq=False)
class _Room:
    subs: set[Subscription] = field(default_factory=set)
    watchers: set[asyncio.Event] = field(default_factory=set)
    #: (epoch, seq) of the last message handed to its live subscribers: where a new
    #: subscription without ``since`` starts, without a log read (see _catch_up)
    known: tuple[str, int] | None = None
    #: the subscribers that want presence notices: a join or leave visits these, not
    #: every subscriber (20,000 connects into one room were 20,000 scans each)
    watching: set[Subscription] = field(default_factory=set)

    @property
    def idle(self) -> bool:
        return not self.subs and not self.watchers


class Hub:
    def __init__(
        self,
        log: Log,
        *,
        page_size: int = 500,
        live_buffer: int = 10_000,
        on_first_interest: Interest | None = None,
        on_last_interest: Interest | None = None,
        on_live: Interest | None = None,
        view: View | None = None,
        lenses: Lenses | None = None,
        gates: Gates | None = None,
        admits: Admits | None = None,
        write_at_once: bool = True,
    ) -> None:
        """``write_at_once``: a delivery writes to idle subscribers' sockets at once
        (``Outbox.offer``); False leaves every write to the flush at the end of the loop
        turn, so that what was scheduled before (a bus's writer telling the other
        instances) goes first."""
        self._log = log
        self._write_at_once = write_at_once
        self._page_size = page_size
        self._live_buffer = live_buffer
        self._rooms: dict[str, _Room] = {}
        self._on_first = on_first_interest
        self._on_last = on_last_interest
        self._on_live = on_live
        self._view = view
        self._lenses = lenses
        self._gates = gates
        self._admits = admits
        self.delivered = 0  # message copies handed to outboxes (metrics)

    # -- interest ----------------------------------------------------------------

    def _room(self, name: str) -> _Room:
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = _Room()
            if self._on_first is not None:
                self._on_first(name)
        return room

    def _maybe_forget(self, name: str) -> None:
        room = self._rooms.get(name)
        if room is not None and room.idle:
            del self._rooms[name]
            if self._on_last is not None:
                self._on_last(name)

    @property
    def rooms(self) -> list[str]:
        return list(self._rooms)

    def subscriber_count(self, name: str) -> int:
        room = self._rooms.get(name)
        return len(room.subs) if room else 0

    @property
    def subscriptions(self) -> int:
        return sum(len(room.subs) for room in self._rooms.values())

    @property
    def watchers(self) -> int:
        return sum(len(room.watchers) for room in self._rooms.values())

    def floor(self, name: str) -> tuple[str, int] | None:
        """The lowest position of the room's live subscribers, (epoch, seq): where
        ordered delivery to all of them must continue from. None if none is live."""
        room = self._rooms.get(name)
        live = [sub for sub in room.subs if sub.live] if room else []
        if not live:
            return None
        epoch = live[0].epoch
        return epoch, min(sub.cursor for sub in live if sub.epoch == epoch)

    def watches_presence(self, name: str) -> bool:
        room = self._rooms.get(name)
        return room is not None and bool(room.watching)

    def notify(self, name: str, frame: dict[str, Any]) -> None:
        """Send an unsequenced frame (a presence notice) to the subscribers of the
        room that asked for such notices."""
        room = self._rooms.get(name)
        if room is not None:
            for sub in list(room.watching):
                sub.send(frame)

    # -- subscriptions ---------------------------------------------------------

    def subscribe(self, name: str, outbox: Outbox, since: Since | None,
                  ident: str | None = None,
                  on_drop: Callable[[], None] | None = None,
                  viewer: Principal | None = None, presence: bool = False) -> Subscription:
        """Start a subscription: it replays in the background, then goes live.

        If the replay fails (database down) the client gets an ``error`` frame for
        the room and the subscription ends; ``on_drop`` is then called (SSE ends
        its stream there so the client reconnects).
        """
        sub = Subscription(name, outbox, since, ident, on_drop=on_drop, viewer=viewer,
                           presence=presence, lens=self.lens(name, viewer))
        room = self._room(name)
        room.subs.add(sub)
        if presence:
            room.watching.add(sub)
        self._start_replay(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub.task is not None and sub.task is not asyncio.current_task():
            sub.task.cancel()
        # The cancelled task keeps its traceback, whose frames hold `sub`, and the
        # owner's callback usually holds `sub` too: cycles a full collection would
        # have to find. A subscription that ended needs neither.
        sub.task = None
        sub.on_drop = None
        room = self._rooms.get(sub.room)
        if room is not None:
            room.subs.discard(sub)
            room.watching.discard(sub)
            self._maybe_forget(sub.room)

    def lens(self, name: str, viewer: Principal | None) -> Lens | None:
        return None if self._lenses is None else self._lenses(name, viewer)

    def _start_replay(self, sub: Subscription, pending: list[Message] | None = None) -> None:
        sub.live = False
        sub.buffer = pending or []
        sub.lost = False
        sub.task = asyncio.get_running_loop().create_task(self._replay(sub))

    async def _replay(self, sub: Subscription) -> None:
        try:
            await self._catch_up(sub)
        except asyncio.CancelledError:
            raise
        except RoomlogError as err:
            # The log failed (database down): tell the client and drop the
            # subscription; it re-subscribes with the same `since`.
            self._drop(sub, err)
        except Exception:
            logger.exception("replay of %s failed", sub.room)
            self._drop(sub, RoomlogError(ErrorCode.INTERNAL, "replay failed"))

    def _drop(self, sub: Subscription, err: RoomlogError) -> None:
        sub.send(error_frame(err, sub.ident) | {"room": sub.room})
        on_drop = sub.on_drop
        self.unsubscribe(sub)
        if on_drop is not None:
            on_drop()

    async def _catch_up(self, sub: Subscription) -> None:
        fmt = sub.outbox.format
        first: Page | None = None  # a page read already, for the loop below
        if not sub.epoch:  # first start: place the cursor and confirm the subscription
            if sub.since is not None:
                # A resume reads its first page at once: the page's info places the
                # cursor as a lookup would (one read, not two, per resuming client).
                first = await self._log.read(sub.room, sub.since.seq, self._page_size)
                info = first.info
            else:
                # A room this hub follows live knows its head: a connect storm into
                # busy rooms reads nothing (issue #13). If a commit is still on its
                # way, the merge below sees the gap and reads the log, as it would
                # for one committed between a log read and the subscription.
                room = self._rooms.get(sub.room)
                known = room.known if room is not None else None
                info = (RoomInfo(sub.room, known[0], known[1], 0) if known is not None
                        else await self._log.info(sub.room))
                # From now on: the log is read up to this head, so the first page is
                # empty unless the cursor moves below (what arrived live is merged).
                first = Page(info, info.head, [])
            sub.epoch, sub.cursor = info.epoch, info.head
            reason = stale(sub.since, info)
            if sub.since is not None and reason is None:
                sub.cursor = sub.since.seq
            elif sub.buffer and sub.buffer[0].epoch == info.epoch:
                # Delivered after the subscription began, though committed before the
                # head we read: it belongs to this subscription ("from now on").
                sub.cursor = min(sub.cursor, sub.buffer[0].seq - 1)
            state = None
            if sub.since is None and self._view is not None:
                view = await self._view(sub.room, sub.viewer)
                if view is not None:  # a domain room: its state, and go on from there
                    sub.cursor, sub.epoch, state = view
            # Access is asked again now that the position is placed: a removal before
            # this answer ends the subscription here, one after it is an event past
            # the position, which the gates see. (The caller's own check came before
            # the position was known: a removal between the two slipped through.)
            if self._admits is not None and not await self._admits(sub.room, sub.viewer):
                self._revoke(sub)
                return
            frame = {"type": "subscribed", "room": sub.room, "epoch": sub.epoch,
                     "head": max(info.head, sub.cursor), "replayed": info.head - sub.cursor}
            if state is not None:
                frame |= {"seq": sub.cursor, "state": state, "replayed": 0}
            sub.send(frame if sub.ident is None else frame | {"id": sub.ident})
            if reason is not None:
                await self._send_reset(sub, info, reason)
            if first is not None and (first.after != sub.cursor or first.info.epoch != sub.epoch):
                first = None  # the cursor moved (a reset, a domain state, the buffer)
        while True:
            await sub.outbox.drained()  # replay at the client's pace, never past the bound
            if sub.outbox.closed:
                return
            if first is not None:
                page, first = first, None
            else:
                page = await self._log.read(sub.room, sub.cursor, self._page_size)
            if not self._still_reads(sub, page.messages):
                return
            if page.info.epoch != sub.epoch:
                await self._send_reset(sub, page.info, "epoch")
                continue
            if page.trimmed:
                await self._send_reset(sub, page.info, "trimmed")
                continue
            if page.messages and not await self._feed(sub, page.messages):
                return
            if len(page.messages) == self._page_size:
                continue
            # The log is read up to its head as of this read: merge what arrived live.
            if sub.lost:
                sub.lost, sub.buffer = False, []
                continue
            fresh = [m for m in sub.buffer if m.seq > sub.cursor and m.epoch == sub.epoch]
            if fresh and fresh[0].seq != sub.cursor + 1:
                continue  # committed between our read and the buffer: read again
            if fresh:
                frames = [wire(m, fmt, sub.lens) for m in fresh]
                size = sum(map(len, frames))
                if not sub.outbox.fits(len(frames), size):
                    continue  # more arrived meanwhile than the outbox holds: page them
                sub.outbox.extend(frames, size)
                sub.cursor = fresh[-1].seq
            sub.buffer, sub.live, sub.task = [], True, None
            room = self._rooms.get(sub.room)
            if room is not None and (room.known is None or room.known[0] != sub.epoch
                                     or room.known[1] < sub.cursor):
                room.known = (sub.epoch, sub.cursor)
            if self._on_live is not None:
                self._on_live(sub.room)
            return

    async def _feed(self, sub: Subscription, messages: list[Message]) -> bool:
        """Hand replayed messages to the outbox without ever passing its bound:
        an outbox-full at a time, each once the client has taken the last.
        False if the outbox closed meanwhile."""
        fmt = sub.outbox.format
        start = 0
        while start < len(messages):
            await sub.outbox.drained()
            if sub.outbox.closed:
                return False
            end, size = start, 0
            while end < len(messages):
                n = len(wire(messages[end], fmt, sub.lens))
                if end > start and not sub.outbox.fits(end - start + 1, size + n):
                    break
                end, size = end + 1, size + n
            sub.outbox.extend([wire(m, fmt, sub.lens) for m in messages[start:end]], size)
            sub.cursor = messages[end - 1].seq
            start = end
        return True

    async def reset_frame(self, room: str, info: RoomInfo, reason: str,
                          viewer: Principal | None) -> dict[str, Any]:
        """The ``reset`` every transport sends: the new position is the head, or for a
        domain room the seq of the state (as ``viewer`` may see it) the frame carries."""
        frame: dict[str, Any] = {"type": "reset", "room": room, "reason": reason,
                                 "epoch": info.epoch, "seq": info.head, "trimmed": info.trimmed}
        if self._view is not None:
            view = await self._view(room, viewer)
            if view is not None:
                seq, epoch, state = view
                frame |= {"seq": seq, "epoch": epoch, "state": state}
        return frame

    async def _send_reset(self, sub: Subscription, info: RoomInfo, reason: str) -> None:
        """Tell the client its position is void and continue from the reset's seq."""
        frame = await self.reset_frame(sub.room, info, reason, sub.viewer)
        sub.epoch, sub.cursor = frame["epoch"], frame["seq"]
        sub.send(frame)
        sub.buffer = [m for m in sub.buffer if m.epoch == sub.epoch]

    # -- fan-out -----------------------------------------------------------------

    def deliver(self, name: str, messages: list[Message]) -> None:
        """Hand committed messages (one room, ascending seq) to local subscribers."""
        room = self._rooms.get(name)
        if room is None or not messages:
            return
        first, last = messages[0], messages[-1]
        encoded: dict[tuple[Format, str | None], tuple[list[bytes], int, Callable[[], bytes]]] = {}
        copies = 0
        gate = None if self._gates is None else self._gates(name, messages)
        for sub in list(room.subs):
            if gate is not None and not gate(sub.viewer):
                self._revoke(sub)
                continue
            if not sub.live:
                sub.buffer.extend(messages)
                if len(sub.buffer) > self._live_buffer:
                    sub.buffer, sub.lost = [], True
                continue
            if last.seq <= sub.cursor and last.epoch == sub.epoch:
                continue  # already have them (e.g. read by the replay)
            if first.epoch != sub.epoch or first.seq > sub.cursor + 1:
                self._start_replay(sub, list(messages))  # a gap or a new epoch: resync
                continue
            fmt, lens = sub.outbox.format, sub.lens
            key = (fmt, None if lens is None else lens[0])
            run = encoded.get(key)
            if run is None:  # encode once per format and audience, not per subscriber
                frames = [wire(m, fmt, lens) for m in messages]
                run = encoded[key] = (frames, sum(map(len, frames)), _payload(fmt, frames))
            skip = sub.cursor + 1 - first.seq
            if skip:
                sub.outbox.extend(run[0][skip:])
            elif self._write_at_once:  # most often written now, one payload for all
                sub.outbox.offer(*run)
            else:
                sub.outbox.extend(run[0], run[1])
            copies += len(messages) - skip
            sub.cursor = last.seq
        if copies:  # handed to a live subscriber: new subscriptions start after it
            room.known = (last.epoch, last.seq)
        self.delivered += copies
        for event in room.watchers:
            event.set()

    def _still_reads(self, sub: Subscription, messages: list[Message]) -> bool:
        gate = None if self._gates is None else self._gates(sub.room, messages)
        if gate is None or gate(sub.viewer):
            return True
        self._revoke(sub)
        return False

    def _revoke(self, sub: Subscription) -> None:
        """The reader lost access (a technician unassigned): end the subscription
        before anything it may no longer read goes out."""
        self._drop(sub, RoomlogError(ErrorCode.FORBIDDEN,
                                      f"you may no longer read {sub.room}"))

    def reset(self, name: str) -> None:
        """The room's log was recreated (new epoch): reset every subscriber."""
        room = self._rooms.get(name)
        if room is None:
            return
        room.known = None
        for sub in list(room.subs):
            if sub.live:  # the replay finds the new epoch and resets the subscriber
                self._start_replay(sub)
        for event in room.watchers:
            event.set()

    def wake_watchers(self) -> None:
        """Every long-poll answers now (drain)."""
        for room in self._rooms.values():
            for event in room.watchers:
                event.set()

    @asynccontextmanager
    async def watch(self, name: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever the room gets messages: for long-polling.

        Enter it *before* reading the log, so nothing committed between the
        read and the wait can be missed.
        """
        event = asyncio.Event()
        self._room(name).watchers.add(event)
        try:
            yield event
        finally:
            room = self._rooms.get(name)
            if room is not None:
                room.watchers.discard(event)
                self._maybe_forget(name)


def _payload(fmt: Format, frames: list[bytes]) -> Callable[[], bytes]:
    """The wire payload of a run of frames, built at its first use, then shared."""
    joined: list[bytes] = []

    def payload() -> bytes:
        if not joined:
            joined.append(frames[0] if len(frames) == 1 else batch(fmt, frames))
        return joined[0]
    return payload


def stale(since: Since | None, info: RoomInfo) -> str | None:
    """Why a client's position cannot be replayed, or None if it can."""
    if since is None:
        return None
    if (since.epoch is not None and since.epoch != info.epoch) or since.seq > info.head:
        return "epoch"
    if since.seq < info.trimmed:
        return "trimmed"
    return None
