"""Protocol frames and codecs: pure, no event loop."""

from __future__ import annotations

import msgpack
import orjson
import pytest

from roomlog.errors import ErrorCode, ProtocolError, RoomlogError
from roomlog.protocol import (
    CommandFrame,
    Connect,
    Format,
    Message,
    Ping,
    PresenceQuery,
    Publish,
    Since,
    Subscribe,
    Unsubscribe,
    batch,
    decode,
    encode,
    encode_data,
    error_frame,
    frame_id,
    parse_frame,
)


def msg(seq: int = 1, raw: bytes = b'{"a":[1,"\\u00e9"]}') -> Message:
    return Message("chat:x", seq, "ep1", 1700, "u1", raw)


def test_parses_every_client_frame() -> None:
    assert parse_frame({"type": "connect", "token": "t"}) == Connect("t")
    sub = parse_frame({"type": "subscribe", "room": "chat:x",
                       "since": {"epoch": "e", "seq": 4}, "id": "s"})
    assert isinstance(sub, Subscribe)
    assert (str(sub.room), sub.since, sub.id) == ("chat:x", Since("e", 4), "s")
    assert isinstance(parse_frame({"type": "unsubscribe", "room": "chat:x"}), Unsubscribe)
    pub = parse_frame({"type": "publish", "room": "feed:n", "data": None, "id": "p"})
    assert isinstance(pub, Publish) and pub.data is None and pub.id == "p"
    assert parse_frame({"type": "ping"}) == Ping()
    assert not sub.presence
    watching = parse_frame({"type": "subscribe", "room": "chat:x", "presence": True})
    assert isinstance(watching, Subscribe) and watching.presence
    query = parse_frame({"type": "presence", "room": "chat:x", "id": "w"})
    assert isinstance(query, PresenceQuery) and (str(query.room), query.id) == ("chat:x", "w")


@pytest.mark.parametrize("frame, says", [
    ([], "object"),
    ({"type": "nope"}, "unknown frame type"),
    ({"type": 3}, "unknown frame type"),
    ({"type": "connect"}, "token"),
    ({"type": "connect", "token": 5}, "token"),
    ({"type": "subscribe", "room": "chat:x", "since": 5}, "since"),
    ({"type": "subscribe", "room": "chat:x", "since": {"epoch": "e", "seq": "1"}}, "integer"),
    ({"type": "subscribe", "room": "chat:x", "since": {"epoch": "e", "seq": True}}, "integer"),
    ({"type": "subscribe", "room": "chat:x", "since": {"epoch": "e", "seq": -1}}, "negative"),
    ({"type": "publish", "room": "chat:x", "data": 1}, "'id'"),
    ({"type": "publish", "room": "chat:x", "data": 1, "id": ""}, "'id'"),
    ({"type": "publish", "room": "chat:x", "data": 1, "id": "x" * 129}, "'id'"),
    ({"type": "publish", "room": "chat:x", "id": "a"}, "data"),
    ({"type": "ping", "id": 7}, "'id'"),
    ({"type": "subscribe", "room": "chat:x", "presence": "yes"}, "presence"),
])
def test_rejects_malformed_frames_with_bad_frame(frame: object, says: str) -> None:
    with pytest.raises(ProtocolError, match=says) as err:
        parse_frame(frame)
    assert err.value.code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize("room", ["lobby", "chat:", ":x", "Chat:x", "chat:x y", "chat:-x",
                                  "chat:" + "a" * 129, 42, None, "nokind:x"])
def test_rejects_invalid_rooms(room: object) -> None:
    with pytest.raises(RoomlogError) as err:
        parse_frame({"type": "subscribe", "room": room})
    assert err.value.code is ErrorCode.INVALID_ROOM


def test_decode_rejects_garbage_in_both_formats() -> None:
    for fmt, payload in [(Format.JSON, "{nope"), (Format.JSON, b"\xff"),
                         (Format.MSGPACK, b"\xc1"), (Format.MSGPACK, "text frame"),
                         (Format.MSGPACK, msgpack.packb({1: 2}))]:
        with pytest.raises(ProtocolError):
            decode(fmt, payload)
    assert decode(Format.MSGPACK, msgpack.packb({"type": "ping"})) == {"type": "ping"}


def test_command_frames() -> None:
    frame = parse_frame({"type": "command", "room": "queue:set1", "name": "request.vote",
                         "args": {"request_id": "r1"}, "id": "c1", "expected_seq": 7})
    assert isinstance(frame, CommandFrame)
    assert (frame.name, frame.args, frame.id, frame.expected_seq) == (
        "request.vote", {"request_id": "r1"}, "c1", 7)
    assert parse_frame({"type": "command", "room": "queue:s", "name": "queue.open",
                        "id": "c2"}).args == {}  # type: ignore[union-attr]
    with pytest.raises(RoomlogError) as err:
        parse_frame({"type": "command", "room": "queue:s", "name": "x", "args": [1], "id": "c"})
    assert err.value.code is ErrorCode.INVALID_ARGS
    for bad in ({"name": "", "id": "c"}, {"name": "x"}, {"name": "x", "id": "c",
                                                          "expected_seq": -1}):
        with pytest.raises(ProtocolError):
            parse_frame({"type": "command", "room": "queue:s", **bad})


def test_frame_id_is_only_a_usable_id() -> None:
    assert frame_id({"id": "a"}) == "a"
    assert frame_id({"id": 3}) is None and frame_id("x") is None and frame_id({}) is None


def test_message_encodes_the_same_frame_in_every_format() -> None:
    m = msg()
    as_json = orjson.loads(m.encoded(Format.JSON))
    assert as_json == {"type": "message", "room": "chat:x", "seq": 1, "epoch": "ep1",
                       "ts": 1700, "by": "u1", "data": {"a": [1, "é"]}}
    assert msgpack.unpackb(m.encoded(Format.MSGPACK)) == as_json
    sse = m.encoded(Format.SSE)
    assert sse.startswith(b"id: 1\nevent: message\ndata: ") and sse.endswith(b"\n\n")
    assert orjson.loads(sse.split(b"data: ", 1)[1]) == as_json


def test_message_is_encoded_once_per_format() -> None:
    m = msg()
    assert m.encoded(Format.JSON) is m.encoded(Format.JSON)


def test_batch_makes_arrays_clients_can_read() -> None:
    for count in (1, 2, 15, 16, 300):  # msgpack array headers change at 16
        items = [msg(i).encoded(Format.JSON) for i in range(1, count + 1)]
        wire = batch(Format.JSON, items)
        decoded = orjson.loads(wire)
        frames = decoded if isinstance(decoded, list) else [decoded]
        assert [f["seq"] for f in frames] == list(range(1, count + 1))
        packed = batch(Format.MSGPACK, [msg(i).encoded(Format.MSGPACK)
                                        for i in range(1, count + 1)])
        unpacked = msgpack.unpackb(packed)
        frames = unpacked if isinstance(unpacked, list) else [unpacked]
        assert [f["seq"] for f in frames] == list(range(1, count + 1))


def test_encode_data_checks_json_and_size() -> None:
    assert encode_data({"k": [1, 2]}, 100) == b'{"k":[1,2]}'
    with pytest.raises(ProtocolError, match="JSON-compatible"):
        encode_data(b"bytes from msgpack", 100)
    with pytest.raises(RoomlogError) as err:
        encode_data("x" * 200, 100)
    assert err.value.code is ErrorCode.PAYLOAD_TOO_LARGE


def test_error_frame_carries_id_and_retry_after() -> None:
    err = RoomlogError(ErrorCode.RATE_LIMITED, "slow down", retry_after=0.5)
    assert error_frame(err, "p1") == {"type": "error", "code": "RATE_LIMITED",
                                      "message": "slow down", "id": "p1", "retry_after": 0.5}
    assert orjson.loads(encode(Format.JSON, {"type": "pong"})) == {"type": "pong"}
    assert encode(Format.SSE, {"type": "reset", "a": 1}).startswith(b"event: reset\ndata: ")


# -- what the database and the encoder would refuse, refused at the edge (issue 10, §2) --


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize("ident", ["a\x00b", "\x00", "a\ud800"])
def test_ids_the_database_cannot_store_are_bad_frames(ident: str) -> None:
    # PostgreSQL's text refuses NUL; no UTF-8 exists for a lone surrogate. One such id
    # used to fail the whole batch of other clients' writes it was committed with.
    for frame in ({"type": "publish", "room": "chat:x", "data": 1, "id": ident},
                  {"type": "command", "room": "queue:x", "name": "queue.open", "id": ident},
                  {"type": "subscribe", "room": "chat:x", "id": ident}):
        with pytest.raises(ProtocolError, match="'id'"):
            parse_frame(frame)
    assert frame_id({"id": ident}) is None  # nor is it echoed in the error


def test_data_must_be_json_as_the_protocol_says() -> None:
    # msgpack carries NaN, infinity, byte strings and non-string keys; JSON has none
    # of them, and orjson would have stored NaN as null.
    for data in (float("nan"), {"x": [float("inf")]}, -float("inf"), {b"k": 1}, {1: 2},
                 [b"raw"], {"t": msgpack.Timestamp(0)}):
        with pytest.raises(ProtocolError) as err:
            encode_data(data, 10_000, max_depth=64)
        assert err.value.code is ErrorCode.BAD_FRAME


def test_data_and_args_nesting_is_limited() -> None:
    assert encode_data(nested(64), 10_000, max_depth=64)
    with pytest.raises(ProtocolError, match="deeper than 64"):
        encode_data(nested(65), 10_000, max_depth=64)
    with pytest.raises(ProtocolError, match="deeper than 3"):
        encode_data([[[[1]]]], 10_000, max_depth=3)
    frame = {"type": "command", "room": "repair:t1", "name": "ticket.create", "id": "c1",
             "args": {"internal": nested(300)}}  # 300 levels fit in 8 KiB
    with pytest.raises(RoomlogError) as err:
        parse_frame(frame, max_depth=64)
    assert err.value.code is ErrorCode.INVALID_ARGS
    assert "deeper than 64" in err.value.message


@pytest.mark.parametrize("args", [{b"song_id": "s"}, {"x": b"bytes"}, {"x": float("nan")},
                                  {"x": [float("-inf")]}, {"x": "\ud800"}, {"x": 2**64},
                                  {3: "int key"}])
def test_args_must_be_json(args: dict[object, object]) -> None:
    # msgpack byte-string keys in args used to reach the domain's checks and fail
    # with INTERNAL; the rest would have failed at commit, with the whole batch.
    with pytest.raises(RoomlogError) as err:
        parse_frame({"type": "command", "room": "queue:x", "name": "request.submit",
                     "id": "c1", "args": args})
    assert err.value.code is ErrorCode.INVALID_ARGS


def test_a_msgpack_frame_with_nan_data_is_refused_not_stored_as_null() -> None:
    payload = msgpack.packb({"type": "publish", "room": "chat:x", "id": "p1",
                             "data": {"v": float("nan")}})
    frame = parse_frame(decode(Format.MSGPACK, payload))
    assert isinstance(frame, Publish)
    with pytest.raises(ProtocolError, match="NaN"):
        encode_data(frame.data, 10_000, max_depth=64)
