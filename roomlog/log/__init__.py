"""The Log port: one append-only, sequenced log per room.

Contract every adapter keeps (``tests/log/test_contract.py`` checks it against
each adapter):

* ``append`` stores a batch in **one transaction**, under a per-room lock, and
  gives the new messages ``head + 1, head + 2, ...``: seqs are gapless and
  assigned in the transaction that stores them, also when several processes
  append to one room at once.
* An item whose ``(room, actor, id)`` was appended before (within the
  idempotency TTL) stores nothing and gets the first result back, marked
  ``duplicate``. If that id was remembered with a result instead (a command
  hook denied the publish: ``roomlog.hooks``), the result comes back as
  ``refusal``.
* ``append`` returns only after the commit: nothing it returns can be lost.
* ``read`` returns committed messages after a seq, in order, contiguous. If the
  wanted range is gone (trimmed) or the caller's epoch is not the room's,
  the page says so (``Page.trimmed``) instead of returning a partial replay.
* A room's ``epoch`` names its log. ``reset`` drops the log and starts a new
  epoch at seq 0, so seqs from the old log are never trusted against the new.
* Reading stores nothing. A room never written reads as an empty log (head 0)
  under the epoch its first write will give it, so its readers see no new epoch
  when that write comes; a recreated database never gives out an epoch again.
* ``transact`` runs a piece of work under the room's lock in one transaction:
  the work sees the head, prior results of client ids, the events after a seq
  and the latest state snapshot, and buffers appends (to this room and, for
  notices, to other rooms), results and a snapshot, all written at commit.
  Other rooms are locked in name order after the room itself, so two
  transactions never wait on each other in a cycle. ``append`` is one such work.
* ``RoomTxn.claim`` makes a key usable once ever (a payment reference funds one
  request): of two transactions claiming one key, in any rooms, exactly one
  commits it; the other sees it taken.
* ``transact_many`` is ``transact`` over several rooms at once, in one
  transaction: each room gets its own ``RoomTxn``, the rooms are locked before
  any other room their notices go to, and notices of all of them to one other
  room are appended (in the order they were buffered) under one lock of it. It
  is what lets rooms that all write to one shared room (every repair ticket to
  the admins' feed) commit together instead of queueing on that room's lock.
  The rooms given must not be the target of each other's notices.
* Messages covered by no snapshot are never trimmed from a room that has
  snapshots, so its state can always be rebuilt.
* Failures of the database raise :class:`~roomlog.errors.Unavailable` (retry the
  same write later); a write the database refuses for what it holds raises
  :class:`~roomlog.errors.Refused` (it stored nothing; retrying it cannot help).
* A caller's cancellation ends its wait, never the operation: a transaction
  that began runs to its commit or rollback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from roomlog.protocol import Message

__all__ = ["Append", "Appended", "Log", "Page", "Placed", "Prior", "RoomInfo", "RoomTxn",
           "Snapshot", "append_in", "place"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Append:
    """A message to store. ``raw`` is the data as JSON text."""

    actor: str
    raw: bytes
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Appended:
    seq: int
    epoch: str
    ts: int
    duplicate: bool = False
    refusal: bytes | None = None  # the id's remembered result: it was refused, not stored


@dataclass(frozen=True, slots=True)
class RoomInfo:
    room: str
    epoch: str
    head: int  # seq of the last message; 0 for an empty log
    trimmed: int  # every seq <= trimmed is gone; the oldest kept is trimmed + 1


@dataclass(frozen=True, slots=True)
class Page:
    info: RoomInfo
    after: int  # the seq the page was asked to start after
    messages: list[Message]

    @property
    def trimmed(self) -> bool:
        """True when the range after ``after`` is (partly) gone: never replay it."""
        if self.after < self.info.trimmed:
            return True
        return bool(self.messages) and self.messages[0].seq != self.after + 1


@dataclass(frozen=True, slots=True)
class Prior:
    """The remembered first result of a client id."""

    seq: int
    ts: int
    result: bytes | None  # JSON of a command's result; None for a plain publish


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int  # the state after every event up to and including this seq
    state: bytes  # JSON


class RoomTxn(Protocol):
    """One transaction holding the room's lock (see ``Log.transact``)."""

    room: str
    epoch: str
    now_ms: int

    @property
    def head(self) -> int:
        """The room's last seq, advancing with every buffered append."""

    async def prior(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Prior]:
        """Remembered results of these (actor, client id) pairs."""

    async def events(self, after: int) -> list[Message]:
        """Every stored message of the room after ``after`` (up to the head)."""

    async def snapshot(self) -> Snapshot | None: ...

    def append(self, actor: str, raw: bytes) -> Message:
        """Buffer a message; its seq is ``head + 1``."""

    def remember(self, actor: str, client_id: str, seq: int, result: bytes | None) -> None: ...

    def notify(self, room: str, actor: str, raw: bytes) -> None:
        """Buffer a message for another room (locked and appended at commit)."""

    def save_snapshot(self, seq: int, state: bytes) -> None: ...

    async def claim(self, keys: Mapping[str, str]) -> set[str]:
        """Record ``keys`` (each with the actor that uses it) as used by this room,
        once ever across every room and instance (a unique row per key, written
        now, in this transaction, in key order: two transactions claiming some of
        the same keys wait on each other in one order, never in a cycle): return
        the keys that were taken already (by a committed transaction, by one that
        commits while this one waits on it, or earlier in this one). Taken keys
        are not recorded again; the others are, and roll back with the
        transaction. One statement for any number of keys."""


class Log(Protocol):
    """Port of the sequenced, durable message log (see the module docstring)."""

    async def open(self) -> None:
        """Connect; raise SystemExit with advice if the schema is not migrated."""

    async def close(self) -> None: ...

    async def append(
        self, room: str, items: Sequence[Append], *, now_ms: int
    ) -> tuple[list[Appended], list[Message]]:
        """Store ``items`` in one transaction; return a result per item and the
        newly stored messages (duplicates excluded), in seq order."""

    async def append_many(
        self, batches: Mapping[str, Sequence[Append]], *, now_ms: int
    ) -> tuple[dict[str, list[Appended]], dict[str, list[Message]]]:
        """``append`` of several rooms' items (room -> items) at once: results per room,
        and the newly stored messages of each room that got any. Each room's items
        are stored together, in order; rooms may be committed apart."""

    async def transact(
        self, room: str, now_ms: int, work: Callable[[RoomTxn], Awaitable[T]]
    ) -> tuple[T, dict[str, list[Message]]]:
        """Run ``work`` under the room's lock, then write what it buffered and
        commit. Returns its value and the stored messages per room. If ``work``
        raises, nothing is written; if it buffers nothing, nothing is stored (a
        look at a room never written does not create it)."""

    async def transact_many(
        self, names: Sequence[str], now_ms: int,
        work: Callable[[Sequence[RoomTxn]], Awaitable[T]],
        prior: Mapping[str, Iterable[tuple[str, str]]] | None = None,
    ) -> tuple[T, dict[str, list[Message]]]:
        """``transact`` over the rooms ``names`` in one transaction: ``work`` gets a
        RoomTxn per room (in the order given, duplicates once); all or nothing.
        ``prior``: the (actor, client id) keys each room's work will ask ``prior``
        about, looked up for every room at once before ``work`` runs."""

    async def read(self, room: str, after: int, limit: int) -> Page:
        """Messages with seq > ``after``, at most ``limit``; stores nothing."""

    async def info(self, room: str) -> RoomInfo:
        """The room's epoch, head and trim point; stores nothing."""

    async def heads(self, names: Sequence[str]) -> dict[str, RoomInfo]:
        """Epoch, head and trim point of each room that exists (one query; creates
        nothing): what a bus that may have lost messages is checked against."""

    async def reset(self, room: str) -> RoomInfo:
        """Drop the room's messages and start a new epoch."""

    async def trim_before(self, cutoff_ms: int) -> int:
        """Drop messages older than ``cutoff_ms``; return how many went."""

    async def expire_ids(self, cutoff_ms: int) -> int:
        """Forget client ids recorded before ``cutoff_ms``; return how many."""

    async def check(self) -> None:
        """Commit a write transaction through the writer every write takes; raise
        Unavailable if it fails (readiness: the caller bounds the wait)."""


# What appends at once placed (``pg_append``, ``sqlite_append``), per room row id: the
# room's epoch, a result per item, the items stored with their seqs.
Placed = dict[int, tuple[str, list[Appended], list[tuple[Append, int]]]]


def place(items: Sequence[Append], known: Mapping[tuple[str, str], Prior], head: int,
          epoch: str, now_ms: int) -> tuple[list[Appended], list[tuple[Append, int]]]:
    """``append``'s decisions, free of I/O: a result per item, and the items to store
    with their seqs (after ``head``, in order). An item whose (actor, id) is ``known``
    (remembered before) or came earlier in ``items`` is not stored: its result is the
    first one, ``duplicate``."""
    seen = dict(known)
    results: list[Appended] = []
    new: list[tuple[Append, int]] = []
    for item in items:
        prior = seen.get((item.actor, item.id)) if item.id is not None else None
        if prior is not None:
            results.append(Appended(prior.seq, epoch, prior.ts, duplicate=True,
                                    refusal=prior.result))
            continue
        head += 1
        new.append((item, head))
        results.append(Appended(head, epoch, now_ms))
        if item.id is not None:
            seen[(item.actor, item.id)] = Prior(head, now_ms, None)
    return results, new


async def append_in(txn: RoomTxn, items: Sequence[Append]) -> list[Appended]:
    """``append``'s work in one room's transaction: each item stored after the head,
    unless its (actor, id) was seen before (then its first result, ``duplicate``).
    Shared by every adapter's ``append`` and by commits of several plain rooms in one
    transaction (``transact_many``)."""
    known = await txn.prior((i.actor, i.id) for i in items if i.id is not None)
    results, new = place(items, known, txn.head, txn.epoch, txn.now_ms)
    for item, seq in new:
        txn.append(item.actor, item.raw)
        if item.id is not None:
            txn.remember(item.actor, item.id, seq, None)
    return results
