"""PostgresBus under failure, against a private PostgreSQL (tests/pg_server.py): a
restart of the database, and an instance that dies without closing.

The contract is the Bus port's (``roomlog.bus``), as for Redis
(tests/bus/test_redis_failures.py): every change of ``connected`` is reported, every
subscribed room is resynced after a reconnect, and a dead instance's presence entries
vanish within ``presence_ttl`` with one ``leave`` each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from roomlog.bus.postgres import PostgresBus
from roomlog.log.sql import SqlLog
from tests.bus.test_contract import REDIS_OPTIONS, Node, PostgresNet, batch, eventually, row
from tests.bus.test_redis_failures import changes_only, down_then_up, resynced_after_down
from tests.pg_server import PgServer

TTL = REDIS_OPTIONS["presence_ttl"]
ENTRY = {"user": "u1", "role": "member"}


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PgServer]:
    """One private server for the module (the restart test leaves it running)."""
    pg = PgServer().start()
    try:
        yield pg
    finally:
        pg.cleanup()


@pytest.fixture
async def net(private_pg: PgServer) -> AsyncIterator[PostgresNet]:
    log = SqlLog(private_pg.url, migrate=True)  # the bus's tables (migration 0007)
    await log.open()
    await log.close()
    made = PostgresNet(private_pg.url)
    yield made
    private_pg.resume()
    await made.close()


async def _listed(node: Node, room: str) -> set[str]:
    return set(await node.bus.presence(room))


async def test_a_database_restart_is_reported_and_resynced(
        net: PostgresNet, private_pg: PgServer, room: str) -> None:
    a, b = await net.node(), await net.node()
    rooms = [room, room + "-2"]
    await net.subscribe(b, *rooms)
    a.bus.presence_join(room, "a.1", ENTRY)

    async def joined() -> bool:
        return await _listed(b, room) == {"a.1"}

    await eventually(joined, "the join")
    await asyncio.to_thread(private_pg.restart)  # connections cut, same port and data
    for node in (a, b):
        await node.inbound.until(lambda n=node: down_then_up(n.inbound),
                                 "bus_state(False) then bus_state(True)")
        assert changes_only(node.inbound.states), node.inbound.states
        assert node.bus.connected and node.bus.reconnects >= 1
    for name in rooms:
        await b.inbound.until(lambda r=name: resynced_after_down(b.inbound, r),
                              f"resync of {name} after the reconnect")
    messages = batch(room, 100, 101)
    b.inbound.received.clear()
    a.bus.publish(room, messages)
    a.bus.signal(room, {"after": "restart"})
    await b.inbound.until(lambda: (room, {"after": "restart"}) in b.inbound.signals,
                          "a signal after the restart")
    assert b.inbound.rows(room) == [row(m) for m in messages]
    await eventually(joined, "presence after the restart")


async def test_a_dead_instances_entries_vanish_with_one_leave_each(
        net: PostgresNet, room: str) -> None:
    a, dead = await net.node(), await net.node()
    await net.subscribe(a, room)
    a.bus.presence_join(room, "a.1", ENTRY)
    for conn in ("d.1", "d.2"):
        dead.bus.presence_join(room, conn, {"user": f"user-{conn}", "role": "member"})

    async def listed(expected: set[str]) -> bool:
        return await _listed(a, room) == expected

    await eventually(lambda: listed({"a.1", "d.1", "d.2"}), "the joins")
    bus = dead.bus  # a SIGKILL, as far as the database can tell: no heartbeat, no close()
    assert isinstance(bus, PostgresBus)
    net.nodes.remove(dead)
    for task in bus._tasks:
        task.cancel()
    await asyncio.gather(*bus._tasks, return_exceptions=True)
    assert bus._pool is not None
    bus._pool.terminate()
    bound = TTL * 3 + 3.0
    await eventually(lambda: listed({"a.1"}), "the dead instance's entries gone", bound=bound)

    def leaves() -> list[dict[str, Any]]:
        return [p for p in a.inbound.signalled(room) if p.get("presence") == "leave"]

    await a.inbound.until(lambda: len(leaves()) >= 2, "a leave per dead connection",
                          bound=bound + 3)
    await asyncio.sleep(TTL)  # more sweeps: nobody finds the dead instance again
    assert sorted(leaves(), key=lambda p: p["conn"]) == [
        {"presence": "leave", "conn": "d.1", "user": "user-d.1", "role": "member"},
        {"presence": "leave", "conn": "d.2", "user": "user-d.2", "role": "member"}]
