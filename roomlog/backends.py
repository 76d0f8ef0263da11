"""The backends file: each backend's token keys and command hooks.

``ROOMLOG_BACKENDS_FILE`` names a JSON file written by the operator
(``docs/backends.md`` documents it with examples)::

    {"backends": [
      {"name": "songapp",
       "keys": [
         {"kid": "songapp-1", "alg": "HS256", "secret": {"env": "SONGAPP_KEY"},
          "roles": ["guest", "dj"]},
         {"kid": "songapp-rsa", "alg": "RS256", "public_key": {"file": "songapp.pem"},
          "roles": ["guest"]},
         {"jwks": {"file": "songapp-jwks.json"}, "roles": ["guest"]}],
       "hooks": [
         {"on": ["queue:request.submit", "chat:publish"],
          "url": "https://songapp.internal/roomlog/hook",
          "secret": {"env": "SONGAPP_HOOK_SECRET"}, "timeout": 3, "fail_open": false}]}]}

A secret, a PEM or a JWKS is given inline, as ``{"env": NAME}`` (an environment
variable) or as ``{"file": path}`` (relative to the backends file). Every mistake
(an unknown field, a duplicate ``kid``, two hooks for one command, an HS256 secret
shorter than 32 characters, a hook secret that is not ``whsec_`` base64) is a
:class:`BackendsError` naming where it is: ``roomlog serve`` refuses to start.
Reading the file is the only I/O here; the keys become PyJWT keys in
``roomlog.auth``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from roomlog.identity import Role
from roomlog.rooms import DOMAINS, KINDS
from roomlog.signing import SignatureError, sign

__all__ = ["ALGORITHMS", "Backends", "BackendsError", "HookSpec", "KeySpec", "load_backends",
           "parse_backends", "read_backends"]

ALGORITHMS = ("HS256", "RS256", "ES256")
MIN_HS256_SECRET = 32  # characters: an HMAC-SHA256 key as long as its hash (RFC 7518)
MAX_HOOK_TIMEOUT = 60.0
_MAX_KID = 128
_PUBLISH = "publish"  # a hook's command name for a plain room's publish


class BackendsError(ValueError):
    """The backends file is wrong; the message says where and what."""


@dataclass(frozen=True, slots=True)
class KeySpec:
    """A key that verifies tokens carrying its ``kid``, and the roles it may mint."""

    kid: str
    algorithm: str  # HS256, RS256 or ES256
    material: str | dict[str, Any]  # the HS256 secret, a PEM public key, or a JWK
    roles: frozenset[Role]
    backend: str


@dataclass(frozen=True, slots=True)
class HookSpec:
    """A command hook: the commands it decides (``(kind, name)``; ``publish`` for a
    plain room's publishes) and where and how to ask."""

    backend: str
    on: frozenset[tuple[str, str]]
    url: str
    secrets: tuple[str, ...]  # whsec_ secrets; several while one rotates
    timeout: float | None  # None: the hook_timeout setting
    fail_open: bool


@dataclass(frozen=True, slots=True)
class Backends:
    keys: tuple[KeySpec, ...] = ()
    hooks: tuple[HookSpec, ...] = ()


def load_backends(path: str, env: Mapping[str, str] | None = None) -> Backends:
    """The backends file at ``path`` (nothing when ``path`` is empty)."""
    if not path:
        return Backends()
    file = Path(path)
    try:
        data = orjson.loads(file.read_bytes())
    except OSError as exc:
        raise BackendsError(f"cannot read the backends file {path}: {exc}") from None
    except orjson.JSONDecodeError as exc:
        raise BackendsError(f"the backends file {path} is not JSON: {exc}") from None
    return parse_backends(data, base=file.resolve().parent,
                          env=os.environ if env is None else env)


def read_backends(path: str) -> Backends:
    """:func:`load_backends` for the server and the CLI: SystemExit saying what is
    wrong, so nothing starts on a file it misreads."""
    try:
        return load_backends(path)
    except BackendsError as exc:
        raise SystemExit(str(exc)) from None


class _Reader:
    """Walks the file's data, naming the place of every mistake."""

    def __init__(self, base: Path, env: Mapping[str, str]) -> None:
        self.base = base
        self.env = env

    def fail(self, where: str, what: str) -> BackendsError:
        return BackendsError(f"backends file, {where}: {what}")

    def fields(self, value: Any, where: str, required: set[str],
               optional: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "must be an object")
        missing = required - value.keys()
        if missing:
            raise self.fail(where, f"needs {', '.join(sorted(missing))}")
        unknown = value.keys() - required - optional
        if unknown:
            raise self.fail(where, f"unknown field {sorted(unknown)[0]!r}")
        return value

    def text(self, value: Any, where: str) -> str:
        """A string given inline, as {"env": NAME} or as {"file": path}."""
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict) and len(value) == 1:
            if isinstance(value.get("env"), str):
                found: str = self.env.get(value["env"], "")
                if not found:
                    raise self.fail(where, f"the environment variable {value['env']} is "
                                           "not set")
                return found
            if isinstance(value.get("file"), str):
                path = self.base / str(value["file"])
                try:
                    return path.read_text().strip()
                except OSError as exc:
                    raise self.fail(where, f"cannot read {path}: {exc}") from None
        raise self.fail(where, 'must be a string, {"env": NAME} or {"file": path}')

    def roles(self, value: Any, where: str) -> frozenset[Role]:
        names = {r.value for r in Role}
        if not isinstance(value, list) or not value or any(v not in names for v in value):
            raise self.fail(where, f"must list roles among {', '.join(sorted(names))}")
        return frozenset(Role(v) for v in value)


def parse_backends(data: Any, *, base: Path, env: Mapping[str, str]) -> Backends:
    """The backends file's data, checked (see the module docstring)."""
    r = _Reader(base, env)
    top = r.fields(data, "the top level", {"backends"}, set())
    if not isinstance(top["backends"], list):
        raise r.fail("backends", "must be a list")
    keys: list[KeySpec] = []
    hooks: list[HookSpec] = []
    names: set[str] = set()
    for i, entry in enumerate(top["backends"]):
        where = f"backends[{i}]"
        backend = r.fields(entry, where, {"name"}, {"keys", "hooks"})
        name = backend["name"]
        if not isinstance(name, str) or not name or name in names:
            raise r.fail(f"{where}.name", "must be a unique, non-empty string")
        names.add(name)
        for j, key in enumerate(_list(r, backend.get("keys", []), f"{where}.keys")):
            keys += _keys(r, key, f"{where}.keys[{j}]", name)
        for j, hook in enumerate(_list(r, backend.get("hooks", []), f"{where}.hooks")):
            hooks.append(_hook(r, hook, f"{where}.hooks[{j}]", name))
    _unique(r, [(k.kid, f"kid {k.kid!r}") for k in keys])
    _unique(r, [(on, f"two hooks for {on[0]}:{on[1]}") for h in hooks for on in h.on])
    return Backends(tuple(keys), tuple(hooks))


def _list(r: _Reader, value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise r.fail(where, "must be a list")
    return value


def _unique(r: _Reader, items: list[tuple[Any, str]]) -> None:
    seen: set[Any] = set()
    for item, says in items:
        if item in seen:
            raise r.fail("backends", f"{says} appears twice")
        seen.add(item)


def _keys(r: _Reader, value: Any, where: str, backend: str) -> list[KeySpec]:
    if isinstance(value, dict) and "jwks" in value:
        entry = r.fields(value, where, {"jwks", "roles"}, set())
        return _jwks(r, entry["jwks"], where, r.roles(entry["roles"], f"{where}.roles"),
                     backend)
    entry = r.fields(value, where, {"kid", "alg", "roles"}, {"secret", "public_key"})
    kid, alg = entry["kid"], entry["alg"]
    if not isinstance(kid, str) or not 0 < len(kid) <= _MAX_KID:
        raise r.fail(f"{where}.kid", f"must be a string of 1 to {_MAX_KID} characters")
    if alg not in ALGORITHMS:
        raise r.fail(f"{where}.alg", f"must be one of {', '.join(ALGORITHMS)}")
    roles = r.roles(entry["roles"], f"{where}.roles")
    wanted = "secret" if alg == "HS256" else "public_key"
    if wanted not in entry or len(entry) != 4:
        raise r.fail(where, f"an {alg} key needs '{wanted}' (and nothing else)")
    material = r.text(entry[wanted], f"{where}.{wanted}")
    if alg == "HS256" and len(material) < MIN_HS256_SECRET:
        raise r.fail(f"{where}.secret", f"must be at least {MIN_HS256_SECRET} characters")
    return [KeySpec(kid, alg, material, roles, backend)]


def _jwks(r: _Reader, value: Any, where: str, roles: frozenset[Role],
          backend: str) -> list[KeySpec]:
    """Every public key of a JWKS (inline, or a file or variable holding one)."""
    if not (isinstance(value, dict) and "keys" in value):
        try:
            value = orjson.loads(r.text(value, f"{where}.jwks"))
        except orjson.JSONDecodeError:
            raise r.fail(f"{where}.jwks", "is not JSON") from None
    found = value.get("keys") if isinstance(value, dict) else None
    if not isinstance(found, list) or not found:
        raise r.fail(f"{where}.jwks", "must be a JWKS: {\"keys\": [...]}")
    specs = []
    for n, jwk in enumerate(found):
        at = f"{where}.jwks.keys[{n}]"
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
            raise r.fail(at, "needs a 'kid'")
        if "d" in jwk or jwk.get("kty") == "oct":
            raise r.fail(at, "must be a public key (no 'd'; HS256 keys go in 'secret')")
        alg = jwk.get("alg") or {"RSA": "RS256", "EC": "ES256"}.get(str(jwk.get("kty")))
        if alg not in ("RS256", "ES256"):
            raise r.fail(at, "must be an RS256 or ES256 public key")
        specs.append(KeySpec(jwk["kid"], alg, jwk, roles, backend))
    return specs


def _hook(r: _Reader, value: Any, where: str, backend: str) -> HookSpec:
    entry = r.fields(value, where, {"on", "url"}, {"secret", "secrets", "timeout", "fail_open"})
    on = set()
    for n, item in enumerate(_list(r, entry["on"], f"{where}.on")):
        on.add(_command(r, item, f"{where}.on[{n}]"))
    if not on:
        raise r.fail(f"{where}.on", "must name at least one 'kind:command'")
    url = entry["url"]
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise r.fail(f"{where}.url", "must be an http:// or https:// URL")
    given = entry.get("secrets", [entry["secret"]] if "secret" in entry else [])
    if ("secret" in entry) == ("secrets" in entry) or not isinstance(given, list) or not given:
        raise r.fail(where, "needs 'secret' or a non-empty list 'secrets' (not both)")
    secrets = tuple(r.text(s, f"{where}.secrets[{n}]") for n, s in enumerate(given))
    for n, secret in enumerate(secrets):
        try:
            sign(secret, "check", 0, b"")
        except SignatureError:
            raise r.fail(f"{where}.secrets[{n}]", "must be 'whsec_' and base64") from None
    timeout = entry.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or not 0 < timeout <= MAX_HOOK_TIMEOUT):
        raise r.fail(f"{where}.timeout", f"must be seconds, above 0 and at most "
                                         f"{MAX_HOOK_TIMEOUT:g}")
    fail_open = entry.get("fail_open", False)
    if not isinstance(fail_open, bool):
        raise r.fail(f"{where}.fail_open", "must be true or false")
    return HookSpec(backend, frozenset(on), url, secrets,
                    None if timeout is None else float(timeout), fail_open)


def _command(r: _Reader, value: Any, where: str) -> tuple[str, str]:
    """``kind:command`` of a domain room, or ``kind:publish`` of a plain one."""
    kind, _, name = value.partition(":") if isinstance(value, str) else ("", "", "")
    if kind not in KINDS:
        raise r.fail(where, f"must be 'kind:command' with a kind among {', '.join(sorted(KINDS))}")
    domain = DOMAINS.get(kind)
    allowed = list(domain.commands) if domain is not None else [_PUBLISH]
    if name not in allowed:
        raise r.fail(where, f"{kind} rooms take {', '.join(allowed)}, not {name!r}")
    return kind, name
