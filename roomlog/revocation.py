"""Bans enforced on every instance, within a bound.

The database holds the ban list (:class:`~roomlog.bans.BanStore`); each instance
keeps the bans in force in memory (:class:`~roomlog.bans.BanList`) and checks
every connect, token refresh and HTTP request against it. A change reaches the
instances two ways:

1. at once: the instance that made it applies it, then broadcasts it on the bus
   (``{"ban": {...}}``); the others apply it when it arrives;
2. within ``ban_reload_interval``: every instance reloads the whole list from
   the database, so one that missed the broadcast (Redis down or blocked, a
   partition) or started later holds the ban anyway.

After each change, and after each reload, ``enforce`` is called: it ends what is
open for a banned grant on this instance (WebSockets close with 4003, SSE
streams and long-polls answer ``BANNED``; see ``roomlog.drain``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from roomlog.bans import Ban, BanList, BanQuery, BanStore, NewBan, banned_error
from roomlog.bus import Bus
from roomlog.identity import Grant, Principal
from roomlog.periodic import every

__all__ = ["Revocation"]

logger = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Revocation:
    def __init__(self, store: BanStore, bus: Bus, *, reload_interval: float,
                 clock_ms: Callable[[], int] = _now_ms,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.bans = BanList()
        self.hits = 0  # connects, requests and open streams refused or ended by a ban (metrics)
        self._bus = bus
        self._interval = reload_interval
        self._clock_ms = clock_ms
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.enforce: Callable[[], int] = lambda: 0  # set by the wiring (roomlog.drain)

    def now_ms(self) -> int:
        """Wall-clock time in ms, as bans count it."""
        return self._clock_ms()

    # -- checks ------------------------------------------------------------------

    def check(self, grant: Grant) -> None:
        """Raise BANNED if a ban in force covers ``grant``."""
        ban = self.blocking(grant)
        if ban is not None:
            raise banned_error(ban)

    def blocking(self, grant: Grant) -> Ban | None:
        """The ban in force that covers ``grant``, if any (counted in ``hits``)."""
        ban = self.bans.blocking(grant, self._clock_ms())
        if ban is not None:
            self.hits += 1
        return ban

    # -- changes -------------------------------------------------------------------

    async def ban(self, new: NewBan, by: Principal, now_ms: int) -> tuple[Ban, int]:
        """Store a ban made at ``now_ms`` (the moment its ``duration`` counts from),
        enforce it here, tell the others; the ban and how many connections this
        instance ended. The write is shielded: once asked, a ban is committed even if
        the request is cancelled (the reload spreads it)."""
        ban = await asyncio.shield(self.store.add(new, by, now_ms))
        return ban, self._changed(ban)

    async def lift(self, ban_id: int, by: Principal) -> Ban | None:
        """Lift a ban everywhere; None if there is no such ban."""
        ban = await asyncio.shield(self.store.lift(ban_id, by, self._clock_ms()))
        if ban is not None:
            self._changed(ban)
        return ban

    async def get(self, ban_id: int) -> Ban | None:
        return await self.store.get(ban_id)

    async def find(self, query: BanQuery) -> list[Ban]:
        return await self.store.find(query, self._clock_ms())

    def json(self, ban: Ban) -> dict[str, Any]:
        return ban.to_json(self._clock_ms())

    def _changed(self, ban: Ban) -> int:
        self.bans.apply(ban, self._clock(), self._clock_ms())
        self._bus.broadcast({"ban": self.json(ban)})
        return self.enforce()

    def control(self, payload: dict[str, Any]) -> None:
        """A ban made or lifted on another instance (a bus broadcast)."""
        try:
            ban = Ban.from_json(payload["ban"])
        except (KeyError, TypeError, ValueError):
            logger.warning("ignored a malformed ban broadcast: %.200r", payload)
            return
        self.bans.apply(ban, self._clock(), self._clock_ms())
        self.enforce()

    # -- the reload ----------------------------------------------------------------

    async def start(self) -> None:
        """Load the list (the database must answer: the server does not serve
        without knowing its bans), then reload it every ``reload_interval``."""
        await self.reload()
        self._task = asyncio.get_running_loop().create_task(self._reload_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def reload(self) -> None:
        started = self._clock()
        stored = await self.store.in_force(self._clock_ms())
        self.bans.replace(stored, started, self._clock_ms())
        self.enforce()

    async def _reload_forever(self) -> None:
        """Reload every interval; a failing database leaves the last list in force."""
        await every(self._interval, self.reload, what="ban list reload", log=logger)
