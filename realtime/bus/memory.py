"""The in-process bus (the default): instances sharing one ``MemoryBroker``.

A single server process needs no bus at all: its hub already delivers what it
commits. The broker lets several hubs in one process (tests) see each other.
"""

from __future__ import annotations

from realtime.bus import Inbound
from realtime.protocol import Message

__all__ = ["MemoryBroker", "MemoryBus"]


class MemoryBroker:
    def __init__(self) -> None:
        self.buses: list[MemoryBus] = []


class MemoryBus:
    def __init__(self, broker: MemoryBroker | None = None) -> None:
        self._broker = broker or MemoryBroker()
        self._inbound: Inbound | None = None
        self._rooms: set[str] = set()

    async def start(self, inbound: Inbound) -> None:
        self._inbound = inbound
        self._broker.buses.append(self)

    async def close(self) -> None:
        if self in self._broker.buses:
            self._broker.buses.remove(self)

    async def publish(self, room: str, messages: list[Message]) -> None:
        for bus in self._broker.buses:
            if bus is not self and room in bus._rooms and bus._inbound is not None:
                bus._inbound(room, messages)

    def subscribe(self, room: str) -> None:
        self._rooms.add(room)

    def unsubscribe(self, room: str) -> None:
        self._rooms.discard(room)
