"""Access is checked on what is answered (issue 10, section 8).

A technician removed from a ticket while a long-poll of theirs waits must not get
what was written after the removal: the reader rules apply to the page at the
moment it is returned, not only when the request arrived. Two instances on one
PostgreSQL database and no bus between them: the waiting instance is frozen
(SIGSTOP) while the other commits the removal and an internal note, so when it
wakes the page it reads holds both, on every run.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from typing import Any

import httpx

from roomlog.identity import Role
from tests.e2e.conftest import MakeServer
from tests.e2e.healthy import Bystander, until_long_polls
from tests.e2e.support import Server, bearer, open_client


async def run(http: httpx.AsyncClient, srv: Server, room: str, who: str, role: Role,
              name: str, args: dict[str, Any]) -> dict[str, Any]:
    reply = await http.post(f"{srv.base}/v1/rooms/{room}/commands", headers=bearer(who, role),
                            json={"name": name, "args": args, "id": secrets.token_hex(6)})
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


async def test_a_waiting_long_poll_returns_nothing_written_after_the_removal(
    make_server: MakeServer, pg_migrated: str, http: httpx.AsyncClient,
) -> None:
    # No bus and no periodic head check: nothing but the wait's end wakes the poll.
    waiting_on = await make_server(pg_migrated, bus_check_interval=600)
    writer = await make_server(pg_migrated)
    healthy = await Bystander.join(waiting_on)
    tag = secrets.token_hex(3)
    tech, other, admin, customer = (f"{n}-{tag}" for n in ("tech", "other", "admin", "cust"))
    room = f"repair:T-{tag}"
    created = await run(http, writer, room, tech, Role.TECHNICIAN, "ticket.create", {
        "customer_id": customer, "device": "Laptop", "problem": "Fan", "technicians": [tech]})
    head = created["seq"]

    # The technician waits for what comes after the head; a colleague who stays
    # assigned waits the same way, and must get everything.
    params = {"after": head, "wait": 8}
    removed = asyncio.create_task(http.get(f"{waiting_on.base}/v1/rooms/{room}/messages",
                                           params=params, headers=bearer(tech, Role.TECHNICIAN)))
    await until_long_polls(http, waiting_on, 1)
    await run(http, writer, room, admin, Role.ADMIN, "ticket.assign",
              {"technicians": [tech, other]})
    params = {"after": head + 1, "wait": 8}
    stays = asyncio.create_task(http.get(f"{waiting_on.base}/v1/rooms/{room}/messages",
                                         params=params, headers=bearer(other, Role.TECHNICIAN)))
    await until_long_polls(http, waiting_on, 2)
    assert waiting_on.proc is not None
    os.kill(waiting_on.proc.pid, signal.SIGSTOP)
    try:
        await run(http, writer, room, admin, Role.ADMIN, "ticket.assign",
                  {"technicians": [other]})
        marker = f"internal-{tag}"
        await run(http, writer, room, admin, Role.ADMIN, "note.add",
                  {"text": marker, "visibility": "internal", "priority": "normal"})
    finally:
        os.kill(waiting_on.proc.pid, signal.SIGCONT)

    reply = await removed
    assert marker not in reply.text
    assert reply.status_code == 403, reply.text
    assert reply.json()["error"]["code"] == "FORBIDDEN"
    kept = await stays
    assert kept.status_code == 200, kept.text
    # The colleague's page: the removal and the note, whole (staff see internal notes).
    assert [f["seq"] for f in kept.json()["frames"]] == [head + 2, head + 3]
    assert marker.encode() in kept.content
    await healthy.check()
    await healthy.close()


async def test_a_subscription_racing_a_removal_ends_before_anything_private(
    make_server: MakeServer, pg_migrated: str, http: httpx.AsyncClient,
) -> None:
    """The same on a WebSocket: a subscription whose check passed on one instance
    while the removal committed on another ends with FORBIDDEN, however its start
    and the removal interleave; the internal note never reaches it."""
    # The reader's instance learns of the other's commits by its head check only.
    reader_at = await make_server(pg_migrated, bus_check_interval=0.2)
    writer = await make_server(pg_migrated)
    healthy = await Bystander.join(reader_at)
    tag = secrets.token_hex(3)
    tech, admin, customer = (f"{n}-{tag}" for n in ("tech", "admin", "cust"))
    for attempt in range(6):
        room = f"repair:T-{tag}-{attempt}"
        await run(http, writer, room, tech, Role.TECHNICIAN, "ticket.create", {
            "customer_id": customer, "device": "Phone", "problem": "Battery",
            "technicians": [tech]})
        client = await open_client(reader_at.ws_url, user=tech, role=Role.TECHNICIAN)
        await client.send({"type": "subscribe", "room": room, "id": "s"})
        await asyncio.sleep(attempt * 0.01)  # a different interleaving each time
        await run(http, writer, room, admin, Role.ADMIN, "ticket.assign",
                  {"technicians": [f"x-{tag}"]})
        marker = f"internal-{tag}-{attempt}"
        await run(http, writer, room, admin, Role.ADMIN, "note.add",
                  {"text": marker, "visibility": "internal", "priority": "normal"})
        error = await client.expect("error")
        assert error["code"] == "FORBIDDEN", error
        assert (await client.ping())["type"] == "pong"
        assert not any(marker in str(frame) for frame in client.frames)
        await client.close()
        await healthy.beat()
    await healthy.check()
    await healthy.close()
