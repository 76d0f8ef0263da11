"""The console's overview shows the webhook endpoints each instance delivers, with
their figures, against a real receiver (``tests/backend_server.py``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from roomlog.identity import Role
from tests.backend_server import Backend, Reply
from tests.e2e.conftest import MakeServer
from tests.e2e.support import TIMEOUT, bearer, unique_room

ADMIN = bearer("root", Role.ADMIN)


async def test_the_overview_shows_the_webhooks_an_instance_delivers(
        http: httpx.AsyncClient, make_server: MakeServer) -> None:
    srv = await make_server(webhook_allow_private="true", webhook_poll_interval=0.2,
                            webhook_cursor_flush=0.05, console_report_interval=0.2)
    backend = Backend().start()
    backend.answer = lambda call: Reply(body={})
    try:
        room = unique_room()
        made = await http.post(f"{srv.base}/v1/admin/webhooks", headers=ADMIN,
                               json={"url": backend.url, "rooms": [room],
                                     "secret": backend.secret})
        assert made.status_code == 201, made.text
        webhook = made.json()["webhook"]["id"]
        for n in range(3):
            reply = await http.post(f"{srv.base}/v1/rooms/{room}/messages", headers=ADMIN,
                                    json={"data": n, "id": f"m{n}"})
            assert reply.status_code == 201, reply.text
        deadline = time.monotonic() + TIMEOUT  # an upper bound for a broken hub only
        shown: list[dict[str, Any]] = []
        while not any(w["delivered"] >= 3 for w in shown):
            assert time.monotonic() < deadline, shown
            await asyncio.sleep(0.1)
            body = (await http.get(f"{srv.base}/v1/admin/instances", headers=ADMIN)).json()
            shown = [w for i in body["instances"] for w in i["webhooks"]
                     if w["endpoint"] == webhook]
        [entry] = shown
        assert entry["failed"] == 0 and entry["retrying"] == 0 and entry["lag_messages"] == 0
    finally:
        backend.stop()
