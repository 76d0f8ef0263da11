"""Limits per principal: what one user or one client address may hold and do.

A client can open many connections; what matters is who is behind them. So:

* **Connections** (WebSockets, SSE streams, long-polls being held) are counted
  per user (``max_connections_per_user``, checked at ``connect`` or when the
  request is authenticated) and per client address (``max_connections_per_address``,
  checked before anything else; the address is the peer's, or the one a trusted
  proxy names in ``X-Forwarded-For``: ``forwarded_allow_ips``). Both are counted
  per instance.
* **Writes** (publishes and commands, on every transport) share one token bucket
  per user: ``publish_rate``/``publish_burst``. The bucket lives in the bus
  (``Bus.take``): in-process with the memory bus, one Redis key per user with the
  Redis bus, so the rate holds across instances.
* **Subscribes and unsubscribes**, **presence queries** and **HTTP reads** have a
  bucket per user and kind on each instance: they load only the instance that
  serves them.
* Services and admins get ``staff_limit_factor`` times every limit (0: none).
* A WebSocket that keeps being refused is closed with 4029 (``CloseCode.LIMITED``):
  it may collect ``max_rate_strikes`` RATE_LIMITED answers, and one more per
  second that it waits (:class:`Strikes`).

Counters go to ``stats.rate_limited[(transport, kind)]`` and
``stats.connections_refused[reason]``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal, Role
from roomlog.lru import Lru
from roomlog.ratelimit import TokenBucket
from roomlog.settings import Settings
from roomlog.stats import Stats

__all__ = ["Kind", "Limits", "RateStore", "Release", "Strikes"]

_MAX_BUCKETS = 50_000  # users whose local rates are tracked; the least recent go first

Release = Callable[[], None]


class Kind(enum.StrEnum):
    WRITE = "write"  # publish, command
    SUBSCRIBE = "subscribe"  # subscribe, unsubscribe
    PRESENCE = "presence"  # presence queries (WebSocket and HTTP)
    READ = "read"  # HTTP reads: long-polls, SSE opens, state, room info, analytics, photos


class RateStore(Protocol):
    """Where the shared write buckets live (the bus)."""

    async def take(self, key: str, rate: float, burst: float) -> float:
        """Take one token from bucket ``key``: 0.0, or the seconds until one is free."""


class Limits:
    def __init__(self, settings: Settings, store: RateStore, stats: Stats,
                 clock: Callable[[], float]) -> None:
        self._s = settings
        self._store = store
        self._stats = stats
        self._clock = clock
        self._rates = {
            Kind.WRITE: (settings.publish_rate, settings.publish_burst),
            Kind.SUBSCRIBE: (settings.subscribe_rate, settings.subscribe_burst),
            Kind.PRESENCE: (settings.presence_rate, settings.presence_burst),
            Kind.READ: (settings.read_rate, settings.read_burst),
        }
        self._buckets: Lru[tuple[Kind, str], TokenBucket] = Lru(_MAX_BUCKETS)
        self._by_user: dict[str, int] = {}
        self._by_address: dict[str, int] = {}

    # -- factors -------------------------------------------------------------------

    def factor(self, who: Principal | None) -> float:
        """How many times a guest's limits ``who`` gets; 0: no limits."""
        if who is not None and who.role in (Role.ADMIN, Role.SERVICE):
            return self._s.staff_limit_factor
        return 1.0

    # -- connections -----------------------------------------------------------------

    def open_address(self, address: str | None) -> Release:
        """Count one more connection from ``address``, or LIMIT_EXCEEDED."""
        cap = self._s.max_connections_per_address
        if address is None or cap <= 0:
            return _nothing
        return self._open(self._by_address, address, cap, "address_connections",
                          f"at most {cap} connections from one address")

    def open_user(self, who: Principal) -> Release:
        """Count one more connection of ``who``, or LIMIT_EXCEEDED."""
        factor = self.factor(who)
        cap = int(self._s.max_connections_per_user * factor)
        if factor == 0 or self._s.max_connections_per_user <= 0:
            return _nothing
        return self._open(self._by_user, who.user, cap, "user_connections",
                          f"at most {cap} connections per user: close one first")

    def _open(self, counts: dict[str, int], key: str, cap: int, reason: str,
              message: str) -> Release:
        if counts.get(key, 0) >= cap:
            self._stats.connections_refused[reason] += 1
            raise RoomlogError(ErrorCode.LIMIT_EXCEEDED, message, retry_after=5.0)
        counts[key] = counts.get(key, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = counts[key] - 1
            if left:
                counts[key] = left
            else:
                del counts[key]

        return release

    def connections(self, user: str) -> int:
        return self._by_user.get(user, 0)

    # -- rates -------------------------------------------------------------------

    def check(self, kind: Kind, who: Principal, transport: str) -> None:
        """Take a token of ``kind`` from this instance's bucket of ``who``, or
        RATE_LIMITED (not for writes: :meth:`write`)."""
        factor = self.factor(who)
        if factor == 0:
            return
        key = (kind, who.user)
        bucket = self._buckets.get(key)
        if bucket is None:
            rate, burst = self._rates[kind]
            bucket = TokenBucket(rate * factor, max(1, int(burst * factor)), self._clock)
            self._buckets.put(key, bucket)
        self._refuse(bucket.take(), kind, transport)

    async def write(self, who: Principal, transport: str) -> None:
        """Take a write token from ``who``'s bucket, shared by every connection and
        instance (the bus), or RATE_LIMITED."""
        factor = self.factor(who)
        if factor == 0:
            return
        rate, burst = self._rates[Kind.WRITE]
        wait = await self._store.take(f"{Kind.WRITE.value}:{factor:g}:{who.user}",
                                      rate * factor, max(1.0, burst * factor))
        self._refuse(wait, Kind.WRITE, transport)

    def _refuse(self, wait: float, kind: Kind, transport: str) -> None:
        if wait:
            self._stats.rate_limited[(transport, kind.value)] += 1
            raise RoomlogError(ErrorCode.RATE_LIMITED, f"too many {kind.value}s: slow down",
                               retry_after=round(wait, 3), details={"kind": kind.value})

    def strikes(self) -> Strikes:
        return Strikes(self._s.max_rate_strikes, self._clock)


class Strikes:
    """The RATE_LIMITED answers one connection may collect before it is closed:
    ``most`` at once, one more per second. Pure."""

    def __init__(self, most: int, clock: Callable[[], float]) -> None:
        self._bucket = TokenBucket(1.0, max(1, most), clock) if most > 0 else None

    def strike(self) -> bool:
        """One more refusal; True when the connection has had too many."""
        return self._bucket is not None and self._bucket.take() > 0


def _nothing() -> None:
    return None
