"""Tokens: signed JWTs (HS256) that name a user and a role. The PyJWT adapter.

A token carries ``sub`` (user id), ``role`` and ``exp``. ``Tokens.verify``
turns one into a :class:`~roomlog.identity.Principal` or raises
``UNAUTHORIZED`` saying why (expired, bad signature, unknown role).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

import jwt

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal, Role
from roomlog.protocol import storable_text

__all__ = ["Tokens", "load_secret"]

logger = logging.getLogger(__name__)

_ALGORITHM = "HS256"
_MAX_USER_LENGTH = 200


class Tokens:
    def __init__(self, secret: str, *, leeway: float = 5.0) -> None:
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 characters")
        self._secret = secret
        self._leeway = leeway

    def issue(self, user: str, role: Role, *, ttl: float = 3600.0,
              now: float | None = None) -> str:
        issued = time.time() if now is None else now
        claims = {"sub": user, "role": role.value, "iat": int(issued),
                  "exp": int(issued + ttl)}
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> tuple[Principal, float]:
        """The token's principal and its expiry (Unix seconds), or UNAUTHORIZED."""
        try:
            claims = jwt.decode(token, self._secret, algorithms=[_ALGORITHM],
                                leeway=self._leeway, options={"require": ["sub", "exp"]})
        except jwt.ExpiredSignatureError:
            raise RoomlogError(ErrorCode.UNAUTHORIZED, "token expired") from None
        except jwt.InvalidTokenError as exc:
            raise RoomlogError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}") from None
        user, role = claims.get("sub"), claims.get("role", Role.GUEST.value)
        # The user id is stored as the author of what it writes: text a column holds.
        if (not isinstance(user, str) or not 0 < len(user) <= _MAX_USER_LENGTH
                or not storable_text(user)):
            raise RoomlogError(ErrorCode.UNAUTHORIZED, "token has no usable 'sub'")
        try:
            return Principal(user, Role(role)), float(claims["exp"])
        except ValueError:
            raise RoomlogError(ErrorCode.UNAUTHORIZED, f"unknown role {role!r}") from None


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
