"""The token-minting snippets of docs/backends.md, run for real against a server.

The Python block runs with this interpreter (PyJWT is a dependency of the hub); the
Node block runs under ``node`` with ``jose`` installed from npm into a temporary
directory. Nothing is skipped: without node, npm or the npm registry, the Node test
fails and says why.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.e2e.conftest import MakeServer
from tests.e2e.support import ROOT, open_client

DOC = ROOT / "docs" / "backends.md"
JOSE = "jose@6"  # the major version the snippet is written for


def snippet(name: str) -> str:
    """The fenced block after ``<!-- tested: {name} ... -->`` in docs/backends.md."""
    found = re.search(rf"<!-- tested: {re.escape(name)}\b.*?-->\s*```\w+\n(.*?)```",
                      DOC.read_text(), re.S)
    assert found, f"docs/backends.md has no tested block {name}"
    return found[1]


def private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 60) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """An RSA key (for the Python block) and an EC P-256 key (for the Node block)."""
    made = {"rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec": ec.generate_private_key(ec.SECP256R1())}
    paths = {}
    for name, key in made.items():
        paths[name] = tmp_path / f"{name}.key"
        paths[name].write_bytes(private_pem(key))
    (tmp_path / "backends.json").write_bytes(orjson.dumps({"backends": [{
        "name": "songapp", "keys": [
            {"kid": "app-rsa", "alg": "RS256", "public_key": public_pem(made["rsa"]),
             "roles": ["guest"]},
            {"kid": "app-ec", "alg": "ES256", "public_key": public_pem(made["ec"]),
             "roles": ["guest"]}]}]}))
    return paths


async def connects_as_guest_42(make_server: MakeServer, tmp_path: Path, token: str) -> None:
    srv = await make_server(backends_file=tmp_path / "backends.json")
    ws = await open_client(srv.ws_url, connect_frame=False)
    connected = await ws.connect(token)
    assert (connected["user"], connected["role"]) == ("guest-42", "guest")
    await ws.close()


async def test_the_python_snippet_mints_a_token_the_hub_accepts(
        make_server: MakeServer, tmp_path: Path, keys: dict[str, Path]) -> None:
    (tmp_path / "mint.py").write_text(snippet("mint.py"))
    env = {**os.environ, "ROOMLOG_KEY_FILE": str(keys["rsa"]), "ROOMLOG_KID": "app-rsa"}
    token = await asyncio.to_thread(run, [sys.executable, "mint.py"], tmp_path, env)
    await connects_as_guest_42(make_server, tmp_path, token.strip())


async def test_the_node_snippet_mints_a_token_the_hub_accepts(
        make_server: MakeServer, tmp_path: Path, keys: dict[str, Path]) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed to test the Node snippet of the docs"
    app = tmp_path / "node-backend"
    app.mkdir()
    (app / "package.json").write_text('{"private": true}')
    await asyncio.to_thread(run, [npm, "install", "--no-audit", "--no-fund", "--silent", JOSE],
                            app, None, 300)
    (app / "mint.mjs").write_text(snippet("mint.mjs"))
    env = {**os.environ, "ROOMLOG_KEY_FILE": str(keys["ec"]), "ROOMLOG_KID": "app-ec"}
    token = await asyncio.to_thread(run, [node, "mint.mjs"], app, env)
    await connects_as_guest_42(make_server, tmp_path, token.strip())
