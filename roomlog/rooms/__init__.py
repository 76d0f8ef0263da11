"""Room names and the rules of each room kind. Pure; no I/O.

A room name is ``kind:id``. The kind decides who may subscribe to and publish
in a room (:class:`RoomKind`); :data:`KINDS` lists the kinds this server
serves. An unknown kind or a malformed name is an ``INVALID_ROOM`` error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal
from roomlog.rooms import plain
from roomlog.rooms.audit import Audit
from roomlog.rooms.domain import Domain
from roomlog.rooms.queue import QueueDomain
from roomlog.rooms.repair import RepairDomain

__all__ = ["ACROSS_ROOMS", "DOMAINS", "KINDS", "RoomKind", "RoomName", "parse_room"]

# kind: lowercase word; id: letters, digits and . _ - @, starting with a letter or digit.
_ROOM_RE = re.compile(r"(?P<kind>[a-z][a-z0-9_]{0,31}):(?P<id>[A-Za-z0-9][A-Za-z0-9._@-]{0,127})")


class RoomKind(Protocol):
    """The access rules of one kind of room."""

    def can_subscribe(self, who: Principal, room_id: str) -> bool: ...

    def can_publish(self, who: Principal, room_id: str) -> bool: ...


# Kinds whose rooms are the fold of their commands' events.
DOMAINS: dict[str, Domain[Any]] = {"queue": QueueDomain(), "repair": RepairDomain()}
# Domain kinds whose every room writes to one shared room (each repair ticket to the
# admins' feed repairs:all): their commands commit across rooms, many tickets in one
# transaction, instead of queueing one transaction per ticket on the feed's lock.
ACROSS_ROOMS = frozenset({"repair"})

KINDS: dict[str, RoomKind] = {
    "chat": plain.Chat(),
    "feed": plain.Feed(),
    "user": plain.UserInbox(),
    "repairs": plain.RepairFeed(),
    "admin": plain.AdminRoom(),
    "audit": Audit(),  # what operators did (roomlog.console.audit)
    **DOMAINS,
}


@dataclass(frozen=True, slots=True)
class RoomName:
    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def rules(self) -> RoomKind:
        return KINDS[self.kind]

    def check_subscribe(self, who: Principal) -> None:
        if not self.rules.can_subscribe(who, self.id):
            raise RoomlogError(ErrorCode.FORBIDDEN, f"{who.role} may not subscribe to {self}")

    def check_publish(self, who: Principal) -> None:
        if not self.rules.can_publish(who, self.id):
            raise RoomlogError(ErrorCode.FORBIDDEN, f"{who.role} may not publish in {self}")


def parse_room(value: object) -> RoomName:
    """Validate a room name; raise INVALID_ROOM saying what is wrong."""
    if not isinstance(value, str):
        raise RoomlogError(ErrorCode.INVALID_ROOM, "room must be a string 'kind:id'")
    match = _ROOM_RE.fullmatch(value)
    if match is None:
        raise RoomlogError(
            ErrorCode.INVALID_ROOM,
            f"invalid room name {value[:80]!r}: expected 'kind:id' "
            "(kind a-z0-9_, id A-Za-z0-9._@-, at most 128 characters)",
        )
    kind = match["kind"]
    if kind not in KINDS:
        raise RoomlogError(
            ErrorCode.INVALID_ROOM,
            f"unknown room kind {kind!r}; this server serves {', '.join(sorted(KINDS))}",
        )
    return RoomName(kind, match["id"])
