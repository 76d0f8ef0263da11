"""Tokens: pure apart from the development secret file."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from roomlog.auth import Tokens, load_secret
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Grant, Principal, Role

SECRET = "s" * 32


def test_issue_and_verify() -> None:
    tokens = Tokens(SECRET)
    now = time.time()
    grant = tokens.verify(tokens.issue("u1", Role.DJ, ttl=60, now=now))
    assert grant.principal == Principal("u1", Role.DJ) and grant.expires == int(now + 60)


SOON = int(time.time()) + 86400  # ahead for the whole run (collected at its start)


@pytest.mark.parametrize("token, says", [
    (Tokens(SECRET).issue("u1", Role.GUEST, ttl=10, now=1000), "expired"),
    (Tokens("other" * 8).issue("u1", Role.GUEST), "invalid"),
    ("not.a.token", "invalid"),
    (jwt.encode({"sub": "u1", "role": "king", "exp": SOON}, SECRET), "unknown role"),
    (jwt.encode({"sub": "", "exp": SOON}, SECRET), "sub"),
    (jwt.encode({"sub": "u1"}, SECRET), "invalid"),  # no expiry
    (jwt.encode({"sub": "u1", "exp": SOON}, SECRET * 2, algorithm="HS512"), "invalid"),
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


NOW = float(int(time.time()))


@pytest.mark.parametrize("exp, says", [
    (str(int(NOW) + 60), "exp"),  # a string that looks like a time
    ("soon", "exp"),
    (1e300, "exp"),
    (2**64, "exp"),
    (2**63, "exp"),
    (float("nan"), "exp"),
    (float("inf"), "exp"),
    ([int(NOW) + 60], "exp"),
    (True, "exp"),
    (None, "exp"),
    (int(NOW) + 91 * 86400, "too far"),  # beyond the largest lifetime (90 days)
])
def test_an_expiry_that_is_no_usable_time_is_refused(exp: object, says: str) -> None:
    token = jwt.encode({"sub": "u1", "exp": exp}, SECRET, algorithm="HS256")
    with pytest.raises(RoomlogError, match=says) as err:
        Tokens(SECRET).verify(token, now=NOW)
    assert err.value.code is ErrorCode.UNAUTHORIZED


def test_the_largest_lifetime_is_a_setting() -> None:
    token = jwt.encode({"sub": "u1", "exp": int(NOW) + 3600}, SECRET, algorithm="HS256")
    assert Tokens(SECRET).verify(token, now=NOW).expires == int(NOW) + 3600
    with pytest.raises(RoomlogError, match="too far"):
        Tokens(SECRET, max_ttl=600).verify(token, now=NOW)
    fractional = jwt.encode({"sub": "u1", "exp": NOW + 60.5}, SECRET, algorithm="HS256")
    assert Tokens(SECRET).verify(fractional, now=NOW).expires == NOW + 60.5


def test_issued_tokens_carry_a_fresh_jti_and_verify_returns_it() -> None:
    tokens = Tokens(SECRET)
    first = tokens.verify(tokens.issue("u1", Role.GUEST, now=NOW), now=NOW)
    second = tokens.verify(tokens.issue("u1", Role.GUEST, now=NOW), now=NOW)
    assert first.jti and second.jti and first.jti != second.jti and len(first.jti) >= 22
    bare = jwt.encode({"sub": "u1", "exp": int(NOW) + 60}, SECRET, algorithm="HS256")
    assert tokens.verify(bare, now=NOW).jti is None  # a token without jti: banned per user only
    for jti in (5, "", "j" * 129, ["x"]):
        bad = jwt.encode({"sub": "u1", "exp": int(NOW) + 60, "jti": jti}, SECRET,
                         algorithm="HS256")
        with pytest.raises(RoomlogError, match=r"(?i)jti|JWT ID"):
            tokens.verify(bad, now=NOW)


def _judged(tokens: Tokens, token: str, *, general: bool) -> object:
    """What verify answers, through the minted-token path or PyJWT's alone."""
    if general:
        tokens._minted_claims = lambda token, now: None  # type: ignore[method-assign]
    try:
        return tokens.verify(token)
    except RoomlogError as err:
        return err.code


def test_the_fast_path_for_minted_tokens_judges_as_pyjwt_does() -> None:
    now = int(time.time())
    good = {"sub": "u1", "role": "dj", "iat": now, "exp": now + 60, "jti": "j"}
    issued = Tokens(SECRET).issue("u2", Role.GUEST)
    head, body, sig = issued.split(".")
    cases = [
        issued,
        jwt.encode(good, SECRET, algorithm="HS256"),
        jwt.encode(good | {"nbf": now + 600}, SECRET, algorithm="HS256"),  # not yet valid
        jwt.encode(good | {"aud": "x"}, SECRET, algorithm="HS256"),  # an audience we never set
        jwt.encode(good | {"iat": now + 600}, SECRET, algorithm="HS256"),  # issued in the future
        jwt.encode(good | {"iat": "yesterday"}, SECRET, algorithm="HS256"),
        jwt.encode(good | {"exp": now - 600}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "u1", "iat": now}, SECRET, algorithm="HS256"),  # no exp
        jwt.encode(good, "t" * 32, algorithm="HS256"),  # another secret
        jwt.encode(good, SECRET, algorithm="HS512"),
        jwt.encode(good, SECRET, algorithm="HS256", headers={"kid": "nope"}),
        jwt.encode(good, SECRET, algorithm="HS256", headers={"crit": ["b64"]}),
        f"{head}.{body}.{sig[:-2]}AA",  # signature tampered
        f"{head}.{body[:-2]}xx.{sig}",  # claims tampered
        f"{head}.{body}",
        "not a token",
    ]
    for token in cases:
        fast, general = _judged(Tokens(SECRET), token, general=False), _judged(
            Tokens(SECRET), token, general=True)
        assert fast == general, token
    assert isinstance(_judged(Tokens(SECRET), issued, general=False), Grant)
