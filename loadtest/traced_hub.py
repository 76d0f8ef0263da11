"""``roomlog`` with a timeline of every write: where a message's time goes.

Run as ``python loadtest/traced_hub.py serve ...`` in place of ``python -m roomlog
serve ...`` (``loadtest/fanout.py --timeline`` does), with ``ROOMLOG_TIMELINE``
naming the JSON file the timeline is written to when the server stops. It wraps
methods of the hub's own classes with clocks (``time.perf_counter_ns``), so the
hub runs its ordinary code plus about a microsecond per mark; nothing of the
package changes. The marks, in the order a publish meets them:

``data``       the last bytes a WebSocket connection received (either /ws engine)
``handle``     the session starts handling a publish frame (parsed: after it)
``submit``     the publisher queues it for its room's commit
``commit``     the room's drain takes the batch; ``conn`` the write connection is
               held (pool, pre-ping, SQLite's writer queue); ``locked`` BEGIN and the
               room's lock; ``flush`` the buffered writes start; ``flushed`` they
               are written; ``committed`` COMMIT returned. A plain append on
               PostgreSQL is one statement (``roomlog.log.pg_append``): its marks
               from ``conn`` to ``flush`` are at its start, ``flushed`` and
               ``committed`` at its end
``deliver``    the hub hands the committed messages to local subscribers (encode
               once; write at once to every idle subscriber's socket, queue for the
               others) until ``delivered``
``write``      the flusher's callback at the end of that loop turn writes the
               queued outboxes (with a bus to other instances, all of them) until
               ``written``: the last socket write of the message

:func:`stages` turns the marks into per-message stage durations. The webhook path
has marks of its own (:func:`install_webhooks`, read by :func:`webhook_stages`;
``loadtest/webhooks.py --timeline`` prints them), as do the collector's passes.
"""

from __future__ import annotations

import sys

# loadtest/queue.py shares its name with the standard library's ``queue``, which
# aiosqlite imports: put this folder after the standard library.
sys.path.append(sys.path.pop(0))

import atexit
import contextlib
import functools
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

Mark = tuple[int, str, Any]

STAGES = [  # (name, from mark, to mark)
    ("frame in -> handled", "data", "handle"),
    ("handle -> queued for commit", "handle", "submit"),
    ("queued -> drain takes it", "submit", "commit"),
    ("connection (pool, ping, writer queue)", "commit", "conn"),
    ("BEGIN + room lock", "conn", "locked"),
    ("work (ids, state, decide)", "locked", "flush"),
    ("INSERTs + UPDATE (or the whole append at once)", "flush", "flushed"),
    ("COMMIT", "flushed", "committed"),
    ("commit -> hub", "committed", "deliver"),
    ("hub: encode, write idle sockets, queue", "deliver", "delivered"),
    ("wait for the loop turn's flush", "delivered", "write"),
    ("flush of queued outboxes", "write", "written"),
]


def install(marks: list[Mark], limit: int = 2_000_000) -> None:
    """Wrap the hub's methods to append marks (at most ``limit``)."""
    from roomlog.hub import Hub
    from roomlog.log.sql import SqlLog
    from roomlog.log.txn import SqlTxn
    from roomlog.outbox import Flusher
    from roomlog.publisher import Publisher
    from roomlog.session import Session
    from roomlog.transports.native_ws import NativeWebSocket
    from roomlog.transports.uvicorn_ws import DirectSendProtocol

    clock = time.perf_counter_ns
    last_data = [0]

    def mark(kind: str, info: Any = None) -> None:
        if len(marks) < limit:
            marks.append((clock(), kind, info))

    def sync(cls: Any, name: str, before: str | None, after: str | None,
             info: Callable[..., Any] | None = None) -> None:
        original = getattr(cls, name)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if before:
                mark(before, info(*args) if info else None)
            try:
                return original(*args, **kwargs)
            finally:
                if after:
                    mark(after)
        setattr(cls, name, wrapper)

    def coro(cls: Any, name: str, before: str | None, after: str | None,
             info: Callable[..., Any] | None = None) -> None:
        original = getattr(cls, name)

        @functools.wraps(original)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if before:
                mark(before, info(*args) if info else None)
            try:
                return await original(*args, **kwargs)
            finally:
                if after:
                    mark(after)
        setattr(cls, name, wrapper)

    for protocol in (DirectSendProtocol, NativeWebSocket):  # /ws on either engine
        def on_data(self: Any, data: bytes, received: Any = protocol.data_received) -> None:
            last_data[0] = clock()
            received(self, data)
        protocol.data_received = on_data  # type: ignore[method-assign]

    handle = Session.handle

    async def on_handle(self: Any, payload: Any) -> None:
        is_write = b'"publish"' in payload or b'"command"' in payload \
            if isinstance(payload, bytes) else ('"publish"' in payload or '"command"' in payload)
        if is_write:
            mark("data", None)
            marks[-1] = (last_data[0], "data", None)
            mark("handle")
        await handle(self, payload)
    Session.handle = on_handle  # type: ignore[method-assign]

    coro(Publisher, "_submit", "submit", None, lambda self, room, item: room)
    coro(Publisher, "_commit", "commit", "commit_end", lambda self, *a: len(a[-1]))
    original_write = SqlLog._write

    @contextlib.asynccontextmanager
    async def write(self: Any) -> AsyncIterator[Any]:
        async with original_write(self) as conn:
            mark("conn")
            yield conn
        mark("committed")
    SqlLog._write = write  # type: ignore[method-assign]
    coro(SqlTxn, "begin", None, "locked")
    import roomlog.log.sql as sql_module
    import roomlog.log.txn as txn_module
    flush_all = txn_module.flush_all

    async def traced_flush_all(*args: Any, **kwargs: Any) -> Any:
        mark("flush")
        try:
            return await flush_all(*args, **kwargs)
        finally:
            mark("flushed")
    txn_module.flush_all = traced_flush_all  # the name SqlTxn.flush looks up
    sql_module.flush_all = traced_flush_all  # type: ignore[attr-defined]
    if hasattr(sql_module, "lock_rooms"):
        lock_rooms = sql_module.lock_rooms

        async def traced_lock_rooms(*args: Any, **kwargs: Any) -> Any:
            try:
                return await lock_rooms(*args, **kwargs)
            finally:
                mark("locked")
        sql_module.lock_rooms = traced_lock_rooms  # type: ignore[attr-defined]
    import roomlog.log.pg_append as pg_append_module
    import roomlog.log.sqlite_driver as sqlite_driver_module

    def at_once(original: Callable[..., Any]) -> Callable[..., Any]:
        async def traced(*args: Any, **kwargs: Any) -> Any:
            for kind in ("conn", "locked", "flush"):  # no stages of their own
                mark(kind)
            try:
                return await original(*args, **kwargs)
            finally:
                mark("flushed")
                mark("committed")
        return traced
    # the names SqlLog looks up for an append at once
    pg_append_module.append = at_once(pg_append_module.append)  # type: ignore[assignment]
    sqlite_driver_module.in_thread = at_once(  # type: ignore[assignment]
        sqlite_driver_module.in_thread)
    sync(Hub, "deliver", "deliver", "delivered",
         lambda self, room, messages: (room, messages[0].seq if messages else None,
                                       len(messages), len(self._rooms[room].subs)
                                       if room in self._rooms else 0))
    sync(Flusher, "_flush", "write", "written", lambda self: len(self._dirty))
    install_webhooks(mark)


def install_webhooks(mark: Callable[[str, Any], None]) -> None:
    """Marks of the webhook path (:func:`webhook_stages` reads them): ``wh_commit``
    (room, first seq, last seq, the last one's ``ts``) when the deliverer is offered a
    commit, ``wh_post``/``wh_posted`` (room, first, last) around one delivery
    (body, signature, request, the receiver's answer), ``wh_flush``/``wh_flushed``
    around a cursor flush, and ``gc``/``gc_end`` (generation) around every pass of
    the collector."""
    import gc

    from roomlog.webhooks.delivery import EndpointWorker
    from roomlog.webhooks.manager import Webhooks

    committed = Webhooks.committed

    def on_commit(self: Any, room: str, messages: list[Any]) -> None:
        if messages:
            mark("wh_commit", (room, messages[0].seq, messages[-1].seq, messages[-1].ts))
        committed(self, room, messages)
    Webhooks.committed = on_commit  # type: ignore[method-assign]
    post = EndpointWorker._post

    async def on_post(self: Any, room: str, cursor: Any, batch: Any) -> bool:
        span = (room, batch.messages[0].seq, batch.messages[-1].seq)
        mark("wh_post", span)
        try:
            return await post(self, room, cursor, batch)
        finally:
            mark("wh_posted", span)
    EndpointWorker._post = on_post  # type: ignore[method-assign]
    flush = EndpointWorker._flush

    async def on_flush(self: Any, **kwargs: Any) -> None:
        mark("wh_flush", None)
        try:
            await flush(self, **kwargs)
        finally:
            mark("wh_flushed", None)
    EndpointWorker._flush = on_flush  # type: ignore[method-assign]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        mark("gc" if phase == "start" else "gc_end", info.get("generation"))
    gc.callbacks.append(on_gc)


WEBHOOK_STAGES = [
    "ts -> offered (the commit: ts is taken before it, in whole ms)",
    "offered -> request starts (the room's earlier deliveries, the loop)",
    "request starts -> answered (sign, send, receiver, answer)",
    "offered -> answered",
]


def webhook_stages(marks: list[Mark], start_ns: int, end_ns: int,
                   wall_offset_ns: int) -> dict[str, list[float]]:
    """Per message committed between ``start_ns`` and ``end_ns`` (perf_counter_ns,
    which is CLOCK_MONOTONIC, the same in every process), ms in each stage of
    :data:`WEBHOOK_STAGES` up to its first answered delivery; plus the collector's
    pauses by generation and the cursor flushes. ``wall_offset_ns``: time_ns() minus
    perf_counter_ns() in the hub (for the messages' ``ts``)."""
    marks = sorted(marks, key=lambda m: m[0])
    offered: dict[tuple[str, int], tuple[int, int]] = {}  # (room, seq) -> (t, ts in ns)
    started: dict[tuple[str, int], int] = {}
    out: dict[str, list[float]] = {name: [] for name in WEBHOOK_STAGES}
    pauses: dict[str, list[float]] = {}
    opened: dict[str, int] = {}
    for t, kind, info in marks:
        if kind == "wh_commit" and start_ns <= t <= end_ns:
            room, first, last, ts = info
            for seq in range(first, last + 1):
                offered.setdefault((room, seq), (t, ts * 1_000_000 - wall_offset_ns))
        elif kind == "wh_post":
            room, first, last = info
            for seq in range(first, last + 1):
                started.setdefault((room, seq), t)
        elif kind == "wh_posted":
            room, first, last = info
            for seq in range(first, last + 1):
                key = (room, seq)
                if key in offered and key in started:
                    at, ts = offered.pop(key)
                    begun = started[key]
                    for name, value in zip(WEBHOOK_STAGES, (at - ts, begun - at, t - begun,
                                                            t - at), strict=True):
                        out[name].append(value / 1e6)
        elif kind in ("gc", "wh_flush"):
            opened[kind] = t
        elif kind in ("gc_end", "wh_flushed") and start_ns <= t <= end_ns:
            begun_at = opened.pop("gc" if kind == "gc_end" else "wh_flush", None)
            if begun_at is not None:
                name = f"collector pause, generation {info}" if kind == "gc_end" else \
                    "cursor flush (wall)"
                pauses.setdefault(name, []).append((t - begun_at) / 1e6)
    out.update(sorted(pauses.items()))
    return out


def stages(marks: list[Mark]) -> dict[str, list[float]]:
    """Per write (a publish or command that committed alone or in a batch), the
    duration of each stage in ms, following one write from its frame to the last
    socket write of the fan-out it caused: the marks are read in time order, each
    stage ending at the first mark of its kind after the stage began."""
    marks = sorted(marks, key=lambda m: m[0])
    out: dict[str, list[float]] = {name: [] for name, _, _ in STAGES}
    out["total: frame in -> last socket write"] = []
    kinds = [m[1] for m in marks]
    times = [m[0] for m in marks]
    for i, kind in enumerate(kinds):
        if kind != "data":
            continue
        at: dict[str, int] = {"data": times[i]}
        j = i + 1
        complete = True
        for _, start, end in STAGES:
            if start not in at:
                complete = False
                break
            while j < len(kinds) and kinds[j] != end:
                j += 1
            if j >= len(kinds) or kinds[j] != end:
                complete = False
                break
            at[end] = times[j]
        if not complete:
            continue
        for name, start, end in STAGES:
            out[name].append((at[end] - at[start]) / 1e6)
        out["total: frame in -> last socket write"].append((at["written"] - at["data"]) / 1e6)
    return out


def summary(marks: list[Mark]) -> list[dict[str, Any]]:
    """p50/p99 of each stage, ms, over every complete write."""
    rows = []
    for name, values in stages(marks).items():
        values.sort()
        if not values:
            continue
        rows.append({"stage": name, "count": len(values),
                     "p50": values[len(values) // 2],
                     "p99": values[min(len(values) - 1, int(len(values) * 0.99))]})
    return rows


def main() -> None:
    path = os.environ.get("ROOMLOG_TIMELINE")
    marks: list[Mark] = []
    install(marks)

    def dump() -> None:
        if path:
            with open(path, "w") as f:
                json.dump({"marks": [[t, k, i] for t, k, i in marks],
                           "wall_offset_ns": time.time_ns() - time.perf_counter_ns()}, f)
    atexit.register(dump)
    from roomlog.cli import main as cli_main
    cli_main(sys.argv[1:])


if __name__ == "__main__":
    main()
