"""``audit:*`` rooms: what operators did, written by the server. Pure.

``audit:moderation`` holds one message per moderation action (a ban, its
lifting, a disconnect, a room reset, a queue closed), authored by the operator
who did it (``roomlog.console.audit``). Admins and services read it; nobody
publishes in it, so the record is the server's alone.
"""

from __future__ import annotations

from roomlog.identity import Principal

__all__ = ["Audit"]


class Audit:
    def can_subscribe(self, who: Principal, room_id: str) -> bool:
        return who.is_operator

    def can_publish(self, who: Principal, room_id: str) -> bool:
        return False
