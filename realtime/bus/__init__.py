"""The Bus port: carries committed messages between server instances.

Contract every adapter keeps:

* ``publish`` is called after the commit, with one room's messages in seq
  order. Delivery to other instances is best effort and may reorder or drop
  under failure: the hub repairs order and gaps from the log, so the bus
  never decides what a client sees, only how soon.
* An instance does not receive its own publications.
* ``subscribe``/``unsubscribe`` are reference-free and synchronous: the hub
  calls them when a room gains its first or loses its last local interest;
  the adapter does its I/O in the background.
* Inbound messages are handed to the ``Inbound`` callback given to ``start``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from realtime.protocol import Message

__all__ = ["Bus", "Inbound"]

Inbound = Callable[[str, list[Message]], None]


class Bus(Protocol):
    async def start(self, inbound: Inbound) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, room: str, messages: list[Message]) -> None: ...

    def subscribe(self, room: str) -> None: ...

    def unsubscribe(self, room: str) -> None: ...
