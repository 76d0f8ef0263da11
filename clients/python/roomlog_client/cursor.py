"""A room's position and what to do with each frame of its log. No I/O.

:class:`RoomCursor` turns the room's ``subscribed``, ``message``, ``skip`` and
``reset`` frames, from any transport, into one :class:`Verdict` each:

* ``DELIVER``: the next message (seq = last + 1 in the same epoch): hand it over;
* ``MOVED``: a ``skip`` (a message this reader may not see) moved the position;
* ``DUPLICATE``: already had it (seq <= last): drop it;
* ``GAP``: something is missing before it (seq > last + 1, or another epoch without
  a ``reset``): read the log from the position over HTTP, then offer the frame again;
* ``RESET``: the position is void; hand over ``verdict.event`` (with ``backfill``:
  the messages still kept, ``trimmed + 1`` onwards, should be read next);
* ``IGNORED``: nothing to do (a stale ``reset``, a ``subscribed`` that changes nothing).

The position only moves forward within an epoch, one seq at a time, so whatever
the transports do (replays overlapping live messages, a long-poll page arriving
after the WebSocket caught up, a switch between them) each message is handed over
once and in order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from roomlog_client.events import Event, Message, Position, Reset

__all__ = ["RoomCursor", "Verdict", "VerdictKind"]


class VerdictKind(enum.Enum):
    DELIVER = "deliver"
    MOVED = "moved"
    DUPLICATE = "duplicate"
    GAP = "gap"
    RESET = "reset"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    event: Event | None = None
    backfill: bool = False  # after a RESET: read the messages still kept next

    @property
    def moved(self) -> bool:
        return self.kind in (VerdictKind.DELIVER, VerdictKind.MOVED, VerdictKind.RESET)


_DUPLICATE = Verdict(VerdictKind.DUPLICATE)
_GAP = Verdict(VerdictKind.GAP)
_IGNORED = Verdict(VerdictKind.IGNORED)
_MOVED = Verdict(VerdictKind.MOVED)


class RoomCursor:
    """The position of one room: ``None`` until the server placed it.

    ``backfill``: after a ``reset`` of a room without state, place the position at
    the reset's ``trimmed`` instead of its ``seq``, so the messages still kept are
    read (over HTTP) and handed over rather than skipped.
    """

    def __init__(self, room: str, position: Position | None = None, *,
                 backfill: bool = True) -> None:
        self.room = room
        self.position = position
        self.backfill = backfill

    def subscribed(self, frame: dict[str, Any]) -> Verdict:
        """A ``subscribed`` frame: places a position the client did not have yet
        (at the head, or at a domain room's ``seq`` with its ``state``)."""
        if self.position is not None:
            return _IGNORED  # resumed: the replay (or a reset) follows
        return self.start(frame["epoch"], int(frame.get("seq", frame["head"])),
                          frame.get("state"), has_state="state" in frame)

    def start(self, epoch: str, seq: int, state: Any = None, *,
              has_state: bool = False) -> Verdict:
        """Place the position of a fresh subscription: at ``seq``, with a domain
        room's ``state`` handed over as a ``Reset(reason="initial")``."""
        self.position = Position(epoch, seq)
        if not has_state:
            return _IGNORED
        return Verdict(VerdictKind.RESET, Reset(self.room, "initial", epoch, seq, 0, state))

    def accept(self, frame: dict[str, Any]) -> Verdict:
        """The verdict on one ``message``, ``skip`` or ``reset`` frame of this room;
        the position moves for DELIVER, MOVED and RESET."""
        kind = frame.get("type")
        if kind == "reset":
            return self._reset(frame)
        if kind not in ("message", "skip"):
            return _IGNORED
        epoch, seq = frame["epoch"], int(frame["seq"])
        pos = self.position
        if pos is not None:
            if epoch != pos.epoch:
                return _GAP  # another epoch without a reset: ask the log what happened
            if seq <= pos.seq:
                return _DUPLICATE
            if seq > pos.seq + 1:
                return _GAP
        self.position = Position(epoch, seq)
        if kind == "skip":
            return _MOVED
        return Verdict(VerdictKind.DELIVER, Message.from_frame(frame))

    def _reset(self, frame: dict[str, Any]) -> Verdict:
        epoch, seq = frame["epoch"], int(frame["seq"])
        trimmed = int(frame.get("trimmed", 0))
        reason = str(frame.get("reason", "epoch"))
        pos = self.position
        # The same reset twice (e.g. from a repair read and from the live stream), or a
        # trim the client is already past: nothing changes. A reset to a seq below the
        # position with reason "epoch" means the log never had that position: take it.
        if pos is not None and epoch == pos.epoch and (
                seq == pos.seq or (seq < pos.seq and reason != "epoch")):
            return _IGNORED
        has_state = "state" in frame
        event = Reset(self.room, reason, epoch, seq, trimmed, frame.get("state"))
        backfill = self.backfill and not has_state and trimmed < seq
        self.position = Position(epoch, trimmed if backfill else seq)
        return Verdict(VerdictKind.RESET, event, backfill)
