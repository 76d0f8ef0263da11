"""Moderation recorded: every ban, lifted ban, disconnect, room reset and queue
closed goes into ``audit:moderation`` (an ``audit`` room: operators read it,
nobody publishes in it) as one message authored by the operator who did it::

    {"action": "ban", "by": {"user", "role"}, "target": {...}, "reason": ...,
     "details": {...}}

``action`` is one of :data:`ACTIONS`. The entry is written after the action
took effect: an action that failed is not recorded. When the entry cannot be
written (the database failed between the two) the action stands, the failure
is logged, and the endpoint answers ``"audit_seq": null`` so the console says so.

An ``audit`` room cannot be reset (:func:`check_resettable`): the trail would end with
no record of who ended it. Retention still applies to it like to every room.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal
from roomlog.log import Append
from roomlog.services import Services

__all__ = ["ACTIONS", "AUDIT_ROOM", "check_resettable", "record"]

logger = logging.getLogger(__name__)

AUDIT_ROOM = "audit:moderation"
ACTIONS = frozenset({"ban", "unban", "disconnect", "reset", "close_queue"})


async def record(s: Services, who: Principal, action: str, target: dict[str, Any], *,
                 reason: str | None = None, details: dict[str, Any] | None = None) -> int | None:
    """Append the entry; its seq, or None if it could not be stored (logged)."""
    assert action in ACTIONS, action
    entry = {"action": action, "by": {"user": who.user, "role": who.role.value},
             "target": target, "reason": reason, "details": details or {}}
    try:
        appended = await s.publisher.publish(AUDIT_ROOM, Append(who.user, orjson.dumps(entry)))
    except RoomlogError as err:
        logger.error("moderation by %s not recorded in %s (%s): %s", who.user, AUDIT_ROOM,
                     err.message, orjson.dumps(entry).decode()[:500])
        return None
    return appended.seq


def check_resettable(room: str) -> None:
    """FORBIDDEN for an ``audit`` room: nobody wipes the record of what operators did."""
    if room.startswith("audit:"):
        raise RoomlogError(ErrorCode.FORBIDDEN, f"{room} is the moderation record: it cannot "
                            "be reset (retention trims it like any room)")
