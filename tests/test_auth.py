"""Tokens: pure apart from the development secret file."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from roomlog.auth import Tokens, load_secret
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal, Role

SECRET = "s" * 32


def test_issue_and_verify() -> None:
    tokens = Tokens(SECRET)
    now = time.time()
    principal, expires = tokens.verify(tokens.issue("u1", Role.DJ, ttl=60, now=now))
    assert principal == Principal("u1", Role.DJ) and expires == int(now + 60)


@pytest.mark.parametrize("token, says", [
    (Tokens(SECRET).issue("u1", Role.GUEST, ttl=10, now=1000), "expired"),
    (Tokens("other" * 8).issue("u1", Role.GUEST), "invalid"),
    ("not.a.token", "invalid"),
    (jwt.encode({"sub": "u1", "role": "king", "exp": 2**40}, SECRET), "unknown role"),
    (jwt.encode({"sub": "", "exp": 2**40}, SECRET), "sub"),
    (jwt.encode({"sub": "u1"}, SECRET), "invalid"),  # no expiry
    (jwt.encode({"sub": "u1", "exp": 2**40}, SECRET * 2, algorithm="HS512"), "invalid"),
])
def test_rejects_bad_tokens(token: str, says: str) -> None:
    with pytest.raises(RoomlogError, match=says) as err:
        Tokens(SECRET).verify(token)
    assert err.value.code is ErrorCode.UNAUTHORIZED


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError):
        Tokens("short")


def test_development_secret_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    first = load_secret("", str(path))
    assert load_secret("", str(path)) == first and len(first) >= 32
    assert path.stat().st_mode & 0o077 == 0
    assert load_secret("configured-secret-16+", str(path)) == "configured-secret-16+"
    with pytest.raises(SystemExit, match="16 characters"):
        load_secret("short", str(path))
