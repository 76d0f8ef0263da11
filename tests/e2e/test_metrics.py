"""``GET /metrics`` after real traffic: process and Python collectors, commands by kind,
command and outcome, HTTP responses by route template, refusals and rate limits."""

from __future__ import annotations

import re

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from roomlog.identity import Role
from tests.e2e.conftest import MakeServer
from tests.e2e.support import TIMEOUT, bearer, post_command, unique_room

Sample = tuple[str, frozenset[tuple[str, str]]]


def samples(text: str) -> dict[Sample, float]:
    """(name, labels) -> value of every sample in an exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            name, _, labels = key.partition("{")
            pairs = frozenset(re.findall(r'(\w+)="([^"]*)"', labels))
            out[(name, pairs)] = float(value)
    return out


def sample(name: str, **labels: str) -> Sample:
    return name, frozenset(labels.items())


async def test_metrics_count_what_happened(make_server: MakeServer) -> None:
    srv = await make_server(publish_burst=2, publish_rate=0.001)
    room = unique_room("queue")
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        ok = await post_command(http, srv, room, "request.submit",
                                {"song_id": "s1", "title": "T", "artist": "A"}, user="g1")
        assert ok.status_code == 200, ok.text
        refused = await post_command(http, srv, room, "request.accept",
                                     {"request_id": "nope"}, user="g1")
        assert refused.status_code == 403, refused.text
        made_up = await post_command(http, srv, room, "request.teleport", {}, user="g2")
        assert made_up.status_code == 400, made_up.text
        chat = unique_room()
        codes = [(await http.post(f"{srv.base}/v1/rooms/{chat}/messages",
                                  json={"id": f"m{n}", "data": n},
                                  headers=bearer("g3", Role.GUEST))).status_code
                 for n in range(3)]
        assert codes == [201, 201, 429]
        assert (await http.get(f"{srv.base}/no/such/page")).status_code == 404
        try:
            async with connect(srv.ws_url, subprotocols=["roomlog.v0.xml"],  # type: ignore[list-item]
                               open_timeout=TIMEOUT):
                raise AssertionError("an unknown subprotocol was accepted")
        except InvalidStatus:
            pass
        text = (await http.get(f"{srv.base}/metrics")).text
    got = samples(text)
    commands = "roomlog_commands_total"
    assert got[sample(commands, kind="queue", command="request.submit", code="ok")] == 1
    assert got[sample(commands, kind="queue", command="request.accept", code="FORBIDDEN")] == 1
    # a made-up command name is not a label of its own
    assert got[sample(commands, kind="queue", command="other", code="UNKNOWN_COMMAND")] == 1
    assert "teleport" not in text
    http_total, messages = "roomlog_http_requests_total", "/v1/rooms/{room}/messages"
    assert got[sample(http_total, method="POST", route=messages, status="201")] == 2
    assert got[sample(http_total, method="POST", route=messages, status="429")] == 1
    # a path no API route takes falls to the web app's mount: its template, not the path
    assert got[sample(http_total, method="GET", route="/{path}", status="404")] == 1
    assert "/no/such/page" not in text
    assert got[sample("roomlog_rate_limited_total", transport="http", kind="write")] == 1
    assert got[sample("roomlog_rate_limited_total", transport="websocket", kind="write")] == 0
    assert got[sample("roomlog_connections_refused_total", reason="subprotocol")] == 1
    assert got[sample("roomlog_ban_hits_total")] == 0
    assert got[sample("roomlog_database_up")] == 1 and got[sample("roomlog_draining")] == 0
    assert got[sample("process_resident_memory_bytes")] > 0
    assert got[sample("process_open_fds")] > 0
    assert any(name == "python_info" for name, _ in got)
    assert any(name == "python_gc_collections_total" for name, _ in got)
    assert re.search(r'roomlog_build_info\{version="[^"]+"\} 1', text)


async def test_what_the_hub_made_while_starting_is_frozen_out_of_full_collections(
        make_server: MakeServer) -> None:
    # A full collection walked every module, pool and route (~100k objects: pauses of
    # 50-170 ms under load, the p99 of webhooks and fan-out); frozen, it skips them.
    frozen = await make_server()
    thawed = await make_server(gc_freeze="false")
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        got = samples((await http.get(f"{frozen.base}/metrics")).text)
        plain = samples((await http.get(f"{thawed.base}/metrics")).text)
    assert got[sample("roomlog_gc_frozen_objects")] > 10_000
    assert plain[sample("roomlog_gc_frozen_objects")] == 0
