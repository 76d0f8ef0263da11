"""Writes on their way to the publisher: through their command hook, if they have one.

A command (or a plain room's publish) with no hook goes straight to the
publisher. One with a hook takes three steps:

1. **probe**, a short transaction under the room's lock (shared by the probes that
   wait for the room at once: ``probes.py``): an outcome remembered
   for its id (an earlier try, on any instance) is returned at once, and the hook
   is not asked; otherwise the room's rules are checked (``decide`` with a
   pending approval: a command the room would refuse costs the backend nothing)
   and the domain's ``hook_view`` says what the backend is told of the state;
2. **ask** the backend, outside any lock (``Hooks.ask``): allow, deny, or
   UNAVAILABLE when it fails (unless the hook fails open);
3. **commit** through the publisher's group commit, with the verdict as input:
   under the lock the id is checked again (another instance may have committed
   it meanwhile: its outcome wins and this verdict is dropped), then a deny is
   remembered as the outcome, or ``decide`` runs with the approval.

A crash between 2 and 3 commits nothing: the retry asks the backend again with
the same ``hook`` id, which the backend must answer alike (docs/backends.md).
Within one instance, concurrent tries of one id wait for the first (one call).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from roomlog.backends import HookSpec
from roomlog.commands import Call, CommandRunner, Outcome, recall
from roomlog.errors import ErrorCode, RoomlogError, Unavailable
from roomlog.hooks.caller import Hooks
from roomlog.hooks.contract import (
    Deny,
    Verdict,
    hook_id,
    recall_error,
    refusal_record,
    request_body,
)
from roomlog.hooks.probes import Probes
from roomlog.identity import Principal
from roomlog.log import Append, Appended, Log, Prior, RoomTxn
from roomlog.publisher import Publisher
from roomlog.rooms.domain import Approval

__all__ = ["Gate"]

T = TypeVar("T", Outcome, Appended)

_PUBLISH = "publish"
_BUSY_RETRY = 0.5  # seconds a user with too many commands at the backend waits


@dataclass(frozen=True, slots=True)
class _Asking:
    """What a probe found when the hook must be asked."""

    epoch: str
    seq: int
    view: dict[str, Any]


class Gate:
    """The write entry of sessions and the HTTP API (see the module docstring)."""

    def __init__(self, log: Log, publisher: Publisher, hooks: Hooks, *,
                 clock_ms: Callable[[], int], max_per_user: int = 8) -> None:
        self._log = log
        self._publisher = publisher
        self.hooks = hooks
        self._clock_ms = clock_ms
        self._max_per_user = max_per_user
        self._running: dict[tuple[str, str, str], asyncio.Future[Any]] = {}
        self._probes = Probes(log, clock_ms)
        self._asking: dict[str, int] = {}  # hook calls waiting, per user (not operators)

    # -- commands ------------------------------------------------------------------

    async def command(self, room: str, call: Call) -> Outcome:
        """Run a command in a domain room: its outcome, or the RoomlogError that
        refused it."""
        kind = room.split(":", 1)[0]
        runner = self._publisher.runners.get(kind)
        spec = self.hooks.find(kind, call.command.name) if runner is not None else None
        if runner is None or spec is None:
            return await self._publisher.command(room, call)
        return await self._once((room, *call.key),
                                lambda: self._hooked_command(room, call, runner, spec))

    async def _hooked_command(self, room: str, call: Call, runner: CommandRunner,
                              spec: HookSpec) -> Outcome:
        found = await self._probe_command(room, call, runner)
        if isinstance(found, RoomlogError):
            raise found
        if isinstance(found, Outcome):
            return found
        args = call.command.args
        verdict = await self._ask(spec, room, found, call.sender or call.who, call.id,
                                  call.command.name, args, call.who, call.sender)
        if isinstance(verdict, Deny):
            decided = dataclasses.replace(call, denied=verdict)
        else:
            approval = Approval(verdict.data, verdict.failed_open)
            decided = dataclasses.replace(
                call, command=dataclasses.replace(call.command, approval=approval))
        return await self._publisher.command(room, decided)

    async def _probe_command(self, room: str, call: Call, runner: CommandRunner
                             ) -> Outcome | RoomlogError | _Asking:
        pending = dataclasses.replace(
            call, command=dataclasses.replace(call.command, approval=Approval(pending=True)))

        async def work(txn: RoomTxn, prior: Prior | None) -> Outcome | RoomlogError | _Asking:
            if prior is not None:
                return recall(prior, txn.epoch)
            cached = await runner.state(txn)
            refused = runner.judge(txn, cached.state, pending)
            if isinstance(refused, RoomlogError):
                return refused
            view = runner.domain.hook_view(cached.state, call.command, call.who, txn.now_ms)
            return _Asking(txn.epoch, txn.head, view)

        # Grouped with the other probes of the room (probes.py); a look: a state folded
        # half is dropped by runner.state itself.
        found: Outcome | RoomlogError | _Asking = await self._probes.run(room, call.key, work)
        return found

    # -- publishes -----------------------------------------------------------------

    async def publish(self, room: str, item: Append, who: Principal) -> Appended:
        """Store one message in a plain room; its seq, or the RoomlogError of the
        hook's deny (now or remembered from an earlier try)."""
        spec = self.hooks.find(room.split(":", 1)[0], _PUBLISH)
        if spec is None or item.id is None:
            return _unrefused(await self._publisher.publish(room, item))
        return await self._once((room, item.actor, item.id),
                                lambda: self._hooked_publish(room, item, who, spec))

    async def _hooked_publish(self, room: str, item: Append, who: Principal,
                              spec: HookSpec) -> Appended:
        assert item.id is not None
        ident = item.id

        async def probe(txn: RoomTxn) -> Appended | RoomlogError | _Asking:
            prior = (await txn.prior([(item.actor, ident)])).get((item.actor, ident))
            if prior is not None:
                return _publish_recall(prior.result, prior.seq, txn.epoch, prior.ts)
            return _Asking(txn.epoch, txn.head, {})

        found, _ = await self._log.transact(room, self._clock_ms(), probe)
        if isinstance(found, RoomlogError):
            raise found
        if isinstance(found, Appended):
            return found
        args = {"data": orjson.loads(item.raw)}
        verdict = await self._ask(spec, room, found, who, ident, _PUBLISH, args, who, None)
        if not isinstance(verdict, Deny):
            return _unrefused(await self._publisher.publish(room, item))
        record = refusal_record(verdict)

        async def refuse(txn: RoomTxn) -> Appended | RoomlogError:
            prior = (await txn.prior([(item.actor, ident)])).get((item.actor, ident))
            if prior is not None:  # another instance decided it first: its outcome wins
                return _publish_recall(prior.result, prior.seq, txn.epoch, prior.ts)
            txn.remember(item.actor, ident, txn.head, record)
            return verdict.error()

        outcome, _ = await self._log.transact(room, self._clock_ms(), refuse)
        if isinstance(outcome, RoomlogError):
            raise outcome
        return outcome

    # -- shared --------------------------------------------------------------------

    async def _ask(self, spec: HookSpec, room: str, found: _Asking, sender: Principal,
                   ident: str, name: str, args: Any, who: Principal,
                   on_behalf: Principal | None) -> Verdict:
        """The backend's verdict. A user (operators aside: they are backends and
        admins) may have ``max_per_user`` calls waiting at once, so one client cannot
        take a slow backend's connections from everyone else (RATE_LIMITED)."""
        waiting = self._asking.get(sender.user, 0)
        if waiting >= self._max_per_user and not sender.is_operator:
            raise RoomlogError(ErrorCode.RATE_LIMITED,
                                f"at most {self._max_per_user} commands may wait for the "
                                "backend at once", retry_after=_BUSY_RETRY)
        hook = hook_id(room, found.epoch, sender.user, ident)
        body = request_body(hook=hook, room=room, epoch=found.epoch, seq=found.seq,
                            ident=ident, name=name, args=args, who=who, sender=on_behalf,
                            state=found.view, now_ms=self._clock_ms())
        self._asking[sender.user] = waiting + 1
        try:
            return await self.hooks.ask(spec, hook, body)
        finally:
            left = self._asking.pop(sender.user) - 1
            if left:
                self._asking[sender.user] = left

    async def _once(self, key: tuple[str, str, str], work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` for one (room, user, id) at a time on this instance: a try
        that arrives while one runs gets its outcome (as a duplicate), and the
        backend is asked once."""
        running = self._running.get(key)
        if running is not None:
            first: T = await asyncio.shield(running)
            return dataclasses.replace(first, duplicate=True)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)
        self._running[key] = future
        try:
            result = await work()
        except Exception as exc:
            future.set_exception(exc)
            raise
        except BaseException:  # cancelled (its connection closed): the others retry
            future.set_exception(Unavailable("interrupted; retry with the same id"))
            raise
        finally:
            del self._running[key]
        future.set_result(result)
        return result

    async def close(self) -> None:
        await self.hooks.close()


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Nobody may be waiting for a failed try: its exception counts as seen."""
    if not future.cancelled():
        future.exception()


def _publish_recall(result: bytes | None, seq: int, epoch: str, ts: int
                    ) -> Appended | RoomlogError:
    """A remembered publish id: its message (a duplicate), or the hook's deny."""
    error = None if result is None else recall_error(orjson.loads(result))
    return error or Appended(seq, epoch, ts, duplicate=True)


def _unrefused(result: Appended) -> Appended:
    """The publisher's result, unless the id was remembered as denied."""
    if result.refusal is not None:
        error = recall_error(orjson.loads(result.refusal))
        if error is not None:
            raise error
    return result
