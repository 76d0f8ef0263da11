"""The write path: group commit per room, then fan-out.

Concurrent publishes (plain rooms) or commands (domain rooms) to one room
queue up; one drain task per room commits each queue as a single transaction
(up to ``commit_batch`` items). The rooms of a kind whose runner commits
``across_rooms`` (repair tickets, which all write to the admins' feed) share
one queue and one drain: a batch holds the commands of many of its rooms, in
one transaction (``Log.transact_many``), each room's in the order they came.
Plain rooms do too, in lanes (``lanes``; ``ROOMLOG_COMMIT_LANES``): a plain room
belongs to one of ``lanes`` lanes (a hash of its name), each lane has one queue and
one drain, and a batch is one ``Log.append_many`` over the lane's rooms (on
PostgreSQL one statement, ``roomlog.log.pg_append``), each room's publishes in the
order they came. A room that gets one message now and then no
longer costs a transaction of its own: under load the commits per second stay few
while the rooms grow many. The price: one commit in flight per lane, so a room whose
lock is held (on PostgreSQL, by another instance's commit) delays the other rooms of
its lane by as long; the other lanes go on. ``lanes`` 0: every room its own queue.
SQLite gets one lane (its one writer commits one transaction at a time anyway).
The drain then hands the committed messages, of the room
and of any ``user:{id}`` rooms its notices went to, to the cluster (the local
hub, then the bus). Rooms commit in parallel; within a room, commits and
deliveries happen in seq order. Nothing is delivered or acknowledged before
its commit. Once ``close`` begins (drain), new writes are refused with
UNAVAILABLE so clients retry them, same id, on another instance.

A batch shares one transaction, but not one fate. When the database is down
(``Unavailable``) every item of the batch gets UNAVAILABLE and is retried by its
client, same id. Any other failure is one item's fault (a value the database
refuses, a domain ``apply`` that raises): the batch is split in halves, each
committed on its own, down to the item that fails alone; it is answered with a
coded error (BAD_FRAME for a message, INVALID_ARGS for a command the database
refuses, INTERNAL for a bug), and every other item commits, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from roomlog import logs
from roomlog.cluster import Cluster
from roomlog.commands import Call, CommandRunner, Outcome
from roomlog.errors import ErrorCode, Refused, RoomlogError, Unavailable
from roomlog.log import Append, Appended, Log, RoomInfo
from roomlog.protocol import Message
from roomlog.stats import Stats

__all__ = ["Publisher", "lane_of"]

logger = logging.getLogger(__name__)

_Item = Append | Call
_Pending = tuple[str, _Item, "asyncio.Future[Any]"]  # room, item, its answer


def lane_of(room: str, lanes: int) -> int:
    """The commit lane of a plain room: the same in every process (not ``hash``)."""
    return zlib.crc32(room.encode()) % lanes


class Publisher:
    def __init__(self, log: Log, cluster: Cluster, stats: Stats, *,
                 clock_ms: Callable[[], int], max_batch: int = 500,
                 runners: dict[str, CommandRunner] | None = None,
                 lanes: int = 0) -> None:
        self._log = log
        self._lanes = lanes
        self._cluster = cluster
        self._stats = stats
        self._clock_ms = clock_ms
        self._max_batch = max_batch
        self.runners = runners or {}
        self._queues: dict[str, list[_Pending]] = {}
        self._drains: set[asyncio.Task[None]] = set()
        self._closing = False
        self.commits = 0

    async def publish(self, room: str, item: Append) -> Appended:
        """Store one message in a plain room (group-committed); return its seq."""
        result: Appended = await self._submit(room, item)
        return result

    async def command(self, room: str, call: Call) -> Outcome:
        """Run one command in a domain room; its outcome, or the RoomlogError
        that rejected it (nothing stored then)."""
        kind = room.split(":", 1)[0]
        if kind not in self.runners:
            raise RoomlogError(ErrorCode.UNKNOWN_COMMAND, f"{room} takes no commands")
        try:
            outcome: Outcome = await self._submit(room, call)
        except RoomlogError as err:
            self._stats.count_command(kind, call.command.name, err.code.value)
            raise
        self._stats.count_command(kind, call.command.name, "ok")
        return outcome

    async def _submit(self, room: str, item: _Item) -> Any:
        if self._closing:
            raise Unavailable("this instance is shutting down; retry on another", retry_after=0.5)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        kind = room.split(":", 1)[0]
        runner = self.runners.get(kind)
        # one queue per room; one per kind for a kind that commits across rooms (its
        # key, "kind:", names no room); one per lane of plain rooms (":n", nor this)
        if runner is None:
            key = f":{lane_of(room, self._lanes)}" if self._lanes else room
        else:
            key = f"{kind}:" if runner.across_rooms else room
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = []
            # the room's commits serve every client: not logged as the first one's
            task = asyncio.get_running_loop().create_task(self._drain(key, queue),
                                                          context=logs.detached())
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
        queue.append((room, item, future))
        return await future

    async def _drain(self, key: str, queue: list[_Pending]) -> None:
        try:
            while queue:
                batch = queue[: self._max_batch]
                del queue[: self._max_batch]
                await self._commit(batch)
        finally:
            self._queues.pop(key, None)

    async def _store(self, batch: list[_Pending]) -> tuple[list[Any], dict[str, list[Message]]]:
        now_ms = self._clock_ms()
        room = batch[0][0]
        runner = self.runners.get(room.split(":", 1)[0])
        if runner is None:
            return await self._append(batch, now_ms)
        calls: dict[str, list[Call]] = {}
        for name, item, _ in batch:
            if isinstance(item, Call):
                calls.setdefault(name, []).append(item)
        if len(calls) == 1:
            outcomes, by_room = await runner.commit(self._log, room, now_ms, calls[room])
            return list(outcomes), by_room
        per_room, by_room = await runner.commit_many(self._log, now_ms, calls)
        return _in_batch_order(batch, per_room), by_room

    async def _append(self, batch: list[_Pending], now_ms: int
                      ) -> tuple[list[Any], dict[str, list[Message]]]:
        """Plain rooms' publishes, of one room or of a lane's, with ``Log.append_many``."""
        appends: dict[str, list[Append]] = {}
        for name, item, _ in batch:
            if isinstance(item, Append):
                appends.setdefault(name, []).append(item)
        per_room, by_room = await self._log.append_many(appends, now_ms=now_ms)
        return _in_batch_order(batch, per_room), by_room

    async def _commit(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            results, stored = await self._store(batch)
        except Unavailable as exc:  # the database, not the batch: all retry, same ids
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except Exception as exc:
            if len(batch) > 1:  # one item's fault: find it, commit the others
                self._stats.commit_splits += 1
                half = len(batch) // 2
                await self._commit(batch[:half])
                await self._commit(batch[half:])
                return
            (room, item, future), = batch
            if not future.done():
                future.set_exception(_refusal(room, item, exc))
            return
        self.commits += 1
        self._stats.append_latency.observe(time.perf_counter() - started)
        for name, messages in stored.items():  # in seq order: each room's next commit waits
            self._cluster.local(name, messages)
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, RoomlogError):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def reset(self, room: str) -> RoomInfo:
        """Drop the room's log and start a new epoch; subscribers get a reset."""
        info = await self._log.reset(room)
        runner = self.runners.get(room.split(":", 1)[0])
        if runner is not None:
            runner.forget(room)
        self._cluster.reset_room(room, info)
        return info

    @property
    def idle(self) -> bool:
        return not self._drains

    async def close(self) -> None:
        """Refuse new writes; let queued ones finish committing (drain)."""
        self._closing = True
        if self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)


def _in_batch_order(batch: list[_Pending], per_room: Mapping[str, Sequence[Any]]) -> list[Any]:
    """Answers given per room (each room's in its order) as one list in the batch's order."""
    answers = {name: iter(results) for name, results in per_room.items()}
    return [next(answers[name]) for name, _, _ in batch]


def _refusal(room: str, item: _Item, exc: Exception) -> RoomlogError:
    """The coded error of an item that fails alone."""
    if isinstance(exc, Refused):  # our checks let through what a column cannot hold
        logger.warning("the database refused a write to %s: %s", room, exc.message)
        code = ErrorCode.INVALID_ARGS if isinstance(item, Call) else ErrorCode.BAD_FRAME
        return RoomlogError(code, f"this {'command' if isinstance(item, Call) else 'message'}"
                                  " cannot be stored; change it (retrying it fails again)")
    if isinstance(exc, RoomlogError):
        return exc
    logger.error("commit to %s failed", room, exc_info=exc)
    return RoomlogError(ErrorCode.INTERNAL, "the write failed; this is a bug")
