"""Plain rooms: messages are opaque data, the server keeps no state.

Who may do what (also in docs/protocol.md):

=========  =====================================  ===========================
kind       subscribe                              publish
=========  =====================================  ===========================
chat:*     any authenticated principal            any authenticated principal
feed:*     any authenticated principal            staff (dj, technician, admin, service)
user:{id}  that user, admin, service              admin, service (server notices)
repairs:*  repairs:{id}: that technician, admin,  nobody (the server writes
           service; repairs:all: admin, service   every repair event there)
admin:*    admin, service                         admin, service (the server
                                                  writes operator notices)
=========  =====================================  ===========================
"""

from __future__ import annotations

from roomlog.identity import STAFF, Principal, Role

__all__ = ["AdminRoom", "Chat", "Feed", "RepairFeed", "UserInbox"]


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


class RepairFeed:
    """Staff feeds of repair tickets: ``repairs:{technician}`` carries every event of
    the tickets assigned to that technician, ``repairs:all`` of every ticket (for
    admins), so a dashboard needs one subscription, not one per ticket."""

    def can_subscribe(self, who: Principal, room_id: str) -> bool:
        if who.is_operator:
            return True
        return room_id != "all" and who.role is Role.TECHNICIAN and who.user == room_id

    def can_publish(self, who: Principal, room_id: str) -> bool:
        return False


class AdminRoom:
    """Operators' notices (``admin:webhooks``: endpoints disabled after failing past
    the horizon): admins and services only."""

    def can_subscribe(self, who: Principal, room_id: str) -> bool:
        return who.is_operator

    def can_publish(self, who: Principal, room_id: str) -> bool:
        return who.is_operator
