"""Keys per backend against real servers: role limits, ``roomlog token --kid``, and
the documented rotation on two instances (docs/backends.md, "Rotating a key")."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import SECRET
from tests.e2e.conftest import MakeServer
from tests.e2e.support import Server, open_client, unique_room

SHOP_KEY = "shop-secret-" + "k" * 32
OLD_KEY = "old-secret-" + "o" * 32
NEW_KEY = "new-secret-" + "n" * 32


def mint(key: Any, kid: str | None, role: str, *, alg: str = "HS256", ttl: float = 600,
         sub: str = "u1") -> str:
    claims = {"sub": sub, "role": role, "exp": int(time.time() + ttl)}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid} if kid else None)


def keys_file(path: Path, keys: list[dict[str, Any]]) -> str:
    path.write_bytes(orjson.dumps({"backends": [{"name": "shop", "keys": keys}]}))
    return str(path)


def hs256(kid: str, secret: str, *roles: str) -> dict[str, Any]:
    return {"kid": kid, "alg": "HS256", "secret": secret, "roles": list(roles)}


async def status(http: httpx.AsyncClient, srv: Server, token: str) -> int:
    """The status of a read that needs a valid token (200) or refuses it (401)."""
    reply = await http.get(f"{srv.base}/v1/rooms/chat:keys",
                           headers={"authorization": f"Bearer {token}"})
    return reply.status_code


async def test_a_key_limited_to_guest_and_dj_cannot_mint_admin(
        make_server: MakeServer, tmp_path: Path, http: httpx.AsyncClient) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = jwt.get_algorithm_by_name("RS256").to_jwk(private.public_key(), as_dict=True)
    (tmp_path / "jwks.json").write_bytes(orjson.dumps({"keys": [{**public, "kid": "app-rsa"}]}))
    file = keys_file(tmp_path / "backends.json", [
        hs256("shop", SHOP_KEY, "guest", "dj"),
        {"jwks": {"file": "jwks.json"}, "roles": ["customer"]}])
    srv = await make_server(backends_file=file)

    assert await status(http, srv, mint(SHOP_KEY, "shop", "guest")) == 200
    assert await status(http, srv, mint(SHOP_KEY, "shop", "dj")) == 200
    assert await status(http, srv, mint(private, "app-rsa", "customer", alg="RS256")) == 200
    for token in (mint(SHOP_KEY, "shop", "admin"), mint(SHOP_KEY, "shop", "service"),
                  mint(private, "app-rsa", "admin", alg="RS256"),
                  mint(SHOP_KEY, None, "admin"),  # the shop's secret is not the default key
                  mint(SHOP_KEY, "other", "guest")):
        assert await status(http, srv, token) == 401
    ws = await open_client(srv.ws_url, connect_frame=False)
    await ws.send({"type": "connect", "token": mint(SHOP_KEY, "shop", "admin"), "id": "c"})
    refused = await ws.expect("error", id="c")
    assert refused["code"] == "UNAUTHORIZED" and "may not mint admin" in refused["message"]
    await ws.close()
    # The default key (ROOMLOG_SECRET, no kid) still mints every role.
    assert await status(http, srv, mint(SECRET, None, "admin")) == 200


def roomlog_token(file: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMLOG_")}
    env.update(ROOMLOG_SECRET=SECRET, ROOMLOG_BACKENDS_FILE=file)
    return subprocess.run([sys.executable, "-m", "roomlog", "token", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


async def test_roomlog_token_signs_with_a_kid(make_server: MakeServer, tmp_path: Path,
                                              http: httpx.AsyncClient) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "app.pem").write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    file = keys_file(tmp_path / "backends.json", [
        hs256("shop", SHOP_KEY, "guest", "dj"),
        {"kid": "app", "alg": "RS256", "public_key": {"file": "app.pem"}, "roles": ["guest"]}])
    srv = await make_server(backends_file=file)
    made = await asyncio.to_thread(roomlog_token, file, "--user", "dj1", "--role", "dj",
                                   "--kid", "shop")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert jwt.get_unverified_header(token)["kid"] == "shop"
    assert await status(http, srv, token) == 200
    for args, says in ((("--role", "admin", "--kid", "shop"), "may not mint admin"),
                       (("--kid", "app"), "no HS256 key 'app'"),
                       (("--kid", "nope"), "no HS256 key 'nope'")):
        refused = await asyncio.to_thread(roomlog_token, file, "--user", "u", *args)
        assert refused.returncode != 0 and says in refused.stderr, refused.stderr


async def test_rotation_keeps_old_tokens_valid_until_they_expire(
        make_server: MakeServer, pg_migrated: str, tmp_path: Path,
        http: httpx.AsyncClient) -> None:
    """The steps of docs/backends.md on two instances: add the new key everywhere,
    then mint with it, then drop the old key once its tokens have expired."""
    def file(name: str, *keys: dict[str, Any]) -> str:
        return keys_file(tmp_path / name, list(keys))

    old, new = hs256("shop-1", OLD_KEY, "guest"), hs256("shop-2", NEW_KEY, "guest")
    only_old, both, only_new = file("1.json", old), file("2.json", old, new), file("3.json", new)
    one, two = await asyncio.gather(make_server(pg_migrated, backends_file=only_old),
                                    make_server(pg_migrated, backends_file=only_old))
    old_token = mint(OLD_KEY, "shop-1", "guest", ttl=3600)
    expired = mint(OLD_KEY, "shop-1", "guest", ttl=-60)
    room = unique_room()
    follower = await open_client(two.ws_url, token=old_token, user="u1")
    await follower.subscribe(room)

    # Step 1: the new key on every instance, one at a time (instance two keeps serving).
    one.settings["backends_file"] = both
    await one.arestart()
    assert await status(http, one, old_token) == 200 and await status(http, two, old_token) == 200
    new_token = mint(NEW_KEY, "shop-2", "guest")
    assert await status(http, two, new_token) == 401  # why the backend waits for step 2
    publisher = await open_client(one.ws_url, token=old_token)
    await publisher.publish(room, {"n": 1})
    assert [m["data"] for m in await follower.messages(room, 1)] == [{"n": 1}]
    two.settings["backends_file"] = both
    await two.arestart()
    # The follower's instance restarted: it resumes on the other, with its old token.
    resumed = await open_client(one.ws_url, token=old_token)
    await resumed.subscribe(room)

    # Step 2: the backend mints with the new key; old tokens keep working meanwhile.
    for srv in (one, two):
        assert await status(http, srv, new_token) == 200
        assert await status(http, srv, old_token) == 200
        assert await status(http, srv, expired) == 401

    # Step 3, once the old tokens have expired: drop the old key.
    for srv in (one, two):
        srv.settings["backends_file"] = only_new
        await srv.arestart()
        assert await status(http, srv, new_token) == 200
        assert await status(http, srv, old_token) == 401
    for client in (follower, publisher, resumed):
        await client.close()


@pytest.mark.parametrize("content, says", [
    ('{"backends": [{"name": "a", "keys": [{"kid": "k", "alg": "HS256", "secret": "short", '
     '"roles": ["guest"]}]}]}', "at least 32"),
    ("{", "not JSON"),
])
async def test_a_wrong_backends_file_stops_the_server(tmp_path: Path, content: str,
                                                      says: str) -> None:
    (tmp_path / "backends.json").write_text(content)
    srv = Server(tmp_path, backends_file=tmp_path / "backends.json")
    proc = await asyncio.to_thread(srv.launch)
    assert await asyncio.to_thread(proc.wait, 60) != 0
    assert says in srv.output()
