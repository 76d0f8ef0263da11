"""The in-process bus (the default): instances sharing one ``MemoryBroker``.

A single server process needs no bus at all: its hub already delivers what it
commits. The broker lets several instances in one process (tests) see each
other; it is always connected, and presence lives in the broker.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from roomlog.bus import Inbound
from roomlog.protocol import Message
from roomlog.ratelimit import Buckets

__all__ = ["MemoryBroker", "MemoryBus"]


class MemoryBroker:
    def __init__(self) -> None:
        self.buses: list[MemoryBus] = []
        self.presence: dict[str, dict[str, dict[str, Any]]] = {}  # room -> conn -> entry
        self.buckets = Buckets(time.monotonic)  # shared rate limits (Bus.take)


class MemoryBus:
    def __init__(self, broker: MemoryBroker | None = None, instance: str | None = None) -> None:
        self.instance = instance or secrets.token_hex(4)
        self._broker = broker or MemoryBroker()
        self._inbound: Inbound | None = None
        self._rooms: set[str] = set()
        self._mine: set[tuple[str, str]] = set()  # (room, conn) entries this bus made
        self.reconnects = 0
        self.dropped = 0

    @property
    def connected(self) -> bool:
        return True

    async def start(self, inbound: Inbound) -> None:
        self._inbound = inbound
        self._broker.buses.append(self)

    async def close(self) -> None:
        for room, conn in list(self._mine):  # an instance that stops takes its entries along
            self.presence_leave(room, conn)
        if self in self._broker.buses:
            self._broker.buses.remove(self)

    def _peers(self, room: str | None) -> list[Inbound]:
        return [bus._inbound for bus in self._broker.buses
                if bus is not self and bus._inbound is not None
                and (room is None or room in bus._rooms)]

    def publish(self, room: str, messages: list[Message]) -> None:
        for inbound in self._peers(room):
            inbound.messages(room, messages)

    def signal(self, room: str, payload: dict[str, Any]) -> None:
        for inbound in self._peers(room):
            inbound.signal(room, payload)

    def broadcast(self, payload: dict[str, Any]) -> None:
        for inbound in self._peers(None):
            inbound.control(payload)

    def subscribe(self, room: str) -> None:
        if room not in self._rooms:
            self._rooms.add(room)
            if self._inbound is not None:  # in place at once; confirmed after this call
                asyncio.get_running_loop().call_soon(self._confirm, room)

    def _confirm(self, room: str) -> None:
        if room in self._rooms and self._inbound is not None:
            self._inbound.resync([room])

    def unsubscribe(self, room: str) -> None:
        self._rooms.discard(room)

    def presence_join(self, room: str, conn: str, entry: dict[str, Any]) -> None:
        self._broker.presence.setdefault(room, {})[conn] = entry | {"instance": self.instance}
        self._mine.add((room, conn))

    def presence_leave(self, room: str, conn: str) -> None:
        self._mine.discard((room, conn))
        entries = self._broker.presence.get(room)
        if entries is not None:
            entries.pop(conn, None)
            if not entries:
                del self._broker.presence[room]

    async def presence(self, room: str) -> dict[str, dict[str, Any]]:
        return dict(self._broker.presence.get(room, {}))

    async def take(self, key: str, rate: float, burst: float) -> float:
        return self._broker.buckets.take(key, rate, burst)
