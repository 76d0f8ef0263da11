"""Tokens: signed JWTs that name a user and a role. The PyJWT adapter.

A token carries ``sub`` (user id), ``role``, ``exp`` and, when we issue it, a
``jti`` (the token's id, by which it can be banned alone). ``Tokens.verify``
turns one into a :class:`~roomlog.identity.Grant` or raises ``UNAUTHORIZED``
saying why (expired, bad signature, unknown key, unknown role, a role its key
may not mint, a claim that is no usable value). ``exp`` must be a finite number
no further than ``max_ttl`` ahead: a token a client crafted to expire in the
year 10^292 (or never, as a string) is refused, not trusted forever.

Keys: a token whose header names a ``kid`` is verified with that key of the
backends file (``roomlog.backends``: HS256 secrets, RS256/ES256 public keys in
PEM or JWKS), with that key's algorithm only, and its role must be one the key
may mint. A token without ``kid`` is verified with ``ROOMLOG_SECRET`` (HS256),
the default key, which mints ``secret_roles`` (every role unless limited).

Without ``ROOMLOG_SECRET`` every process uses the development secret of the
directory it runs in (``.roomlog-secret``, made on first use). A token minted in
another directory then carries another signature: the refusal says so, and the
server logs (once) which file it signs with, so a newcomer learns where to mint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson

from roomlog.backends import KeySpec
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Grant, Principal, Role
from roomlog.protocol import storable_text

__all__ = ["DEV_SECRET_HINT", "Secret", "Tokens", "default_roles", "load_secret", "load_tokens",
           "read_secret"]

logger = logging.getLogger(__name__)

_ALGORITHM = "HS256"
_MINTED_CLAIMS = frozenset({"sub", "role", "iat", "exp", "jti"})  # what Tokens.issue writes
_MAX_USER_LENGTH = 200
_MAX_JTI_LENGTH = 128
DEFAULT_MAX_TTL = 90 * 86400.0  # the largest token lifetime accepted (setting token_max_ttl)

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


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None  # None: the default key (ROOMLOG_SECRET)
    algorithm: str
    verifier: Any  # what PyJWT verifies with: the secret, or a public key object
    roles: frozenset[Role]
    signs: bool  # the server holds the secret, so it can mint with this key


def _key(spec: KeySpec) -> _Key:
    """A backends-file key made ready for PyJWT (the file was checked already)."""
    if isinstance(spec.material, dict):  # a JWK
        verifier = jwt.PyJWK(spec.material, algorithm=spec.algorithm).key
    elif spec.algorithm == _ALGORITHM:
        verifier = spec.material
    else:
        try:
            verifier = jwt.get_algorithm_by_name(spec.algorithm).prepare_key(spec.material)
        except (ValueError, TypeError, jwt.InvalidKeyError) as exc:
            raise ValueError(f"key {spec.kid!r} is not an {spec.algorithm} public key "
                             f"in PEM: {exc}") from None
    return _Key(spec.kid, spec.algorithm, verifier, spec.roles, spec.algorithm == _ALGORITHM)


class Tokens:
    """Verifies tokens with the default key and the keys of the backends file."""

    def __init__(self, secret: str, *, keys: Iterable[KeySpec] = (),
                 secret_roles: Iterable[Role] | None = None, leeway: float = 5.0,
                 max_ttl: float = DEFAULT_MAX_TTL, dev_file: Path | None = None) -> None:
        """``dev_file``: the development secret's file, when that is the default key:
        refused signatures then say what to do, and the first one is logged with
        the path."""
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 characters")
        roles = frozenset(Role) if secret_roles is None else frozenset(secret_roles)
        self._default = _Key(None, _ALGORITHM, secret, roles, True)
        self._keys = {spec.kid: _key(spec) for spec in keys}
        self._leeway = leeway
        self._max_ttl = max_ttl
        self._dev_file = dev_file
        self._told = False
        #: header segment -> (key, secret bytes) for the HS256 tokens this server mints
        #: (see _minted_claims); a handful of entries: one per key
        self._minted: dict[str, tuple[_Key, bytes]] = {}

    def issue(self, user: str, role: Role, *, ttl: float = 3600.0,
              now: float | None = None, kid: str | None = None) -> str:
        """A token with a fresh ``jti`` (128 random bits), signed with the default key
        or with the HS256 key ``kid`` (ValueError when that key is not one the server
        can sign with, or may not mint ``role``)."""
        key = self._default if kid is None else self._keys.get(kid)
        if key is None or not key.signs:
            raise ValueError(f"no HS256 key {kid!r} in the backends file to sign with")
        if role not in key.roles:
            raise ValueError(f"key {kid or '(default)'} may not mint {role.value} tokens; "
                             f"it mints {', '.join(sorted(key.roles))}")
        issued = time.time() if now is None else now
        claims = {"sub": user, "role": role.value, "iat": int(issued),
                  "exp": int(issued + ttl), "jti": secrets.token_urlsafe(16)}
        headers = None if kid is None else {"kid": kid}
        return jwt.encode(claims, key.verifier, algorithm=_ALGORITHM, headers=headers)

    def _key_of(self, token: str) -> _Key:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise RoomlogError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}") from None
        if kid is None:
            if not self._default.roles:
                raise RoomlogError(ErrorCode.UNAUTHORIZED,
                                    "tokens without 'kid' are not accepted here")
            return self._default
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise RoomlogError(ErrorCode.UNAUTHORIZED, f"unknown key id {str(kid)[:80]!r}")
        return key

    def verify(self, token: str, *, now: float | None = None) -> Grant:
        """What the token grants, or UNAUTHORIZED saying why. ``now`` (Unix
        seconds) is for tests; the clock otherwise."""
        at = time.time() if now is None else now
        minted = self._minted_claims(token, at)
        if minted is not None:
            key, claims = minted
        else:
            key, claims = self._decoded(token)
        return self._grant(key, claims, at)

    def _minted_claims(self, token: str, now: float) -> tuple[_Key, dict[str, Any]] | None:
        """The key and claims of a token shaped exactly as :meth:`issue` makes them
        (header ``alg`` HS256, ``typ`` JWT, maybe ``kid``; only our claims), its
        signature checked here: a reconnect storm verifies one token per connection,
        and PyJWT's general path costs ~8 times as much. None for any other token, and
        for a bad signature: PyJWT then judges it and says why."""
        head, _, rest = token.partition(".")
        body, _, signature = rest.partition(".")
        entry = self._minted.get(head)
        if entry is None:
            entry = self._minted_key(head)
            if entry is None:
                return None
        key, secret = entry
        try:
            sig = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
            expected = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(sig, expected):
                return None
            claims = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, binascii.Error, orjson.JSONDecodeError):
            return None
        if (not isinstance(claims, dict) or not _MINTED_CLAIMS.issuperset(claims)
                or "sub" not in claims or "exp" not in claims):
            return None
        iat = claims.get("iat")
        if iat is not None and (not isinstance(iat, int) or isinstance(iat, bool)
                                or iat > now + self._leeway):
            return None  # PyJWT's rules on iat, and its messages
        return key, claims

    def _minted_key(self, head: str) -> tuple[_Key, bytes] | None:
        try:
            header = orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        except (ValueError, binascii.Error, orjson.JSONDecodeError):
            return None
        if not isinstance(header, dict) or header.get("alg") != _ALGORITHM or (
                header.get("typ") != "JWT") or not {"alg", "typ", "kid"}.issuperset(header):
            return None
        kid = header.get("kid")
        key = self._default if kid is None else self._keys.get(kid) if isinstance(
            kid, str) else None
        if key is None or key.algorithm != _ALGORITHM or not isinstance(key.verifier, str | bytes):
            return None
        if kid is None and not key.roles:
            return None
        secret = key.verifier.encode() if isinstance(key.verifier, str) else key.verifier
        if len(self._minted) < 64:
            self._minted[head] = (key, secret)
        return key, secret

    def _decoded(self, token: str) -> tuple[_Key, dict[str, Any]]:
        key = self._key_of(token)
        try:
            # exp is checked below, where a string, a NaN or 1e300 is refused too.
            claims = jwt.decode(token, key.verifier, algorithms=[key.algorithm],
                                leeway=self._leeway, options={"require": ["sub", "exp"],
                                                              "verify_exp": False})
        except jwt.InvalidSignatureError as exc:
            raise self._bad_signature(exc, key) from None
        except jwt.InvalidTokenError as exc:
            raise RoomlogError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}") from None
        return key, claims

    def _grant(self, key: _Key, claims: dict[str, Any], now: float) -> Grant:
        expires = self._expiry(claims.get("exp"), now)
        user, role = claims.get("sub"), claims.get("role", Role.GUEST.value)
        # The user id is stored as the author of what it writes: text a column holds.
        if (not isinstance(user, str) or not 0 < len(user) <= _MAX_USER_LENGTH
                or not storable_text(user)):
            raise RoomlogError(ErrorCode.UNAUTHORIZED, "token has no usable 'sub'")
        jti = claims.get("jti")
        if jti is not None and not (isinstance(jti, str) and 0 < len(jti) <= _MAX_JTI_LENGTH
                                    and storable_text(jti)):
            raise RoomlogError(ErrorCode.UNAUTHORIZED,
                                f"token 'jti' must be a string of 1 to {_MAX_JTI_LENGTH} "
                                "characters")
        try:
            principal = Principal(user, Role(role))
        except ValueError:
            raise RoomlogError(ErrorCode.UNAUTHORIZED, f"unknown role {role!r}") from None
        if principal.role not in key.roles:
            raise RoomlogError(ErrorCode.UNAUTHORIZED,
                                f"key {key.kid or '(default)'} may not mint "
                                f"{principal.role.value} tokens")
        return Grant(principal, expires, jti)

    def _bad_signature(self, exc: Exception, key: _Key) -> RoomlogError:
        if self._dev_file is None or key is not self._default:
            return RoomlogError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}")
        if not self._told:
            self._told = True
            logger.warning("a token signed with another secret was refused. This server "
                           "signs with the development secret in %s: mint tokens with "
                           "`roomlog token` run in %s, or set the same ROOMLOG_SECRET for "
                           "both (logged once)", self._dev_file, self._dev_file.parent)
        return RoomlogError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}. {DEV_SECRET_HINT}")

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


def default_roles(text: str) -> frozenset[Role] | None:
    """``ROOMLOG_SECRET_ROLES``: None for every role (empty), no role (``none``), or
    the comma-separated roles; SystemExit naming an unknown one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        return None
    if names == ["none"]:
        return frozenset()
    try:
        return frozenset(Role(name) for name in names)
    except ValueError as exc:
        raise SystemExit(f"ROOMLOG_SECRET_ROLES: {exc}; roles are "
                         f"{', '.join(r.value for r in Role)} (or 'none')") from None


def load_tokens(secret: str, secret_file: str, secret_roles: str,
                keys: Iterable[KeySpec], *, max_ttl: float = DEFAULT_MAX_TTL,
                found: Secret | None = None) -> Tokens:
    """Tokens of the settings and the backends file's keys; SystemExit saying what
    is wrong with a key that PyJWT cannot use."""
    try:
        found = found or read_secret(secret, secret_file)
        return Tokens(found.value, keys=keys, secret_roles=default_roles(secret_roles),
                      max_ttl=max_ttl, dev_file=found.dev_file)
    except ValueError as exc:
        raise SystemExit(f"backends file: {exc}") from None


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
