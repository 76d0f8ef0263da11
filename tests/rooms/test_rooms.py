"""Room names and the plain kinds' permission table: pure."""

from __future__ import annotations

import pytest

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal, Role
from roomlog.rooms import parse_room

GUEST = Principal("g1", Role.GUEST)
DJ = Principal("d1", Role.DJ)
ADMIN = Principal("a1", Role.ADMIN)
SERVICE = Principal("backend", Role.SERVICE)


def test_parses_kind_and_id() -> None:
    room = parse_room("queue:club42-set1".replace("queue", "chat"))
    assert (room.kind, room.id, str(room)) == ("chat", "club42-set1", "chat:club42-set1")
    assert parse_room("user:someone@example.com").id == "someone@example.com"


def test_unknown_kind_names_the_served_kinds() -> None:
    served = "admin, audit, chat, feed, queue, repair, repairs, user"
    with pytest.raises(RoomlogError, match=served) as err:
        parse_room("nope:x")
    assert err.value.code is ErrorCode.INVALID_ROOM


@pytest.mark.parametrize("who, room, subscribe, publish", [
    (GUEST, "chat:lobby", True, True),
    (GUEST, "feed:news", True, False),
    (DJ, "feed:news", True, True),
    (GUEST, "user:g1", True, False),
    (GUEST, "user:other", False, False),
    (ADMIN, "user:g1", True, True),
    (SERVICE, "user:g1", True, True),
    (DJ, "user:g1", False, False),
    (GUEST, "admin:webhooks", False, False),
    (DJ, "admin:webhooks", False, False),
    (ADMIN, "admin:webhooks", True, True),
    (SERVICE, "admin:webhooks", True, True),
])
def test_permission_table(who: Principal, room: str, subscribe: bool, publish: bool) -> None:
    name = parse_room(room)
    assert name.rules.can_subscribe(who, name.id) is subscribe
    assert name.rules.can_publish(who, name.id) is publish
    if not publish:
        with pytest.raises(RoomlogError) as err:
            name.check_publish(who)
        assert err.value.code is ErrorCode.FORBIDDEN
