"""The msgpack subprotocol carries the same frames as JSON, as binary frames."""

from __future__ import annotations

import msgpack

from roomlog.identity import Role
from tests.e2e.support import JSON, MSGPACK, Server, open_client, unique_room

DATA = [
    {"text": "hello", "n": 1}, [1, 2.5, "three", None, False], "string", 2**40, -1,
    {"nested": {"list": [{"a": []}], "unicode": "ß日本😀"}}, None, 0.1,
]


async def test_msgpack_and_json_subscribers_get_equal_frames(server: Server) -> None:
    room = unique_room()
    as_json = await open_client(server.ws_url, fmt=JSON, user="j")
    as_pack = await open_client(server.ws_url, fmt=MSGPACK, user="m")
    sub_json, sub_pack = await as_json.subscribe(room), await as_pack.subscribe(room)
    assert sub_json == sub_pack

    # A msgpack publisher; acks look the same as over JSON.
    pub = await open_client(server.ws_url, fmt=MSGPACK, user="backend", role=Role.SERVICE)
    acks = await pub.publish_many(room, DATA)
    assert [a["seq"] for a in acks] == list(range(1, len(DATA) + 1))
    json_frames = await as_json.messages(room, len(DATA))
    pack_frames = await as_pack.messages(room, len(DATA))
    assert pack_frames == json_frames
    assert [f["data"] for f in pack_frames] == DATA

    # Control frames too: pong, error, unsubscribed, replayed messages.
    assert (await as_pack.ping())["type"] == "pong"
    await as_pack.send({"type": "subscribe", "room": "nope", "id": "bad"})
    await as_json.send({"type": "subscribe", "room": "nope", "id": "bad"})
    assert await as_pack.expect("error") == await as_json.expect("error")
    await as_pack.send({"type": "unsubscribe", "room": room, "id": "u"})
    await as_json.send({"type": "unsubscribe", "room": room, "id": "u"})
    assert await as_pack.expect("unsubscribed") == await as_json.expect("unsubscribed")
    since = {"epoch": sub_json["epoch"], "seq": 2}
    assert await as_pack.subscribe(room, since=since) == await as_json.subscribe(room,
                                                                                  since=since)
    assert (await as_pack.messages(room, len(DATA) - 2)
            == await as_json.messages(room, len(DATA) - 2)
            == json_frames[2:])
    for client in (as_json, as_pack, pub):
        await client.close()


async def test_msgpack_bad_frames_are_coded_errors(server: Server) -> None:
    client = await open_client(server.ws_url, fmt=MSGPACK)
    room = unique_room()
    accepted = await client.publish(room, "kept")
    for bad in (
        b"\xc1",  # a byte msgpack never uses
        b"\x92\x01",  # a truncated array
        msgpack.packb([1, 2, 3]),  # not a map
        msgpack.packb({"type": "publish", "room": room, "data": 1, "id": 5}),  # id not a str
    ):
        await client.send_raw(bad)
        assert (await client.expect("error"))["code"] == "BAD_FRAME"
        assert (await client.ping())["type"] == "pong"
    # A text frame on the binary subprotocol.
    await client.send_raw('{"type": "ping"}')
    assert (await client.expect("error"))["code"] == "BAD_FRAME"
    # Still usable, and what was accepted is still there.
    await client.subscribe(room, since={"epoch": accepted["epoch"], "seq": 0})
    [message] = await client.messages(room, 1)
    assert (message["seq"], message["data"]) == (1, "kept")
    await client.close()
