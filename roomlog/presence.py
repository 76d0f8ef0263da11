"""Presence: who is in a room, across every instance.

A connection is *in* a room while it subscribes to it (a WebSocket or an SSE
stream). Each has an id unique in the cluster (``{instance}.{n}``). Entries
live in the bus's shared store (Redis, or the process for the memory bus),
so any instance can list a room. The entries of an instance that dies
expire after ``presence_ttl`` (see ``roomlog.bus``).

Subscribers that ask for it (``"presence": true`` on ``subscribe``) first get
the room's list (a ``presence`` frame), then a ``presence_diff`` frame for each
connection that joins or leaves. The list is read only once the bus carries the
room's signals, so no join falls between the list and the first diff; it is
sent again whenever the bus re-establishes the room's subscription (after a
Redis outage the diffs of the outage are gone). These frames are not part of
the room's log: they carry no seq and are not replayed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from roomlog.bus import Bus
from roomlog.errors import RoomlogError
from roomlog.hub import Hub, Subscription
from roomlog.identity import Principal

__all__ = ["Presence", "summarize"]

logger = logging.getLogger(__name__)


class Presence:
    def __init__(self, bus: Bus, hub: Hub, carried: Callable[[str], bool]) -> None:
        self._bus = bus
        self._hub = hub
        self._carried = carried  # does the bus carry the room's signals yet?
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

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

    def watching(self, sub: Subscription) -> None:
        """``sub`` asked for notices: send it the list now if the bus already carries
        the room; otherwise ``on_subscribed`` sends it to everyone when it does."""
        if self._carried(sub.room):
            self._spawn(self._send_list(sub.room, sub.send))

    def on_subscribed(self, room: str) -> None:
        """The bus (re)subscribed the room: the list for everyone who watches it."""
        if self._hub.watches_presence(room):
            self._spawn(self._send_list(room, lambda frame: self._hub.notify(room, frame)))

    async def _send_list(self, room: str, send: Callable[[dict[str, Any]], None]) -> None:
        try:
            send({"type": "presence"} | await self.list(room))
        except RoomlogError as err:  # Redis down: the list comes when it is back
            logger.debug("presence list of %s not sent: %s", room, err.message)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
