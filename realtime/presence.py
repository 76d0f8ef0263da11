"""Presence: who is in a room, across every instance.

A connection is *in* a room while it subscribes to it (a WebSocket or an SSE
stream). Each has an id unique in the cluster (``{instance}.{n}``). Entries
live in the bus's shared store (Redis, or the process for the memory bus),
so any instance can list a room. The entries of an instance that dies
expire after ``presence_ttl`` (see ``realtime.bus``).

Subscribers that ask for it (``"presence": true`` on ``subscribe``) get a
``presence_diff`` frame for each connection that joins or leaves. These
frames are not part of the room's log: they carry no seq, are not replayed,
and a client that reconnects asks for the current list instead.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from realtime.bus import Bus
from realtime.hub import Hub
from realtime.identity import Principal

__all__ = ["Presence", "summarize"]


class Presence:
    def __init__(self, bus: Bus, hub: Hub) -> None:
        self._bus = bus
        self._hub = hub
        self._ids = itertools.count(1)

    def new_conn(self) -> str:
        """An id for a new connection, unique across instances."""
        return f"{self._bus.instance}.{next(self._ids)}"

    def join(self, room: str, conn: str, who: Principal) -> None:
        entry = {"user": who.user, "role": who.role.value, "since": int(time.time() * 1000)}
        self._bus.presence_join(room, conn, entry)
        self._change(room, "join", conn, who)

    def leave(self, room: str, conn: str, who: Principal) -> None:
        self._bus.presence_leave(room, conn)
        self._change(room, "leave", conn, who)

    def _change(self, room: str, event: str, conn: str, who: Principal) -> None:
        payload = {"presence": event, "conn": conn, "user": who.user, "role": who.role.value}
        self._bus.signal(room, payload)  # the other instances
        self.on_signal(room, payload)  # this one

    def on_signal(self, room: str, payload: dict[str, Any]) -> None:
        """A join or leave, from this instance or another: notify who asked."""
        event = payload.get("presence")
        if event not in ("join", "leave"):
            return
        member = {k: payload.get(k) for k in ("user", "role", "conn")}
        self._hub.notify(room, {"type": "presence_diff", "room": room,
                                "joins": [member] if event == "join" else [],
                                "leaves": [member] if event == "leave" else []})

    async def list(self, room: str) -> dict[str, Any]:
        """The room's members across instances; Unavailable if the store fails."""
        return summarize(room, await self._bus.presence(room))


def summarize(room: str, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per user: role and number of connections (several tabs or devices)."""
    users: dict[str, dict[str, Any]] = {}
    for entry in entries.values():
        user = users.setdefault(entry["user"], {"user": entry["user"], "role": entry["role"],
                                                "connections": 0})
        user["connections"] += 1
    return {"room": room, "users": sorted(users.values(), key=lambda u: u["user"]),
            "connections": len(entries)}
