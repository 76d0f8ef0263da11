"""A reconnect storm's two defences, over real sockets:

* many clients resuming one room from one position are served by shared log
  reads (``roomlog/log/shared.py``): while a lock held by the test keeps the
  first read of messages waiting in PostgreSQL, the others join the one that
  waits for its turn, and every client still gets every message;
* a saturated server refuses new handshakes at once with HTTP 503 and
  ``Retry-After`` (``roomlog/admission.py``): the test stops the server process
  (SIGSTOP) so its event loop is late by far more than ``admission_max_lag``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import asyncpg
import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.e2e.conftest import MakeServer
from tests.e2e.support import TIMEOUT, migrate, open_client, unique_room
from tests.e2e.test_cluster import eventually, metric

CLIENTS = 30
MESSAGES = 20


async def test_clients_resuming_one_room_share_the_log_reads(
        make_server: MakeServer, own_pg_url: str, http: httpx.AsyncClient) -> None:
    migrate(own_pg_url)
    srv = await make_server(own_pg_url, read_concurrency=2)
    room = unique_room()
    writer = await open_client(srv.ws_url, user="writer")
    sub = await writer.subscribe(room)
    await writer.publish_many(room, [{"n": n} for n in range(MESSAGES)])
    since = {"epoch": sub["epoch"], "seq": 0}
    before = await metric(http, srv, "roomlog_catch_up_shared_total")
    admin = await asyncpg.connect(own_pg_url.replace("+asyncpg", ""))
    clients = []
    try:
        lock = admin.transaction()
        await lock.start()
        await admin.execute("LOCK TABLE rt_messages IN ACCESS EXCLUSIVE MODE")
        clients = [await open_client(srv.ws_url, user=f"c{i}") for i in range(CLIENTS)]
        for client in clients:  # a resume reads its first page before it says subscribed
            await client.send({"type": "subscribe", "room": room, "since": since})
        # Two reads may run (read_concurrency) and wait on the lock, a third waits
        # for its turn, and every other client's identical read joins that one.
        await eventually(lambda: metric(http, srv, "roomlog_catch_up_shared_total"),
                         lambda shared: shared - before >= CLIENTS - 3,
                         what="the resuming clients joining one read")
        await lock.rollback()
        for client in clients:
            await client.expect("subscribed", room=room)
            frames = await client.messages(room, MESSAGES)
            assert [f["seq"] for f in frames] == list(range(1, MESSAGES + 1))
            assert [f["data"]["n"] for f in frames] == list(range(MESSAGES))
    finally:
        await admin.close()
        for client in [writer, *clients]:
            await client.close()


async def test_a_saturated_server_refuses_handshakes_with_a_retry_hint(
        make_server: MakeServer, http: httpx.AsyncClient) -> None:
    srv = await make_server(admission_max_lag=0.2, admission_retry_after=3)
    assert srv.proc is not None
    early = await open_client(srv.ws_url, user="early")  # held before the storm: kept
    room = unique_room()
    await early.subscribe(room)
    os.kill(srv.proc.pid, signal.SIGSTOP)
    try:
        attempt = asyncio.create_task(open_client(srv.ws_url, user="late"))
        await asyncio.sleep(1.0)  # the loop is stopped: its timer is late by this much
    finally:
        os.kill(srv.proc.pid, signal.SIGCONT)
    with pytest.raises(InvalidStatus) as refused:
        await attempt
    response = refused.value.response
    assert response.status_code == 503
    assert 3 <= int(response.headers["Retry-After"]) <= 6
    assert b"UNAVAILABLE" in response.body
    assert await metric(http, srv, 'roomlog_connections_refused_total{reason="saturated"}') >= 1

    async def connects() -> bool:  # the loop catches up: handshakes are taken again
        with contextlib.suppress(InvalidStatus):
            client = await open_client(srv.ws_url, user="later")
            await client.close()
            return True
        return False

    await eventually(connects, bool, within=TIMEOUT, what="a handshake taken after the lag")
    await early.ping()  # the connection it held was never touched
    await early.close()
