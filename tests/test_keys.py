"""Keys per backend: tokens verified by the key their ``kid`` names, with that key's
algorithm only, carrying only the roles that key may mint. Pure."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from roomlog.auth import Tokens, default_roles, load_tokens
from roomlog.backends import KeySpec
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal, Role

SECRET = "s" * 32
SHOP = "k" * 40
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC = ec.generate_private_key(ec.SECP256R1())


def pem(private: Any) -> str:
    return private.public_key().public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def jwk(private: Any, kid: str) -> dict[str, Any]:
    algorithm = jwt.get_algorithm_by_name("RS256" if isinstance(private, rsa.RSAPrivateKey)
                                          else "ES256")
    data: dict[str, Any] = algorithm.to_jwk(private.public_key(), as_dict=True)
    return {**data, "kid": kid}


def spec(kid: str, alg: str, material: Any, *roles: Role) -> KeySpec:
    return KeySpec(kid, alg, material, frozenset(roles or (Role.GUEST,)), "test")


KEYS = [
    spec("shop", "HS256", SHOP, Role.GUEST, Role.DJ),
    spec("rsa", "RS256", pem(RSA), Role.GUEST, Role.CUSTOMER),
    spec("ec", "ES256", pem(EC), Role.GUEST),
    spec("rsa-jwk", "RS256", jwk(RSA, "rsa-jwk"), Role.SERVICE),
    spec("ec-jwk", "ES256", jwk(EC, "ec-jwk"), Role.ADMIN),
]


def mint(key: Any, alg: str, kid: str | None, role: str = "guest", sub: str = "u1",
         ttl: float = 60) -> str:
    claims = {"sub": sub, "role": role, "exp": int(time.time() + ttl)}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid} if kid else None)


def by_hand(header: str, key: bytes) -> str:
    """An HS256 token PyJWT refuses to make (it guards against these mistakes)."""
    signed = b".".join(base64.urlsafe_b64encode(part).rstrip(b"=") for part in (
        header.encode(), b'{"sub":"u1","exp":99999999999}'))
    mac = hmac.new(key, signed, hashlib.sha256).digest()
    return (signed + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()


def refused(tokens: Tokens, token: str, says: str) -> None:
    with pytest.raises(RoomlogError, match=says) as err:
        tokens.verify(token)
    assert err.value.code is ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize("key, alg, kid, role", [
    (SHOP, "HS256", "shop", "dj"),
    (RSA, "RS256", "rsa", "customer"),
    (EC, "ES256", "ec", "guest"),
    (RSA, "RS256", "rsa-jwk", "service"),
    (EC, "ES256", "ec-jwk", "admin"),
    (SECRET, "HS256", None, "admin"),  # the default key mints every role
])
def test_each_key_verifies_its_tokens(key: Any, alg: str, kid: str | None, role: str) -> None:
    principal = Tokens(SECRET, keys=KEYS).verify(mint(key, alg, kid, role)).principal
    assert principal == Principal("u1", Role(role))


def test_a_key_limited_to_guest_and_dj_cannot_mint_admin() -> None:
    tokens = Tokens(SECRET, keys=KEYS)
    for role in ("admin", "service", "customer", "technician"):
        refused(tokens, mint(SHOP, "HS256", "shop", role), f"key shop may not mint {role}")
    with pytest.raises(ValueError, match="may not mint admin"):
        tokens.issue("u1", Role.ADMIN, kid="shop")
    principal = tokens.verify(tokens.issue("u1", Role.DJ, kid="shop")).principal
    assert principal.role is Role.DJ
    assert jwt.get_unverified_header(tokens.issue("u1", Role.DJ, kid="shop"))["kid"] == "shop"


def test_a_token_must_match_its_key() -> None:
    tokens = Tokens(SECRET, keys=KEYS)
    refused(tokens, mint(SHOP, "HS256", "nobody"), "unknown key id 'nobody'")
    refused(tokens, mint(SECRET, "HS256", "shop"), "invalid token")  # another key's secret
    refused(tokens, mint(SHOP, "HS256", None), "invalid token")  # no kid: the default key
    refused(tokens, mint(EC, "ES256", "rsa"), "invalid token")  # the key's algorithm only
    # Algorithm confusion: HS256 "signed" with the RSA key's public PEM as the secret.
    refused(tokens, by_hand('{"alg":"HS256","kid":"rsa"}', pem(RSA).encode()), "invalid token")
    refused(tokens, mint(SHOP, "HS256", "shop", ttl=-60), "expired")
    refused(tokens, "not.a.token", "invalid token")
    refused(tokens, by_hand('{"alg":"HS256","kid":7}', SHOP.encode()), "invalid token")


def test_the_default_key_can_be_limited_or_turned_off() -> None:
    assert default_roles("") is None
    assert default_roles("none") == frozenset()
    assert default_roles(" admin, service ") == {Role.ADMIN, Role.SERVICE}
    with pytest.raises(SystemExit, match="king"):
        default_roles("guest,king")
    limited = Tokens(SECRET, keys=KEYS, secret_roles={Role.ADMIN})
    assert limited.verify(mint(SECRET, "HS256", None, "admin")).principal.role is Role.ADMIN
    refused(limited, mint(SECRET, "HS256", None, "guest"), r"key \(default\) may not mint")
    off = Tokens(SECRET, keys=KEYS, secret_roles=frozenset())
    refused(off, mint(SECRET, "HS256", None, "admin"), "without 'kid'")
    with pytest.raises(ValueError, match="may not mint"):
        off.issue("u1", Role.ADMIN)
    assert off.verify(mint(SHOP, "HS256", "shop")).principal == Principal("u1", Role.GUEST)


def test_the_server_signs_only_with_its_hs256_keys() -> None:
    tokens = Tokens(SECRET, keys=KEYS)
    for kid in ("rsa", "ec-jwk", "nobody"):
        with pytest.raises(ValueError, match="no HS256 key"):
            tokens.issue("u1", Role.GUEST, kid=kid)


def test_a_pem_that_is_no_key_stops_the_server() -> None:
    with pytest.raises(SystemExit, match="'bad' is not an RS256 public key"):
        load_tokens(SECRET, "unused", "", [spec("bad", "RS256", "-----BEGIN nonsense")])
