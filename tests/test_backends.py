"""The backends file: keys and hooks, and every mistake named where it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from roomlog.backends import BackendsError, load_backends, parse_backends
from roomlog.identity import Role
from roomlog.signing import new_secret

HS = "h" * 32
HOOK_SECRET = new_secret()
PEM = "-----BEGIN PUBLIC KEY-----\nMFkw...\n-----END PUBLIC KEY-----"
JWK = {"kty": "EC", "crv": "P-256", "kid": "ec-1", "x": "x", "y": "y"}


def parse(backends: list[dict[str, Any]], tmp_path: Path | None = None,
          env: dict[str, str] | None = None) -> Any:
    return parse_backends({"backends": backends}, base=tmp_path or Path("."), env=env or {})


def hook(**fields: Any) -> dict[str, Any]:
    return {"on": ["queue:request.submit"], "url": "http://backend:8080/hook",
            "secret": HOOK_SECRET, **fields}


def test_keys_and_hooks(tmp_path: Path) -> None:
    (tmp_path / "app.pem").write_text(PEM + "\n")
    (tmp_path / "jwks.json").write_bytes(orjson.dumps({"keys": [JWK]}))
    parsed = parse([{"name": "songapp", "keys": [
        {"kid": "hs-1", "alg": "HS256", "secret": {"env": "APP_KEY"}, "roles": ["guest", "dj"]},
        {"kid": "rsa-1", "alg": "RS256", "public_key": {"file": "app.pem"}, "roles": ["guest"]},
        {"jwks": {"file": "jwks.json"}, "roles": ["customer"]},
        {"jwks": {"keys": [{**JWK, "kid": "ec-2"}]}, "roles": ["guest"]},
    ], "hooks": [hook(on=["queue:request.submit", "chat:publish"], timeout=2,
                      fail_open=True, secret={"env": "HOOK"})]}],
        tmp_path, env={"APP_KEY": HS, "HOOK": HOOK_SECRET})
    assert [(k.kid, k.algorithm, k.backend) for k in parsed.keys] == [
        ("hs-1", "HS256", "songapp"), ("rsa-1", "RS256", "songapp"),
        ("ec-1", "ES256", "songapp"), ("ec-2", "ES256", "songapp")]
    assert parsed.keys[0].material == HS and parsed.keys[1].material == PEM
    assert parsed.keys[0].roles == {Role.GUEST, Role.DJ}
    assert parsed.keys[2].material == JWK and parsed.keys[2].roles == {Role.CUSTOMER}
    [spec] = parsed.hooks
    assert spec.on == {("queue", "request.submit"), ("chat", "publish")}
    assert (spec.secrets, spec.timeout, spec.fail_open) == ((HOOK_SECRET,), 2.0, True)
    assert parse([{"name": "x", "hooks": [hook()]}]).hooks[0].timeout is None


def test_load_reads_a_file_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "hook.secret").write_text(HOOK_SECRET + "\n")
    file = tmp_path / "backends.json"
    rotating = {k: v for k, v in hook().items() if k != "secret"}
    rotating["secrets"] = [{"file": "hook.secret"}, new_secret()]
    file.write_bytes(orjson.dumps({"backends": [{"name": "a", "hooks": [rotating]}]}))
    [spec] = load_backends(str(file)).hooks
    assert spec.secrets[0] == HOOK_SECRET and len(spec.secrets) == 2
    assert load_backends("").keys == ()
    with pytest.raises(BackendsError, match="cannot read"):
        load_backends(str(tmp_path / "missing.json"))
    file.write_text("{")
    with pytest.raises(BackendsError, match="not JSON"):
        load_backends(str(file))


@pytest.mark.parametrize("backends, says", [
    ([{"name": "a", "colour": 1}], r"backends\[0\]: unknown field 'colour'"),
    ([{"name": ""}], r"backends\[0\].name"),
    ([{"name": "a"}, {"name": "a"}], "unique"),
    ([{"name": "a", "keys": {}}], r"backends\[0\].keys: must be a list"),
    ([{"name": "a", "keys": [{"kid": "k", "alg": "HS512", "secret": HS, "roles": ["guest"]}]}],
     "alg: must be one of HS256, RS256, ES256"),
    ([{"name": "a", "keys": [{"kid": "k", "alg": "HS256", "secret": "short", "roles": ["guest"]}]}],
     "at least 32"),
    ([{"name": "a", "keys": [{"kid": "k", "alg": "HS256", "public_key": PEM,
                              "roles": ["guest"]}]}], "needs 'secret'"),
    ([{"name": "a", "keys": [{"kid": "k", "alg": "RS256", "secret": HS, "roles": ["guest"]}]}],
     "needs 'public_key'"),
    ([{"name": "a", "keys": [{"kid": "k", "alg": "HS256", "secret": HS, "roles": []}]}],
     "must list roles"),
    ([{"name": "a", "keys": [{"kid": "k", "alg": "HS256", "secret": HS, "roles": ["king"]}]}],
     "must list roles"),
    ([{"name": "a", "keys": [{"kid": "", "alg": "HS256", "secret": HS, "roles": ["guest"]}]}],
     "kid: must be a string"),
    ([{"name": "a", "keys": [{"kid": "k", "alg": "HS256", "secret": HS, "roles": ["guest"]}]},
      {"name": "b", "keys": [{"kid": "k", "alg": "HS256", "secret": HS, "roles": ["guest"]}]}],
     "kid 'k' appears twice"),
    ([{"name": "a", "keys": [{"kid": "k", "alg": "HS256", "secret": {"env": "NOPE"},
                              "roles": ["guest"]}]}], "NOPE is not set"),
    ([{"name": "a", "keys": [{"kid": "k", "alg": "HS256", "secret": {"vault": "x"},
                              "roles": ["guest"]}]}], "must be a string"),
    ([{"name": "a", "keys": [{"jwks": {"keys": [{**JWK, "d": "private"}]}, "roles": ["guest"]}]}],
     "must be a public key"),
    ([{"name": "a", "keys": [{"jwks": {"keys": [{"kty": "oct", "kid": "o", "k": "x"}]},
                              "roles": ["guest"]}]}], "must be a public key"),
    ([{"name": "a", "keys": [{"jwks": {"keys": [{**JWK, "kid": None}]}, "roles": ["guest"]}]}],
     "needs a 'kid'"),
    ([{"name": "a", "keys": [{"jwks": {"keys": []}, "roles": ["guest"]}]}], "must be a JWKS"),
    ([{"name": "a", "keys": [{"jwks": {"keys": [{**JWK, "kty": "OKP", "alg": "EdDSA"}]},
                              "roles": ["guest"]}]}], "RS256 or ES256"),
    ([{"name": "a", "hooks": [hook(on=["queue:request.dance"])]}],
     "queue rooms take .*, not 'request.dance'"),
    ([{"name": "a", "hooks": [hook(on=["queue:publish"])]}], "not 'publish'"),
    ([{"name": "a", "hooks": [hook(on=["chat:request.submit"])]}], "chat rooms take publish"),
    ([{"name": "a", "hooks": [hook(on=["moon:publish"])]}], "kind among"),
    ([{"name": "a", "hooks": [hook(on=[])]}], "at least one"),
    ([{"name": "a", "hooks": [hook(), hook()]}], "two hooks for queue:request.submit"),
    ([{"name": "a", "hooks": [hook(url="ftp://x")]}], "http:// or https://"),
    ([{"name": "a", "hooks": [hook(secret="plain")]}], "whsec_"),
    ([{"name": "a", "hooks": [hook(secrets=[HOOK_SECRET])]}], "not both"),
    ([{"name": "a", "hooks": [hook(timeout=0)]}], "timeout"),
    ([{"name": "a", "hooks": [hook(timeout=61)]}], "timeout"),
    ([{"name": "a", "hooks": [hook(timeout=True)]}], "timeout"),
    ([{"name": "a", "hooks": [hook(fail_open="yes")]}], "fail_open"),
    ([{"name": "a", "hooks": [hook(retries=3)]}], "unknown field 'retries'"),
])
def test_mistakes_are_named(backends: list[dict[str, Any]], says: str) -> None:
    with pytest.raises(BackendsError, match=says):
        parse(backends)


def test_the_top_level() -> None:
    for data in ([], {"backend": []}, {"backends": {}}):
        with pytest.raises(BackendsError):
            parse_backends(data, base=Path("."), env={})
