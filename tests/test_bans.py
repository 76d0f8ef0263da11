"""The ban list and the admin API's input (``roomlog/bans.py``): pure, injected times."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from roomlog.bans import Ban, BanList, BanQuery, NewBan, banned_error, parse_ban, parse_query
from roomlog.errors import ErrorCode, ProtocolError
from roomlog.identity import Grant, Principal, Role

NOW = 1_800_000_000_000
ADMIN = Principal("boss", Role.ADMIN)


def ban(ban_id: int, *, user: str | None = "mallory", role: Role | None = None,
        jti: str | None = None, until: int | None = None) -> Ban:
    return Ban(ban_id, None if jti else user, role, jti, "spam", ADMIN, NOW - 1000, until)


def grant(user: str = "mallory", role: Role = Role.GUEST, jti: str | None = "j1") -> Grant:
    return Grant(Principal(user, role), NOW / 1000 + 60, jti)


def test_a_user_ban_covers_every_role_and_token_of_the_user() -> None:
    bans = BanList()
    bans.apply(ban(1), at=0.0, now_ms=NOW)
    assert bans.blocking(grant(), NOW) == ban(1)
    assert bans.blocking(grant(role=Role.CUSTOMER, jti=None), NOW) == ban(1)
    assert bans.blocking(grant(user="alice"), NOW) is None


def test_a_role_ban_and_a_token_ban_cover_only_that() -> None:
    bans = BanList()
    bans.apply(ban(1, role=Role.GUEST), at=0.0, now_ms=NOW)
    bans.apply(ban(2, jti="leaked"), at=0.0, now_ms=NOW)
    assert bans.blocking(grant(), NOW) == ban(1, role=Role.GUEST)
    assert bans.blocking(grant(role=Role.CUSTOMER), NOW) is None
    assert bans.blocking(grant(user="alice", jti="leaked"), NOW) == ban(2, jti="leaked")
    assert bans.blocking(grant(user="alice", jti=None), NOW) is None


def test_bans_end_when_they_expire_or_are_lifted() -> None:
    bans = BanList()
    bans.apply(ban(1, until=NOW + 10), at=0.0, now_ms=NOW)
    assert bans.blocking(grant(), NOW + 9) is not None
    assert bans.blocking(grant(), NOW + 10) is None  # `until` is the first free moment
    assert ban(1, until=NOW + 10).status(NOW + 10) == "expired"
    lifted = replace(ban(2), lifted_ms=NOW, lifted_by=ADMIN)
    bans.apply(ban(2), at=0.0, now_ms=NOW)
    bans.apply(lifted, at=1.0, now_ms=NOW)
    assert bans.blocking(grant(), NOW + 10) is None and lifted.status(NOW) == "lifted"
    assert len(bans) == 1  # the expired one stays until the next reload drops it


def test_a_reload_that_read_the_database_before_a_broadcast_does_not_undo_it() -> None:
    bans = BanList()
    bans.apply(ban(1), at=5.0, now_ms=NOW)  # arrived by broadcast at t=5
    bans.replace([], started=4.0, now_ms=NOW)  # a reload that began at t=4 did not see it
    assert bans.blocking(grant(), NOW) == ban(1)
    lifted = replace(ban(1), lifted_ms=NOW, lifted_by=ADMIN)
    bans.apply(lifted, at=6.0, now_ms=NOW)  # lifted at t=6 ...
    bans.replace([ban(1)], started=5.5, now_ms=NOW)  # ... after a reload read it in force
    assert bans.blocking(grant(), NOW) is None
    bans.replace([], started=7.0, now_ms=NOW)  # a later reload is the truth, and forgets
    bans.replace([ban(1)], started=8.0, now_ms=NOW)
    assert bans.blocking(grant(), NOW) == ban(1)


def test_a_ban_travels_as_json() -> None:
    made = replace(ban(3, role=Role.DJ, until=NOW + 5), lifted_ms=NOW, lifted_by=ADMIN)
    data = made.to_json(NOW)
    assert data == {"id": 3, "user": "mallory", "role": "dj", "jti": None, "reason": "spam",
                    "by": {"user": "boss", "role": "admin"}, "created": NOW - 1000,
                    "until": NOW + 5, "lifted": NOW,
                    "lifted_by": {"user": "boss", "role": "admin"}, "status": "lifted"}
    assert Ban.from_json(data) == made


def test_the_banned_hear_banned_and_until_when_but_not_the_reason() -> None:
    err = banned_error(ban(1, until=NOW + 5))
    assert err.code is ErrorCode.BANNED and err.http_status == 403
    assert err.details == {"until": NOW + 5} and "spam" not in err.message


@pytest.mark.parametrize("body, expected", [
    ({"user": "m"}, NewBan("m", None, None, "", None)),
    ({"user": "m", "role": "guest", "reason": "r"}, NewBan("m", Role.GUEST, None, "r", None)),
    ({"jti": "t", "duration": 1.5}, NewBan(None, None, "t", "", NOW + 1500)),
    ({"user": "m", "until": NOW + 1}, NewBan("m", None, None, "", NOW + 1)),
])
def test_ban_requests(body: dict[str, Any], expected: NewBan) -> None:
    assert parse_ban(body, NOW) == expected


@pytest.mark.parametrize("body", [
    {}, {"user": "a", "jti": "b"}, {"user": ""}, {"user": 1}, {"jti": "j", "role": "dj"},
    {"user": "a", "role": "king"}, {"user": "a", "reason": None}, {"user": "a", "duration": 0},
    {"user": "a", "duration": float("nan")}, {"user": "a", "duration": True},
    {"user": "a", "until": NOW}, {"user": "a", "until": float("inf")},
    {"user": "a", "duration": 1, "until": NOW + 5}, {"user": "a\x00"},
    {"user": "a", "reason": "why\x00"},
])
def test_bad_ban_requests(body: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        parse_ban(body, NOW)


def test_listing_filters() -> None:
    assert parse_query({}) == BanQuery()
    assert parse_query({"user": "m", "status": "active", "before": "9", "limit": "2"}) == (
        BanQuery(user="m", status="active", before=9, limit=2))
    for bad in ({"status": "x"}, {"limit": "0"}, {"limit": "501"}, {"before": "-1"},
                {"before": "nan"}, {"limit": "1e2"}, {"user": "nul\x00"}, {"jti": "j" * 129}):
        with pytest.raises(ProtocolError):
            parse_query(bad)
