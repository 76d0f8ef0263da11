"""Tokens: signed JWTs (HS256) that name a user and a role. The PyJWT adapter.

A token carries ``sub`` (user id), ``role`` and ``exp``. ``Tokens.verify``
turns one into a :class:`~roomlog.identity.Principal` or raises
``UNAUTHORIZED`` saying why (expired, bad signature, unknown role).

Without ``ROOMLOG_SECRET`` every process uses the development secret of the
directory it runs in (``.roomlog-secret``, made on first use). A token minted in
another directory then carries another signature: the refusal says so, and the
server logs (once) which file it signs with, so a newcomer learns where to mint.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal, Role

__all__ = ["DEV_SECRET_HINT", "Secret", "Tokens", "load_secret", "read_secret"]

logger = logging.getLogger(__name__)

_ALGORITHM = "HS256"
_MAX_USER_LENGTH = 200

#: Added to a refused signature while the development secret is in use.
DEV_SECRET_HINT = (
    "This server signs with a development secret (ROOMLOG_SECRET is not set), kept in "
    "the directory it runs in: run `roomlog token` in that directory, or give the "
    "server and `roomlog token` the same ROOMLOG_SECRET. The server's log names the file."
)


@dataclass(frozen=True)
class Secret:
    """The token secret and where it came from."""

    value: str
    dev_file: Path | None = None  # the development secret's file; None: ROOMLOG_SECRET
    created: bool = False  # the development secret was made just now

    def warn(self) -> None:
        """Log that the development secret is in use (a server calls this at start)."""
        if self.dev_file is not None:
            logger.warning("ROOMLOG_SECRET is not set: using the development secret in %s%s. "
                           "Tokens must be minted with `roomlog token` in %s. Set "
                           "ROOMLOG_SECRET in production.", self.dev_file,
                           " (created now)" if self.created else "", self.dev_file.parent)


class Tokens:
    def __init__(self, secret: str, *, leeway: float = 5.0, dev_file: Path | None = None
                 ) -> None:
        """``dev_file``: the development secret's file, when that is the secret: refused
        signatures then say what to do, and the first one is logged with the path."""
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 characters")
        self._secret = secret
        self._leeway = leeway
        self._dev_file = dev_file
        self._told = False

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
        except jwt.InvalidSignatureError as exc:
            raise self._bad_signature(exc) from None
        except jwt.InvalidTokenError as exc:
            raise RoomlogError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}") from None
        user, role = claims.get("sub"), claims.get("role", Role.GUEST.value)
        if not isinstance(user, str) or not 0 < len(user) <= _MAX_USER_LENGTH:
            raise RoomlogError(ErrorCode.UNAUTHORIZED, "token has no usable 'sub'")
        try:
            return Principal(user, Role(role)), float(claims["exp"])
        except ValueError:
            raise RoomlogError(ErrorCode.UNAUTHORIZED, f"unknown role {role!r}") from None


    def _bad_signature(self, exc: Exception) -> RoomlogError:
        if self._dev_file is None:
            return RoomlogError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}")
        if not self._told:
            self._told = True
            logger.warning("a token signed with another secret was refused. This server "
                           "signs with the development secret in %s: mint tokens with "
                           "`roomlog token` run in %s, or set the same ROOMLOG_SECRET for "
                           "both (logged once)", self._dev_file, self._dev_file.parent)
        return RoomlogError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}. {DEV_SECRET_HINT}")


def read_secret(secret: str, secret_file: str) -> Secret:
    """The configured secret, or the development secret kept in ``secret_file``
    (made now if there is none); logs nothing."""
    if secret:
        if len(secret) < 16:
            raise SystemExit("ROOMLOG_SECRET must be at least 16 characters")
        return Secret(secret)
    path = Path(secret_file).resolve()
    if path.exists():
        return Secret(path.read_text().strip(), path)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return Secret(value, path, created=True)


def load_secret(secret: str, secret_file: str) -> str:
    """The configured secret, or a development secret kept in ``secret_file``
    (with a warning saying so)."""
    found = read_secret(secret, secret_file)
    found.warn()
    return found.value
