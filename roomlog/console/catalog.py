"""The Catalog port: which rooms exist, and a domain room's latest snapshot.

The SQL adapter is ``roomlog.log.catalog`` (the log's own tables). Reads only;
a room exists once it was first written (``Log`` stores nothing on reads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["MAX_SEARCH", "Catalog", "RoomRow", "SnapshotRow"]

MAX_SEARCH = 200  # rooms one search page holds at most


@dataclass(frozen=True, slots=True)
class RoomRow:
    room: str
    epoch: str
    head: int
    trimmed: int
    created_ms: int
    snapshot_seq: int | None  # domain rooms: the seq of their latest state snapshot


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    seq: int
    state: bytes  # JSON of the domain's dump


class Catalog(Protocol):
    async def search(self, text: str, kind: str | None, after: str | None,
                     limit: int) -> list[RoomRow]:
        """Rooms whose name contains ``text`` (any case), of ``kind`` if given, in
        name order after ``after``, at most ``limit``."""

    async def room(self, room: str) -> RoomRow | None:
        """One room, or None if it was never written."""

    async def snapshot(self, room: str) -> SnapshotRow | None:
        """The room's latest state snapshot (domain rooms), or None."""
