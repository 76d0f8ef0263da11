"""What the server writes to its log: never a token or a secret (issue #10 section 9),
one format for the app and uvicorn, and ids that follow one client."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
from websockets.asyncio.client import connect

from roomlog.identity import Role
from tests.conftest import SECRET
from tests.e2e.conftest import MakeServer
from tests.e2e.support import ROOT, TIMEOUT, issue_token, open_client, unique_room


async def test_tokens_in_urls_never_reach_the_log(make_server: MakeServer) -> None:
    srv = await make_server(log_level="info", web_dir=str(ROOT / "clients"))
    sse_token, photo_token, page_token, header_token, ws_token = (
        issue_token(f"user-{n}", Role.CUSTOMER if n == 1 else Role.GUEST) for n in range(5))
    room = unique_room()
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        async with http.stream("GET", f"{srv.base}/v1/rooms/{room}/events",
                               params={"token": sse_token}) as stream:
            assert stream.status_code == 200
            async for line in stream.aiter_lines():
                if line.startswith("event: subscribed"):
                    break
        photo = await http.get(f"{srv.base}/v1/rooms/repair:t-1/photos/abc",
                               params={"token": photo_token})
        assert photo.status_code in (403, 404), photo.text
        page = await http.get(f"{srv.base}/guest.html", params={"token": page_token,
                                                                "room": "queue:demo"})
        assert page.status_code == 200
        polled = await http.get(f"{srv.base}/v1/rooms/{room}/messages", params={"after": 0},
                                headers={"authorization": f"Bearer {header_token}"})
        assert polled.status_code == 200
    with contextlib.suppress(Exception):  # the handshake may be refused: it is logged anyway
        async with connect(f"{srv.ws_url}?token={ws_token}", open_timeout=TIMEOUT):
            pass
    await asyncio.sleep(0)
    await srv.astop()
    output = srv.output()
    assert "GET /guest.html" in output, output[-3000:]  # the access log is on
    for token in (sse_token, photo_token, page_token, header_token, ws_token):
        for part in token.split("."):
            assert part not in output, output[-3000:]
    assert SECRET not in output


def json_lines(output: str) -> list[dict[str, object]]:
    """Every line the server wrote, each parsed as one JSON object (the test harness's
    own ``--- start`` lines aside)."""
    entries = []
    for line in output.splitlines():
        if line.startswith("--- start") or not line.strip():
            continue
        entries.append(json.loads(line))  # a line that is not JSON fails here
    return entries


async def test_json_logs_follow_one_client_by_request_and_connection(
        make_server: MakeServer) -> None:
    srv = await make_server(log_level="debug", log_format="json")
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        given = await http.get(f"{srv.base}/health/live", headers={"x-request-id": "probe-42"})
        made = await http.get(f"{srv.base}/health/live")
        hostile = await http.get(f"{srv.base}/health/live",
                                 headers={"x-request-id": "no spaces\tor tabs"})
    assert given.headers["x-request-id"] == "probe-42"
    assert made.headers["x-request-id"] and made.headers["x-request-id"] != "probe-42"
    assert hostile.headers["x-request-id"] not in ("no spaces\tor tabs", made.headers[
        "x-request-id"])
    client = await open_client(srv.ws_url, additional_headers={"x-request-id": "ws-7"})
    await client.publish(unique_room(), "hi")
    await client.close()
    await srv.astop()
    entries = json_lines(srv.output())
    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    assert {"request_id": "probe-42", "path": "/health/live", "status": 200,
            "method": "GET"}.items() <= next(
        e for e in access if e.get("request_id") == "probe-42").items()
    assert any(e.get("request_id") == made.headers["x-request-id"] for e in access)
    # the WebSocket's lines carry its handshake's request id and its connection id
    ws_lines = [e for e in entries if e.get("request_id") == "ws-7"]
    assert any(e.get("conn") and "WebSocket of alice ends" in str(e["msg"])
               for e in ws_lines), ws_lines
    assert {e["logger"] for e in entries} >= {"uvicorn.error", "uvicorn.access", "roomlog.app"}


async def test_database_passwords_are_not_logged(make_server: MakeServer,
                                                 pg_migrated: str) -> None:
    # The local PostgreSQL trusts every password: this one is accepted, and must not show.
    url = pg_migrated.replace("postgresql+asyncpg://postgres@",
                              "postgresql+asyncpg://postgres:hunter2-sekrit@")
    assert "hunter2-sekrit" in url
    srv = await make_server(url, log_level="debug")
    await srv.astop()
    output = srv.output()
    assert "roomlog ready" in output and "hunter2-sekrit" not in output, output
