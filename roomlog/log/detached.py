"""Database work that its caller's cancellation cannot interrupt.

Clients cancel the tasks that serve them all the time: an unsubscribe cancels a
replay, a closing connection cancels its reader, an ending SSE stream cancels its
subscription. A cancellation that lands inside a database transaction is
delivered in the middle of the driver's work: on SQLite, one that arrived while
``BEGIN IMMEDIATE`` ran in aiosqlite's thread left a connection holding the write
lock that nothing would ever roll back, and every later write failed.

So the SQL log runs each operation in a task of its own and its caller only waits
for that task (:meth:`Detached.run`). A cancelled caller stops waiting at once;
the operation runs on to its commit or rollback and its result is dropped. An
operation whose caller is gone before its transaction began is skipped
(:meth:`Detached.check`), so a client that subscribes and unsubscribes in a loop
does not leave a queue of transactions behind it. No SQLAlchemy here: this is
plain asyncio, and the adapter says where the checks go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["Detached"]

T = TypeVar("T")


class Detached:
    """The operations in flight, each in its own task (see the module docstring)."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[Any]] = set()
        self._abandoned: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> int:
        return len(self._running)

    def start(self, operation: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Start ``operation`` in a task of its own; await it through ``asyncio.shield``.
        It is never skipped (use :meth:`run` for work a gone caller may skip)."""
        task = asyncio.get_running_loop().create_task(operation)
        self._running.add(task)
        task.add_done_callback(self._finished)
        return task

    async def run(self, operation: Coroutine[Any, Any, T]) -> T:
        """Run ``operation`` to its end whatever happens to the caller; return its
        result, or raise what it raised. A cancelled caller gets CancelledError at
        once, while the operation goes on alone."""
        task = self.start(operation)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                self._abandoned.add(task)
            raise

    def check(self) -> None:
        """Inside an operation, at a point where nothing has begun (no transaction,
        no lock of the database): give up with CancelledError if its caller is gone."""
        if asyncio.current_task() in self._abandoned:
            raise asyncio.CancelledError("the caller is gone; nothing was begun")

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that went away never asks for it

    async def settle(self, within: float) -> None:
        """Wait up to ``within`` seconds for the operations in flight (closing)."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=within)
