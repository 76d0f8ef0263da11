"""Retention and epochs: a position that cannot be replayed gets a ``reset``.

Resuming from a trimmed seq never yields a partial replay; a wrong epoch is
never trusted; an admin reset of a room moves live subscribers to the new
epoch explicitly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from roomlog.identity import Role
from tests.e2e.support import Server, WsClient, bearer, open_client, unique_room

KEEP = 10


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server keeping KEEP messages per room, on each backend (shared by the module)."""
    url = request.getfixturevalue("pg_migrated") if request.param == "postgresql" else None
    server = Server(tmp_path_factory.mktemp(f"retention-{request.param}"), url,
                    retention_max_messages=KEEP)
    server.start()
    yield server
    server.stop()
    server.assert_clean_log()


async def filled_room(srv: Server, n: int) -> tuple[str, str, WsClient]:
    """A room with ``n`` messages; returns (room, epoch, a service publisher)."""
    room = unique_room()
    pub = await open_client(srv.ws_url, user="backend", role=Role.SERVICE)
    acks = await pub.publish_many(room, [{"n": i} for i in range(1, n + 1)])
    assert [a["seq"] for a in acks] == list(range(1, n + 1))
    return room, acks[0]["epoch"], pub


async def first_after(client: WsClient, room: str, frame_type: str) -> list[dict[str, Any]]:
    """Frames of ``room`` up to and including the first of ``frame_type``."""
    frames = []
    while True:
        frame = await client.next()
        if frame.get("room") == room:
            frames.append(frame)
            if frame["type"] == frame_type:
                return frames


async def test_resume_from_a_trimmed_seq_is_a_reset_never_a_partial_replay(
    srv: Server, http: httpx.AsyncClient,
) -> None:
    room, epoch, pub = await filled_room(srv, 30)
    info = (await http.get(f"{srv.base}/v1/rooms/{room}", headers=bearer())).json()
    assert (info["epoch"], info["head"], info["trimmed"]) == (epoch, 30, 30 - KEEP)

    sub = await open_client(srv.ws_url)
    subscribed = await sub.subscribe(room, since={"epoch": epoch, "seq": 5})
    assert (subscribed["head"], subscribed["replayed"]) == (30, 0)
    reset = await sub.next()
    assert reset == {"type": "reset", "room": room, "reason": "trimmed", "epoch": epoch,
                     "seq": 30, "trimmed": 30 - KEEP}
    # Nothing of the partial range 21..30 follows: the next message is the next new one.
    await pub.publish(room, {"n": 31})
    frames = await first_after(sub, room, "message")
    assert [(f["type"], f.get("seq")) for f in frames] == [("message", 31)]

    # Long-polling from the trimmed range says the same.
    body = (await http.get(f"{srv.base}/v1/rooms/{room}/messages",
                           params={"after": 5, "epoch": epoch}, headers=bearer())).json()
    assert [f["type"] for f in body["frames"]] == ["reset"]
    assert body["frames"][0]["reason"] == "trimmed"
    await sub.close()
    await pub.close()


async def test_resume_from_the_oldest_kept_position_replays_everything_kept(srv: Server) -> None:
    room, epoch, pub = await filled_room(srv, 30)
    sub = await open_client(srv.ws_url)
    subscribed = await sub.subscribe(room, since={"epoch": epoch, "seq": 30 - KEEP})
    assert subscribed["replayed"] == KEEP
    got = await sub.messages(room, KEEP)
    assert [m["seq"] for m in got] == list(range(31 - KEEP, 31))
    await sub.ping()
    assert not [f for f in sub.frames if f["type"] == "reset"]
    await sub.close()
    await pub.close()


@pytest.mark.parametrize("since", [{"epoch": "not-the-epoch", "seq": 3}, "future"])
async def test_a_position_in_another_log_is_a_reset_with_reason_epoch(
    srv: Server, since: Any,
) -> None:
    room, epoch, pub = await filled_room(srv, 5)
    if since == "future":  # the right epoch, but a seq this log never reached
        since = {"epoch": epoch, "seq": 99}
    sub = await open_client(srv.ws_url)
    subscribed = await sub.subscribe(room, since=since)
    assert (subscribed["epoch"], subscribed["head"], subscribed["replayed"]) == (epoch, 5, 0)
    assert await sub.next() == {"type": "reset", "room": room, "reason": "epoch",
                                "epoch": epoch, "seq": 5, "trimmed": 0}
    await pub.publish(room, {"n": 6})
    frames = await first_after(sub, room, "message")
    assert [(f["type"], f.get("seq")) for f in frames] == [("message", 6)]
    await sub.close()
    await pub.close()


async def test_admin_reset_moves_live_subscribers_to_the_new_epoch(
    srv: Server, http: httpx.AsyncClient,
) -> None:
    room, epoch, pub = await filled_room(srv, 3)
    subs = [await open_client(srv.ws_url, user=f"u{i}") for i in range(3)]
    for sub in subs:
        await sub.subscribe(room)

    # Only operators may reset a room.
    denied = await http.delete(f"{srv.base}/v1/rooms/{room}", headers=bearer("g", Role.GUEST))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "FORBIDDEN"

    reply = await http.delete(f"{srv.base}/v1/rooms/{room}", headers=bearer("a", Role.ADMIN))
    assert reply.status_code == 200
    new = reply.json()
    assert new["room"] == room and new["head"] == 0 and new["epoch"] != epoch

    for sub in subs:
        assert await sub.expect("reset", room=room) == {
            "type": "reset", "room": room, "reason": "epoch", "epoch": new["epoch"],
            "seq": 0, "trimmed": 0}
    ack = await pub.publish(room, {"n": "fresh"})
    assert (ack["seq"], ack["epoch"]) == (1, new["epoch"])
    for sub in subs:
        [message] = await sub.messages(room, 1)
        assert (message["seq"], message["epoch"], message["data"]) == (1, new["epoch"],
                                                                       {"n": "fresh"})
        await sub.close()
    # A client still holding the old epoch is told so when it resumes.
    late = await open_client(srv.ws_url)
    await late.subscribe(room, since={"epoch": epoch, "seq": 3})
    assert (await late.expect("reset", room=room))["reason"] == "epoch"
    await late.close()
    await pub.close()
