"""``roomlog`` with a timeline of every write: where a message's time goes.

Run as ``python loadtest/traced_hub.py serve ...`` in place of ``python -m roomlog
serve ...`` (``loadtest/fanout.py --timeline`` does), with ``ROOMLOG_TIMELINE``
naming the JSON file the timeline is written to when the server stops. It wraps
methods of the hub's own classes with clocks (``time.perf_counter_ns``), so the
hub runs its ordinary code plus about a microsecond per mark; nothing of the
package changes. The marks, in the order a publish meets them:

``data``       the last bytes a WebSocket connection received (uvicorn's protocol)
``handle``     the session starts handling a publish frame (parsed: after it)
``submit``     the publisher queues it for its room's commit
``commit``     the room's drain takes the batch; ``conn`` the write connection is
               held (pool, pre-ping, SQLite's writer queue); ``locked`` BEGIN and the
               room's lock; ``flush`` the buffered writes start; ``flushed`` they
               are written; ``committed`` COMMIT returned
``deliver``    the hub hands the committed messages to local subscribers (encode
               once; write at once to every idle subscriber's socket, queue for the
               others) until ``delivered``
``write``      the flusher's callback at the end of that loop turn writes the
               queued outboxes (with a bus to other instances, all of them) until
               ``written``: the last socket write of the message

:func:`stages` turns the marks into per-message stage durations.
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
    ("INSERTs + UPDATE", "flush", "flushed"),
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

    data_received = DirectSendProtocol.data_received

    def on_data(self: Any, data: bytes) -> None:
        last_data[0] = clock()
        data_received(self, data)
    DirectSendProtocol.data_received = on_data  # type: ignore[method-assign]

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
    sync(Hub, "deliver", "deliver", "delivered",
         lambda self, room, messages: (room, messages[0].seq if messages else None,
                                       len(messages), len(self._rooms[room].subs)
                                       if room in self._rooms else 0))
    sync(Flusher, "_flush", "write", "written", lambda self: len(self._dirty))


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
                json.dump({"marks": [[t, k, i] for t, k, i in marks]}, f)
    atexit.register(dump)
    from roomlog.cli import main as cli_main
    cli_main(sys.argv[1:])


if __name__ == "__main__":
    main()
