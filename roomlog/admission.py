"""Admission: when the event loop is saturated, refuse new WebSocket handshakes at
once, with a retry hint, instead of letting them time out.

A reconnect storm (a deploy, a crash) brings thousands of handshakes at once.
Each costs CPU (HTTP parse, token check, subscription, replay); past what one
core serves, every handshake waits behind all the others, the clients' open
timeouts fire, they retry and add to the pile. Refusing the excess in a few
microseconds keeps the loop on the connections it took, and tells the rest when
to come back.

* :class:`LagMonitor` measures how late the event loop runs a timer (its *lag*),
  every ``interval``. A timer that is overdue right now counts as well, so a
  loop that has been stuck shows its lag before the timer gets to run.
* :class:`Admission` wraps the ``/ws`` endpoint (an ASGI app): while the lag is
  above ``max_lag`` it answers the handshake with **HTTP 503** and a
  ``Retry-After`` of ``retry_after`` to twice that many seconds (spread, so the
  refused do not all return together), through the ASGI "websocket denial
  response" extension; a server without it closes the handshake with 1013
  (try again later), which the client sees as HTTP 403. Counted in
  ``roomlog_connections_refused{reason="saturated"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from roomlog.errors import ErrorCode
from roomlog.openapi.operation import attach, operations
from roomlog.stats import Stats

__all__ = ["Admission", "LagMonitor"]

_DENIAL = "websocket.http.response"  # the ASGI extension for an HTTP answer to a handshake
_TRY_AGAIN_LATER = 1013  # WebSocket close code: the server is overloaded


class LagMonitor:
    """How late the event loop runs a timer, in seconds (see the module docstring)."""

    def __init__(self, interval: float = 0.05, clock: Callable[[], float] = time.monotonic,
                 stats: Stats | None = None) -> None:
        self._interval = interval
        self._clock = clock
        self._stats = stats
        self._due: float | None = None  # when the next tick should run
        self._measured = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def lag(self) -> float:
        """The last tick's lateness, or how overdue the next tick is now if more."""
        overdue = 0.0 if self._due is None else self._clock() - self._due
        return max(self._measured, overdue)

    def tick(self, now: float) -> None:
        """One measurement: the tick due at ``_due`` ran at ``now``."""
        if self._due is not None:
            self._measured = max(0.0, now - self._due)
            if self._stats is not None:
                self._stats.loop_lag = self._measured
        self._due = now + self._interval

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        self.tick(self._clock())
        while True:
            await asyncio.sleep(self._interval)
            self.tick(self._clock())


class Admission:
    """ASGI wrapper of the ``/ws`` endpoint that refuses handshakes while the loop lags."""

    def __init__(self, app: ASGIApp, monitor: LagMonitor, *, max_lag: float,
                 retry_after: int, stats: Stats) -> None:
        self._app = app
        attach(self, *operations(app))  # /openapi.json describes what it wraps
        self._monitor = monitor
        self._max_lag = max_lag
        self._retry_after = max(1, retry_after)
        self._stats = stats

    def saturated(self) -> bool:
        return self._max_lag > 0 and self._monitor.lag > self._max_lag

    def refusal(self) -> tuple[int, bytes]:
        """Count one refused handshake; the seconds to wait (spread) and the JSON body
        of the 503 (the native transport answers with these too)."""
        self._stats.connections_refused["saturated"] += 1
        wait = random.randint(self._retry_after, 2 * self._retry_after)
        why = f"the server is saturated; retry in {wait} s"
        return wait, orjson.dumps({"type": "error", "code": ErrorCode.UNAVAILABLE.value,
                                   "message": why, "retry_after": wait})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or not self.saturated():
            await self._app(scope, receive, send)
            return
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        wait, body = self.refusal()
        if _DENIAL in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 503,
                        "headers": [(b"retry-after", str(wait).encode()),
                                    (b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": _TRY_AGAIN_LATER,
                        "reason": f"the server is saturated; retry in {wait} s"})
