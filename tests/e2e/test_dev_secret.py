"""The development secret trap: without ROOMLOG_SECRET, a token minted in another
directory is signed with another secret. Both sides say what happened and what to do."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.conftest import MakeServer
from tests.e2e.support import TIMEOUT, unique_room


def roomlog_token(cwd: Path, **env_vars: str) -> subprocess.CompletedProcess[str]:
    """``roomlog token --user u1`` as a person runs it in ``cwd``, without
    ROOMLOG_SECRET (``env_vars`` added)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMLOG_")} | env_vars
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "roomlog", "token", "--user", "u1"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done


async def test_a_token_from_another_directory_is_explained(make_server: MakeServer,
                                                           tmp_path: Path) -> None:
    srv = await make_server(secret="", log_level="info")  # the development secret
    server_secret = srv.workdir / ".secret"
    assert server_secret.exists()

    elsewhere = roomlog_token(tmp_path / "home")
    token = elsewhere.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token  # stdout: the token alone
    assert "new one was made" in elsewhere.stderr
    assert str(tmp_path / "home" / ".roomlog-secret") in elsewhere.stderr
    again = roomlog_token(tmp_path / "home")
    assert "new one" not in again.stderr and "only a server started in" in again.stderr

    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        url = f"{srv.base}/v1/rooms/{unique_room()}/messages"
        refused = await http.post(url, json={"id": "m1", "data": 1},
                                  headers={"authorization": f"Bearer {token}"})
        assert refused.status_code == 401
        message = refused.json()["error"]["message"]
        assert "Signature verification failed" in message
        assert "development secret" in message and "roomlog token" in message
        assert str(srv.workdir) not in message  # no server path to strangers

        # Minted where the server runs (its secret file), the token works.
        here = await asyncio.to_thread(roomlog_token, srv.workdir,
                                       ROOMLOG_SECRET_FILE=str(server_secret))
        accepted = await http.post(url, json={"id": "m1", "data": 1},
                                   headers={"authorization": f"Bearer {here.stdout.strip()}"})
        assert accepted.status_code == 201, accepted.text
        await http.post(url, json={"id": "m2", "data": 1},
                        headers={"authorization": f"Bearer {token}"})
    await srv.astop()
    output = srv.output()
    # The operator's side: which file the server signs with, said once.
    assert output.count("a token signed with another secret was refused") == 1, output
    assert str(server_secret) in output
