"""The JavaScript client as an npm package (clients/js/package.json, name
``roomlog-client``): ``npm pack`` ships what its ``files`` and ``exports`` promise, and
the packed tarball, installed into a scratch project next to ``ws`` (pinned by
``js_package/package-lock.json``), runs under Node against a real hub the way a
server-side or React Native user would run it."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tarfile
from pathlib import Path

from roomlog.identity import Role
from tests.e2e.support import ROOT, Server, issue_token

HERE = Path(__file__).parent / "js_package"


def run(*argv: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False, env=env)
    assert done.returncode == 0, f"{argv}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def test_the_packed_client_runs_under_node_with_ws(tmp_path: Path) -> None:
    npm, node = shutil.which("npm"), shutil.which("node")
    assert npm and node, "node and npm are needed (Node 18 or newer)"
    packed = json.loads(run(npm, "pack", "--json", "--pack-destination", str(tmp_path),
                            cwd=ROOT / "clients" / "js"))[0]
    assert packed["name"] == "roomlog-client"
    tarball = tmp_path / packed["filename"]
    with tarfile.open(tarball) as tar:
        names = sorted(n.removeprefix("package/") for n in tar.getnames())
    assert names == ["README.md", "package.json", "roomlog.d.ts", "roomlog.js", "store.d.ts",
                     "store.js"]

    project = tmp_path / "project"
    project.mkdir()
    for name in ("package.json", "package-lock.json", "smoke.mjs"):
        shutil.copy(HERE / name, project / name)
    run(npm, "ci", "--no-audit", "--no-fund", cwd=project)
    run(npm, "install", "--no-save", "--no-audit", "--no-fund", str(tarball), cwd=project)

    room = f"queue:node-{secrets.token_hex(3)}"
    hub = Server(tmp_path / "hub").start()
    try:
        env = {"PATH": str(Path(node).parent), "HUB": hub.base, "ROOM": room,
               "TOKEN": issue_token("nodeuser", Role.GUEST)}
        out = run(node, "smoke.mjs", cwd=project, env=env, timeout=60)
    finally:
        hub.stop()
    hub.assert_clean_log()
    steps = [json.loads(line) for line in out.splitlines()]
    by = {s["step"]: s for s in steps}
    assert {"step": "state", "state": "connected"} in steps
    assert by["ack"]["duplicate"] is False and by["again"]["duplicate"] is True
    assert by["again"]["request_id"] == by["ack"]["request_id"]
    assert by["event"] == {"step": "event", "title": "Waterloo", "user": "nodeuser"}
    assert by["refused"] == {"step": "refused", "code": "DUPLICATE_REQUEST",
                             "name": "RoomlogError"}
    assert by["whoami"] == {"step": "whoami", "user": "nodeuser", "claims": "nodeuser",
                            "transport": "websocket"}
