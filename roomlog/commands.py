"""Commands of domain rooms, decided under the room's lock (DESIGN.md section 3).

:class:`CommandRunner` is the work a :meth:`Log.transact` runs for a batch of
commands to one room:

1. bring the room's state up to the locked head: the cached state if its seq
   is the head, else the cache (or the latest snapshot, or the initial state)
   plus the events after it;
2. per command: a remembered id returns its first result; ``expected_seq``
   that no longer holds is a CONFLICT; otherwise ``domain.decide`` gives events
   (or a coded error, which stores nothing) and ``domain.apply`` folds each
   into the state, yielding notices for ``user:{id}`` rooms;
3. remember each result with its id, and save a snapshot every
   ``snapshot_every`` events.

If the transaction fails, the cached state (mutated in step 2) is dropped, so
the next command rebuilds it from the log; so is a state whose catch-up failed
half way. States of at most ``cache_size`` rooms per kind are kept, the least
recently used going first (it is rebuilt from its snapshot when needed again).

A notice whose target is not a room anyone can read (``user:{id}`` of a user id
that is no valid room id, such as one longer than 128 characters) is not stored.

A command with a command hook (``roomlog.hooks``) arrives with the backend's
verdict: a deny (``Call.denied``) is its outcome, remembered like a result, and
``decide`` is not asked; an allow is ``command.approval``, which ``decide`` sees
and whose data the command's events carry as ``hook``, stored with the result.
So a retry of a hooked command returns its first outcome, deny included. A
room's own refusal is not remembered, hooked or not (the client may retry it),
unless the decision stores events with it (``Decision.error``: a verified
payment whose request the room refused gets its refund record), and then the
refusal is the remembered outcome. A decision's ``claims`` are keys used once
ever (``RoomTxn.claim``): one taken already fails the command with the claim's
error and stores nothing of it. The claims of a batch are written in one
statement once every command of it was decided (a statement per paid submit kept
the room locked for a round trip to the database each); if one was taken
meanwhile (by another room or instance), the transaction is dropped and the batch
decided again, claiming as each command is decided, so each gets its own answer.
Events of a command a service ran for a user (``on_behalf_of``) carry ``via``,
the service's user id; the user is their author and the rules apply to them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.hooks.contract import Allow, Deny, recall_error, refusal_record, verdict_record
from roomlog.identity import Principal, Role
from roomlog.log import Log, Prior, RoomTxn
from roomlog.lru import Lru
from roomlog.protocol import CommandFrame, Message
from roomlog.rooms import parse_room
from roomlog.rooms.domain import Command, Decision, Domain, Event, Meta

__all__ = ["Call", "CommandRunner", "Outcome", "call_of", "recall", "retained_events"]

T = TypeVar("T")

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Call:
    """One command as a client sent it.

    ``who`` is whom it acts as: the rules apply to them and they author its
    events. ``sender``, when set, is the service that ran it for ``who``
    (``on_behalf_of``); ids are the sender's, so ``key`` names the sender.
    ``denied`` is a command hook's deny: the command's outcome, decided already.
    """

    who: Principal
    command: Command
    id: str
    expected_seq: int | None = None
    sender: Principal | None = None
    denied: Deny | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(user, client id) under which its outcome is remembered."""
        return (self.sender or self.who).user, self.id


def call_of(who: Principal, frame: CommandFrame) -> Call:
    """The call a command frame makes; FORBIDDEN when someone other than a
    ``service`` asks to act ``on_behalf_of`` a user."""
    command = Command(frame.name, frame.args)
    if frame.on_behalf_of is None:
        return Call(who, command, frame.id, frame.expected_seq)
    if who.role is not Role.SERVICE:
        raise RoomlogError(ErrorCode.FORBIDDEN,
                            "only a service may run a command on behalf of a user")
    return Call(frame.on_behalf_of, command, frame.id, frame.expected_seq, sender=who)


def recall(prior: Prior, epoch: str) -> Outcome | RoomlogError:
    """A remembered outcome: the first result (now a duplicate), or the deny."""
    first = orjson.loads(prior.result or b'{"seqs": [], "result": {}}')
    error = recall_error(first)
    if error is not None:
        return error
    return Outcome(first["seqs"], epoch, first["result"], True)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did: its events' seqs and the domain's result."""

    seqs: list[int]
    epoch: str
    result: dict[str, Any]
    duplicate: bool = False

    def frame(self, room: str, ident: str) -> dict[str, Any]:
        return {"type": "ack", "id": ident, "room": room, "epoch": self.epoch,
                "seq": self.seqs[-1] if self.seqs else None, "seqs": self.seqs,
                "result": self.result, "duplicate": self.duplicate}


class _ClaimsTaken(Exception):
    """A key the batch claimed after deciding was taken: decide it again, claim by claim."""


class _Claims:
    """The claims of one transaction's commands. ``deferred``: written in one statement
    by ``settle``, after every command was decided (which raises _ClaimsTaken if any
    was taken); else each command's at once, as the command is decided."""

    def __init__(self, txn: RoomTxn, *, deferred: bool) -> None:
        self._txn = txn
        self._deferred = deferred
        self._pending: dict[str, str] = {}  # key -> actor

    async def take(self, keys: Sequence[str], actor: str) -> set[str]:
        """The keys taken already (by this transaction too); unless one is, all of them
        are claimed for ``actor`` (now, or at ``settle``)."""
        if not self._deferred:
            return await self._txn.claim(dict.fromkeys(keys, actor))
        taken = {key for key in keys if key in self._pending}
        if not taken:
            self._pending.update(dict.fromkeys(keys, actor))
        return taken

    async def settle(self) -> None:
        if self._pending and await self._txn.claim(self._pending):
            raise _ClaimsTaken


@dataclass
class _Cached:
    epoch: str
    seq: int
    state: Any
    snapshot_seq: int


class CommandRunner:
    """``across_rooms``: the publisher may commit commands to several rooms of this kind
    in one transaction (:meth:`commit_many`), for a kind whose every room writes to
    one shared room (repair tickets to the admins' feed), where one transaction per
    room would queue them all on that room's lock."""

    def __init__(self, domain: Domain[Any], *, snapshot_every: int = 100,
                 cache_size: int = 1000, across_rooms: bool = False) -> None:
        self.domain = domain
        self.across_rooms = across_rooms
        self._snapshot_every = snapshot_every
        self._cache: Lru[str, _Cached] = Lru(cache_size)

    @property
    def cached(self) -> int:
        """Rooms whose state is held in memory (at most ``cache_size``)."""
        return len(self._cache)

    def forget(self, room: str) -> None:
        """Drop the cached state (after a failed transaction or a room reset)."""
        self._cache.pop(room)

    async def state(self, txn: RoomTxn) -> _Cached:
        """The room's state at the locked head."""
        cached = self._cache.get(txn.room)
        if cached is None or cached.epoch != txn.epoch or cached.seq > txn.head:
            cached = await self._load(txn)
        if cached.seq < txn.head:  # other instances (or a restart) moved the room on
            events = await txn.events(cached.seq)
            if not events or events[0].seq != cached.seq + 1:
                # Retention trimmed past the cached seq (another instance moved the room
                # far on): folding the kept tail would skip events. The snapshot is never
                # behind the trim, so rebuild from it.
                cached = await self._load(txn)
                events = await txn.events(cached.seq)
            self._fold(txn.room, cached, events)
        return cached

    def _fold(self, room: str, cached: _Cached, events: list[Message]) -> None:
        try:
            for message in events:
                self.domain.apply(cached.state, Event.from_data(message.data),
                                  Meta(message.by, message.seq, message.ts))
                cached.seq = message.seq
        except Exception:  # half folded: never trust it again
            self.forget(room)
            raise

    async def _load(self, txn: RoomTxn) -> _Cached:
        """The latest snapshot, or the initial state; cached for the room, unless the
        room has no events (reads of rooms nobody wrote must not push out real ones)."""
        snapshot = await txn.snapshot()
        if snapshot is None:
            room_id = txn.room.split(":", 1)[1]
            cached = _Cached(txn.epoch, 0, self.domain.initial(room_id), 0)
            if txn.head == 0:
                return cached
        else:
            state = self.domain.load(orjson.loads(snapshot.state))
            cached = _Cached(txn.epoch, snapshot.seq, state, snapshot.seq)
        self._cache.put(txn.room, cached)
        return cached

    async def commit(self, log: Log, room: str, now_ms: int, calls: list[Call]
                     ) -> tuple[list[Outcome | RoomlogError], dict[str, list[Message]]]:
        """Decide ``calls`` in order in one transaction of ``room`` and commit: an
        outcome (or the coded error that rejected it) per call, and the stored
        messages per room. If anything fails, nothing is stored and the cached
        state, changed by decisions that did not commit, is dropped."""
        try:
            return await self._commit(log, room, now_ms, calls, deferred=True)
        except _ClaimsTaken:  # rare: another room or instance took a key meanwhile
            logger.info("a claim of a batch in %s was taken; deciding it again", room)
            return await self._commit(log, room, now_ms, calls, deferred=False)

    async def _commit(self, log: Log, room: str, now_ms: int, calls: list[Call], *,
                      deferred: bool
                      ) -> tuple[list[Outcome | RoomlogError], dict[str, list[Message]]]:
        async def work(txn: RoomTxn) -> list[Outcome | RoomlogError]:
            try:  # in the transaction's own task: also when our caller is gone
                return await self._run(txn, calls, _Claims(txn, deferred=deferred))
            except BaseException:
                self.forget(room)
                raise

        try:
            return await log.transact(room, now_ms, work)
        except BaseException:
            self.forget(room)
            raise

    async def commit_many(self, log: Log, now_ms: int, batch: dict[str, list[Call]]
                          ) -> tuple[dict[str, list[Outcome | RoomlogError]],
                                     dict[str, list[Message]]]:
        """``commit`` of the calls of several rooms (each room's in order) in one
        transaction; if anything fails, nothing is stored and every room's cached
        state is dropped."""
        async def work(txns: Sequence[RoomTxn]) -> dict[str, list[Outcome | RoomlogError]]:
            try:
                return {txn.room: await self._run(txn, batch[txn.room],
                                                  _Claims(txn, deferred=False))
                        for txn in txns}
            except BaseException:
                for room in batch:
                    self.forget(room)
                raise

        try:
            return await log.transact_many(
                list(batch), now_ms, work,
                prior={room: [c.key for c in calls] for room, calls in batch.items()})
        except BaseException:
            for room in batch:
                self.forget(room)
            raise

    async def _run(self, txn: RoomTxn, calls: list[Call], claims: _Claims
                   ) -> list[Outcome | RoomlogError]:
        cached = await self.state(txn)
        known = await txn.prior(c.key for c in calls)
        outcomes: list[Outcome | RoomlogError] = []
        for call in calls:
            prior = known.get(call.key)
            if prior is not None:
                outcomes.append(recall(prior, txn.epoch))
                continue
            if call.denied is not None:
                outcome: Outcome | RoomlogError = call.denied.error()
                body: bytes | None = refusal_record(call.denied)
            else:
                outcome, body = await self._decide(txn, cached, call, claims)
            outcomes.append(outcome)
            if body is not None:
                txn.remember(call.key[0], call.id, txn.head, body)
                known[call.key] = Prior(txn.head, txn.now_ms, body)
        await claims.settle()
        if txn.head - cached.snapshot_seq >= self._snapshot_every or (
                cached.snapshot_seq == 0 and txn.head > 0):
            txn.save_snapshot(txn.head, orjson.dumps(self.domain.dump(cached.state)))
            cached.snapshot_seq = txn.head
        if txn.head > 0 and self._cache.get(txn.room) is not cached:
            self._cache.put(txn.room, cached)  # the room's first events: from now on, cache it
        return outcomes

    def judge(self, txn: RoomTxn, state: Any, call: Call) -> Decision | RoomlogError:
        """The domain's decision on ``call`` at the locked head, or its refusal
        (a stale ``expected_seq`` is CONFLICT; a bug in ``decide`` is INTERNAL)."""
        if call.expected_seq is not None and call.expected_seq != txn.head:
            return RoomlogError(ErrorCode.CONFLICT,
                                 f"the room is at seq {txn.head}, not {call.expected_seq}")
        try:
            return self.domain.decide(state, call.command, call.who, txn.now_ms)
        except RoomlogError as err:
            return err
        except Exception:  # a bug in decide: this command fails, the batch goes on
            logger.exception("deciding %s in %s failed", call.command.name, txn.room)
            return RoomlogError(ErrorCode.INTERNAL, "the command failed; this is a bug")

    async def _decide(self, txn: RoomTxn, cached: _Cached, call: Call, claims: _Claims
                      ) -> tuple[Outcome | RoomlogError, bytes | None]:
        """The call's outcome and what is remembered of it (None: nothing)."""
        decision = self.judge(txn, cached.state, call)
        if isinstance(decision, RoomlogError):
            return decision, None
        if decision.claims:
            taken = await claims.take([c.key for c in decision.claims], call.who.user)
            for claim in decision.claims:
                if claim.key in taken:
                    return claim.taken, None
        seqs = []
        for decided in decision.events:
            event = _stamped(decided, call)
            message = txn.append(call.who.user, orjson.dumps(event.to_data()))
            meta = Meta(call.who.user, message.seq, txn.now_ms)
            for notice in self.domain.apply(cached.state, event, meta):
                if _readable(notice.target):
                    txn.notify(notice.target, call.who.user, orjson.dumps(notice.data))
            cached.seq = message.seq
            seqs.append(message.seq)
        if decision.error is not None:  # refused, with events: remembered as refused
            return decision.error, _refused_record(call, decision.error, seqs)
        outcome = Outcome(seqs, txn.epoch, decision.result)
        return outcome, _record(call, outcome)

    async def read(self, log: Log, room: str, look: Callable[[Any], T]) -> T:
        """``look`` at the room's current state (under its lock, briefly)."""
        return await self._look(log, room, lambda cached: look(cached.state))

    async def _look(self, log: Log, room: str, look: Callable[[_Cached], T]) -> T:
        """A look changes nothing but the cached state's catch-up, which holds whether
        or not its caller is still there (``state`` drops a state it folded half)."""
        async def work(txn: RoomTxn) -> T:
            return look(await self.state(txn))

        value, _ = await log.transact(room, 0, work)
        return value

    async def can_read(self, log: Log, room: str, who: Principal) -> bool:
        """Whether ``who`` may read the room now (its state decides; private domains)."""
        return await self.read(log, room, lambda state: self.domain.can_read(state, who))

    async def view(self, log: Log, room: str, who: Principal) -> tuple[int, str, dict[str, Any]]:
        """(seq, epoch, the state as ``who`` may see it) at the room's head."""
        return await self._look(log, room, lambda cached: (
            cached.seq, cached.epoch, self.domain.view(cached.state, who)))


def _readable(room: str) -> bool:
    """Whether anyone could ever read ``room`` (its name is valid)."""
    try:
        parse_room(room)
    except RoomlogError:
        logger.debug("notice to %r not stored: no valid room name", room[:80])
        return False
    return True


def _stamped(event: Event, call: Call) -> Event:
    """The event as stored: with a hook's data (``hook``) and the service that ran
    it for its user (``via``). The fold sees the same, so replay rebuilds it."""
    approval = call.command.approval
    extra: dict[str, Any] = {}
    if approval is not None and approval.data:
        extra["hook"] = approval.data
    if call.sender is not None:
        extra["via"] = call.sender.user
    return Event(event.type, {**event.data, **extra}) if extra else event


def _refused_record(call: Call, error: RoomlogError, seqs: list[int]) -> bytes:
    """A refusal the room stored events for (e.g. a verified payment's refund):
    remembered, so a retry returns it and changes nothing."""
    body: dict[str, Any] = {"code": error.code.value, "message": error.message}
    if error.details:
        body["details"] = error.details
    stored: dict[str, Any] = {"error": body, "seqs": seqs}
    approval = call.command.approval
    if approval is not None:
        stored["verdict"] = verdict_record(Allow(approval.data, approval.failed_open))
    return orjson.dumps(stored)


def _record(call: Call, outcome: Outcome | RoomlogError) -> bytes | None:
    """What is remembered of a decided call: its result, with the hook's verdict
    when one was asked; None for the room's own refusal (not remembered)."""
    if not isinstance(outcome, Outcome):
        return None
    stored: dict[str, Any] = {"seqs": outcome.seqs, "result": outcome.result}
    approval = call.command.approval
    if approval is not None:
        stored["verdict"] = verdict_record(Allow(approval.data, approval.failed_open))
    return orjson.dumps(stored)


async def retained_events(log: Log, room: str, page_size: int) -> list[tuple[Event, Meta]]:
    """Every retained event of a domain room (or feed), read page by page: what the
    reports (analytics, repair statistics, money) are computed from."""
    entries: list[tuple[Event, Meta]] = []
    after = 0
    while True:
        page = await log.read(room, after, page_size)
        if not page.messages:
            return entries
        entries += [(Event.from_data(m.data), Meta(m.by, m.seq, m.ts)) for m in page.messages]
        after = page.messages[-1].seq
