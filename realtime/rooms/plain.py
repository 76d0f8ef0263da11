"""Plain rooms: messages are opaque data, the server keeps no state.

Who may do what (also in docs/protocol.md):

=========  =====================================  ===========================
kind       subscribe                              publish
=========  =====================================  ===========================
chat:*     any authenticated principal            any authenticated principal
feed:*     any authenticated principal            staff (dj, technician, admin, service)
user:{id}  that user, admin, service              admin, service (server notices)
=========  =====================================  ===========================
"""

from __future__ import annotations

from realtime.identity import STAFF, Principal

__all__ = ["Chat", "Feed", "UserInbox"]


class Chat:
    """Everyone talks: a lobby, a support chat."""

    def can_subscribe(self, who: Principal, room_id: str) -> bool:
        return True

    def can_publish(self, who: Principal, room_id: str) -> bool:
        return True


class Feed:
    """Staff broadcast, everyone listens: announcements, a scoreboard."""

    def can_subscribe(self, who: Principal, room_id: str) -> bool:
        return True

    def can_publish(self, who: Principal, room_id: str) -> bool:
        return who.role in STAFF


class UserInbox:
    """One user's private, durable notifications (``user:{user id}``)."""

    def can_subscribe(self, who: Principal, room_id: str) -> bool:
        return who.user == room_id or who.is_operator

    def can_publish(self, who: Principal, room_id: str) -> bool:
        return who.is_operator
