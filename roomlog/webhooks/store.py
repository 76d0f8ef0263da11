"""The ports of webhooks: the durable endpoint list with its cursors, and leases.

:class:`WebhookStore` (SQL adapter: ``roomlog/log/webhooks.py``) keeps endpoints,
each one's cursor per room, its recent attempts and operators' redeliveries.
Every method raises :class:`~roomlog.errors.Unavailable` when the database fails.

* ``create`` stores an endpoint and, in the same transaction, a cursor at the
  head of every room it follows that exists: an endpoint gets what is committed
  after it, not the history. A room created later starts at seq 0. ``update``
  does the same for rooms a widened pattern adds.
* ``save`` writes cursors and attempts in one transaction; when a ``holder`` is
  given, only while that holder's lease on the endpoint is current (False
  otherwise: another instance took over, and this one stops).
* ``rewind`` records a redelivery; ``take_rewinds`` hands pending ones to the
  delivering instance and clears them, in one transaction.

:class:`Leases` says which instance delivers an endpoint. ``acquire`` takes or
renews the lease until ``now + ttl``; it succeeds when nobody holds it, this
holder does, or the holder's lease has run out (it died). ``release`` gives it
up (a clean stop: another instance takes over at once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from roomlog.log import RoomInfo
from roomlog.webhooks.core import Cursor
from roomlog.webhooks.endpoint import Endpoint

__all__ = ["Attempt", "Leases", "WebhookStore"]


@dataclass(frozen=True, slots=True)
class Attempt:
    ts_ms: int
    room: str
    webhook_id: str
    first: int
    last: int
    status: int | None  # the HTTP status; None when no answer came
    latency_ms: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def to_json(self) -> dict[str, Any]:
        return {"ts": self.ts_ms, "room": self.room, "webhook_id": self.webhook_id,
                "first_seq": self.first, "last_seq": self.last, "status": self.status,
                "latency_ms": self.latency_ms, "error": self.error, "ok": self.ok}


class WebhookStore(Protocol):
    async def create(self, endpoint: Endpoint) -> None: ...

    async def get(self, endpoint_id: str) -> Endpoint | None: ...

    async def all(self) -> list[Endpoint]: ...

    async def update(self, endpoint: Endpoint, *, widened: bool,
                     reenabled: bool = False) -> bool:
        """Store the changed endpoint (False: it is gone); ``widened``: its room
        patterns changed, so rooms newly followed get a cursor at their head;
        ``reenabled``: an operator enabled it again, so the horizon of its failing
        rooms starts over."""

    async def delete(self, endpoint_id: str) -> bool: ...

    async def disable(self, endpoint_id: str, reason: str, now_ms: int) -> Endpoint | None:
        """Turn the endpoint off with a reason (the horizon passed)."""

    async def cursors(self, endpoint_id: str) -> dict[str, Cursor]:
        """Every stored cursor of the endpoint, pending rewinds applied first."""

    async def behind(self, endpoint: Endpoint, limit: int) -> list[RoomInfo]:
        """Rooms the endpoint follows whose head is past their stored cursor (or whose
        epoch changed), at most ``limit``."""

    async def save(self, endpoint_id: str, cursors: Mapping[str, Cursor],
                   attempts: Sequence[Attempt], now_ms: int, *, holder: str | None,
                   keep_attempts: int) -> bool: ...

    async def attempts(self, endpoint_id: str, limit: int) -> list[Attempt]:
        """The newest attempts first."""

    async def rewind(self, endpoint_id: str, room: str, after: int, now_ms: int) -> RoomInfo:
        """Deliver the room again from ``after + 1`` (of its current epoch); bumps the
        endpoint's version so its deliverer notices."""

    async def take_rewinds(self, endpoint_id: str) -> dict[str, Cursor]: ...


class Leases(Protocol):
    async def acquire(self, endpoint_id: str, holder: str, now_ms: int, ttl_ms: int) -> bool: ...

    async def release(self, endpoint_id: str, holder: str) -> None: ...


class LocalLeases:
    """Leases of a single process (SQLite): this instance delivers every endpoint."""

    async def acquire(self, endpoint_id: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        return True

    async def release(self, endpoint_id: str, holder: str) -> None:
        return None
