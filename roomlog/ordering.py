"""Per-room reorder buffer: committed messages from any source, released in seq
order, each once. Pure: no I/O, no clock; ``roomlog.cluster`` drives it.

Messages of one room reach an instance from its own commits and from the bus,
and two instances committing close together can arrive in either order. A
:class:`RoomOrder` knows the last seq it released (``head``) in the room's
``epoch``. It holds early arrivals until the gap before them closes and drops
what it already released. A gap that stays open is filled from the log by the
caller (``missing`` says from where).

Before it knows a position (a room just gained interest), it releases what it
gets as it comes and takes the last seq as its head. Each subscriber still
checks its own cursor, so the worst an unknown position costs is a resync of
that subscriber from the log, never a lost or repeated message.
"""

from __future__ import annotations

from roomlog.protocol import Message

__all__ = ["RoomOrder"]


class RoomOrder:
    __slots__ = ("_held", "epoch", "head", "known")

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.head = 0  # the last seq released in `epoch`
        self.known = 0  # the highest seq known to exist (from arrivals or the log)
        self._held: dict[int, Message] = {}

    @property
    def missing(self) -> bool:
        """A seq after ``head`` is known to exist but has not arrived."""
        return self.epoch is not None and self.known > self.head

    @property
    def held(self) -> int:
        return len(self._held)

    def place(self, epoch: str, head: int) -> None:
        """Take a position from a subscriber that is live at ``head`` (when none yet)."""
        if self.epoch is None:
            self.epoch, self.head, self.known = epoch, head, max(self.known, head)

    def forget(self) -> None:
        """Back to no position (the log was reset): the next arrival places it."""
        self.epoch, self.head, self.known = None, 0, 0
        self._held.clear()

    def offer(self, messages: list[Message]) -> list[Message]:
        """Take a run of one room's messages (ascending seq); return those that are
        now releasable, in order. A new epoch is released as is and becomes the
        position (its subscribers resync from the log)."""
        if not messages:
            return []
        first, last = messages[0], messages[-1]
        if self.epoch is None or first.epoch != self.epoch:
            self.forget()
            self.epoch, self.head, self.known = last.epoch, last.seq, last.seq
            return messages
        self.known = max(self.known, last.seq)
        if last.seq <= self.head:
            return []  # every one already released
        if first.seq > self.head + 1:  # early: hold until the gap closes
            for m in messages:
                self._held[m.seq] = m
            return []
        out = messages[self.head + 1 - first.seq:] if first.seq <= self.head else messages
        self.head = out[-1].seq
        if self._held:
            out = list(out)
            self._release_held(out)
        return out

    def drop_held(self) -> None:
        """Let go of held arrivals (too many): the log has them for the fill."""
        self._held.clear()

    def expect(self, epoch: str, head: int) -> None:
        """The log's head is ``head``: anything after our head is missing."""
        if epoch == self.epoch:
            self.known = max(self.known, head)

    def _release_held(self, out: list[Message]) -> None:
        held = self._held
        for seq in [s for s in held if s <= self.head]:
            del held[seq]
        while (m := held.pop(self.head + 1, None)) is not None:
            out.append(m)
            self.head = m.seq
