"""The Bus port: carries committed messages, signals and presence between instances.

Contract every adapter keeps (``tests/bus/test_contract.py`` checks it against
each adapter):

* ``publish`` is called after the commit, with one room's messages in seq
  order, and never blocks: the adapter sends in the background, in call order.
  Delivery to other instances is best effort and may reorder, delay or drop
  under failure. The receiving side (``roomlog.cluster``) repairs order and
  gaps from the log, so the bus decides how soon a client sees a message,
  never whether.
* An instance never receives its own publications or signals: it delivers them
  locally itself.
* ``subscribe``/``unsubscribe`` are synchronous and idempotent: the hub calls
  them when a room gains its first or loses its last local interest; the
  adapter does the I/O in the background. Once a subscription is active the
  adapter calls ``Inbound.resync([room])``: messages committed before it became
  active are not carried, and the receiver reads them from the log.
* ``signal`` sends a small dict to the other instances that subscribe the room
  (presence join/leave, room resets); ``broadcast`` sends one to every
  instance (admin disconnects). Both are best effort.
* ``connected`` is False while the adapter cannot carry messages (Redis down,
  blocked or evicted us). Every change is reported through
  ``Inbound.bus_state``; after a reconnect every subscribed room is resynced.
* Presence: ``presence_join``/``presence_leave`` record this instance's
  connections in a room (synchronous, written in the background and written
  again after a reconnect); ``presence`` lists the entries of every live
  instance. Entries of an instance that died vanish within ``presence_ttl``
  and their removal is signalled as a ``leave`` exactly once.
* Rate limits: ``take(key, rate, burst)`` takes one token from the token bucket
  ``key`` shared by every instance (``rate`` per second, at most ``burst``
  saved up) and returns 0.0, or the seconds until a token is free. It never
  raises and answers within about ``ping_timeout``: when the shared store is
  unreachable the adapter falls back to a bucket of its own instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from roomlog.protocol import Message

__all__ = ["Bus", "Inbound"]


class Inbound(Protocol):
    """What a bus hands to its instance (implemented by ``roomlog.cluster``)."""

    def messages(self, room: str, messages: list[Message]) -> None:
        """Another instance committed these (one room, ascending seq)."""

    def signal(self, room: str, payload: dict[str, Any]) -> None:
        """Another instance signalled something about a room."""

    def control(self, payload: dict[str, Any]) -> None:
        """A broadcast to every instance."""

    def resync(self, rooms: Sequence[str]) -> None:
        """These rooms may have missed messages: compare with the log."""

    def bus_state(self, connected: bool) -> None:
        """The bus went down (poll the log) or came back."""


class Bus(Protocol):
    instance: str  # this instance's id, unique in the cluster
    reconnects: int  # connections re-established after a failure (metrics)
    dropped: int  # publishes dropped while the bus failed (metrics)

    @property
    def connected(self) -> bool: ...

    async def start(self, inbound: Inbound) -> None: ...

    async def close(self) -> None: ...

    def publish(self, room: str, messages: list[Message]) -> None: ...

    def signal(self, room: str, payload: dict[str, Any]) -> None: ...

    def broadcast(self, payload: dict[str, Any]) -> None: ...

    def subscribe(self, room: str) -> None: ...

    def unsubscribe(self, room: str) -> None: ...

    def presence_join(self, room: str, conn: str, entry: dict[str, Any]) -> None: ...

    def presence_leave(self, room: str, conn: str) -> None: ...

    async def presence(self, room: str) -> dict[str, dict[str, Any]]:
        """Every live connection in the room: ``{conn: entry}``. Raises
        Unavailable when the shared store cannot be read."""

    async def take(self, key: str, rate: float, burst: float) -> float:
        """One token from the shared bucket ``key``: 0.0, or the seconds to wait."""
