"""Tokens: signed JWTs (HS256) that name a user and a role. The PyJWT adapter.

A token carries ``sub`` (user id), ``role``, ``exp`` and, when we issue it, a
``jti`` (the token's id, by which it can be banned alone). ``Tokens.verify``
turns one into a :class:`~roomlog.identity.Grant` or raises ``UNAUTHORIZED``
saying why (expired, bad signature, unknown role, a claim that is no usable
value). ``exp`` must be a finite number no further than ``max_ttl`` ahead: a
token a client crafted to expire in the year 10^292 (or never, as a string)
is refused, not trusted forever.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from pathlib import Path
from typing import Any

import jwt

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Grant, Principal, Role

__all__ = ["Tokens", "load_secret"]

logger = logging.getLogger(__name__)

_ALGORITHM = "HS256"
_MAX_USER_LENGTH = 200
_MAX_JTI_LENGTH = 128
DEFAULT_MAX_TTL = 90 * 86400.0  # the largest token lifetime accepted (setting token_max_ttl)


class Tokens:
    def __init__(self, secret: str, *, leeway: float = 5.0,
                 max_ttl: float = DEFAULT_MAX_TTL) -> None:
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 characters")
        self._secret = secret
        self._leeway = leeway
        self._max_ttl = max_ttl

    def issue(self, user: str, role: Role, *, ttl: float = 3600.0,
              now: float | None = None) -> str:
        """A signed token with a fresh ``jti`` (128 random bits)."""
        issued = time.time() if now is None else now
        claims = {"sub": user, "role": role.value, "iat": int(issued),
                  "exp": int(issued + ttl), "jti": secrets.token_urlsafe(16)}
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str, *, now: float | None = None) -> Grant:
        """What the token grants, or UNAUTHORIZED saying why. ``now`` (Unix
        seconds) is for tests; the clock otherwise."""
        try:
            # exp is checked below, where a string, a NaN or 1e300 is refused too.
            claims = jwt.decode(token, self._secret, algorithms=[_ALGORITHM],
                                leeway=self._leeway, options={"require": ["sub", "exp"],
                                                              "verify_exp": False})
        except jwt.InvalidTokenError as exc:
            raise RoomlogError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}") from None
        expires = self._expiry(claims.get("exp"), time.time() if now is None else now)
        user, role = claims.get("sub"), claims.get("role", Role.GUEST.value)
        if not isinstance(user, str) or not 0 < len(user) <= _MAX_USER_LENGTH:
            raise RoomlogError(ErrorCode.UNAUTHORIZED, "token has no usable 'sub'")
        jti = claims.get("jti")
        if jti is not None and not (isinstance(jti, str) and 0 < len(jti) <= _MAX_JTI_LENGTH):
            raise RoomlogError(ErrorCode.UNAUTHORIZED,
                                f"token 'jti' must be a string of 1 to {_MAX_JTI_LENGTH} "
                                "characters")
        try:
            return Grant(Principal(user, Role(role)), expires, jti)
        except ValueError:
            raise RoomlogError(ErrorCode.UNAUTHORIZED, f"unknown role {role!r}") from None

    def _expiry(self, exp: Any, now: float) -> float:
        """``exp`` as Unix seconds: a finite number (not a string, not a boolean),
        not past (with the leeway) and at most ``max_ttl`` ahead."""
        if isinstance(exp, bool) or not isinstance(exp, int | float) or not (
                isinstance(exp, int) or math.isfinite(exp)):
            raise RoomlogError(ErrorCode.UNAUTHORIZED,
                                "token 'exp' must be a number of Unix seconds")
        if exp > now + self._max_ttl:
            raise RoomlogError(ErrorCode.UNAUTHORIZED,
                                f"token 'exp' is too far ahead: tokens may live at most "
                                f"{self._max_ttl:g} s (token_max_ttl)")
        if exp + self._leeway < now:
            raise RoomlogError(ErrorCode.UNAUTHORIZED, "token expired")
        return float(exp)


def load_secret(secret: str, secret_file: str) -> str:
    """The configured secret, or a development secret kept in ``secret_file``."""
    if secret:
        if len(secret) < 16:
            raise SystemExit("ROOMLOG_SECRET must be at least 16 characters")
        return secret
    path = Path(secret_file)
    if path.exists():
        value = path.read_text().strip()
    else:
        value = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
    logger.warning(
        "ROOMLOG_SECRET is not set: using the development secret in %s. "
        "Set ROOMLOG_SECRET in production.", path.resolve())
    return value
