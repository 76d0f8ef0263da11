"""The WebSocket wire format, without sockets (roomlog.wsframes)."""

from __future__ import annotations

import base64
import os

import pytest

from roomlog.wsframes import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameReader,
    HandshakeError,
    WsError,
    accept_key,
    close_frame,
    frame,
    parse_request,
    response,
    unmask,
)

MASK = b"\x37\xfa\x21\x3d"


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = MASK,
                 rsv: int = 0) -> bytes:
    """A frame as a client sends it (masked unless ``mask`` is None)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes((b0, bit | n))
    elif n < 65536:
        head = bytes((b0, bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, bit | 127)) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + unmask(payload, mask)


def read_all(reader: FrameReader) -> list[tuple[int, str | bytes]]:
    out = []
    while (got := reader.next()) is not None:
        out.append(got)
    return out


def test_unmask_is_its_own_inverse_for_every_length() -> None:
    for n in (0, 1, 3, 4, 5, 125, 126, 1000):
        data = os.urandom(n)
        masked = unmask(data, MASK)
        assert len(masked) == n and unmask(masked, MASK) == data
    assert unmask(b"\x00\x00\x00\x00\x00", MASK) == MASK + MASK[:1]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_sizes_at_the_length_encoding_edges_round_trip(size: int) -> None:
    payload = os.urandom(size)
    reader = FrameReader(max_size=1 << 20)
    reader.feed(client_frame(BINARY, payload))
    assert read_all(reader) == [(BINARY, payload)]
    assert reader.buffered == 0
    wire = frame(BINARY, payload)  # the server's own frames: unmasked, same encoding
    header = {0: 2, 125: 2, 126: 4, 65535: 4, 65536: 10}[size]
    assert len(wire) == header + size and wire[header:] == payload


def test_a_frame_fed_a_byte_at_a_time_comes_out_once_whole() -> None:
    wire = client_frame(TEXT, "héllo".encode() * 40)
    reader = FrameReader(max_size=1 << 20)
    got = []
    for i in range(len(wire)):
        reader.feed(wire[i:i + 1])
        got += read_all(reader)
    assert got == [(TEXT, "héllo" * 40)]


def test_fragments_are_joined_and_control_frames_interleave() -> None:
    reader = FrameReader(max_size=1 << 20)
    reader.feed(client_frame(TEXT, b"one ", fin=False)
                + client_frame(PING, b"p1")
                + client_frame(0, b"two ", fin=False)
                + client_frame(PONG, b"")
                + client_frame(0, b"three")
                + client_frame(BINARY, b"\x00\x01"))
    assert read_all(reader) == [(PING, b"p1"), (PONG, b""), (TEXT, "one two three"),
                                (BINARY, b"\x00\x01")]


def test_an_unmasked_client_frame_is_1002() -> None:
    reader = FrameReader(max_size=1000)
    reader.feed(client_frame(TEXT, b"hi", mask=None))
    with pytest.raises(WsError) as err:
        reader.next()
    assert err.value.code == 1002


@pytest.mark.parametrize("wire", [
    client_frame(0x3, b"x"),  # reserved data opcode
    client_frame(0xB, b"x"),  # reserved control opcode
    client_frame(TEXT, b"x", rsv=0x40),  # RSV1 without an extension
    client_frame(PING, b"x", fin=False),  # fragmented control frame
    client_frame(PING, b"x" * 126),  # control frame above 125 bytes
    client_frame(0, b"x"),  # continuation with nothing to continue
    client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"),  # new message inside one
    client_frame(CLOSE, b"\x03"),  # close payload of one byte
    client_frame(CLOSE, (1005).to_bytes(2, "big")),  # a code no peer may send
    client_frame(CLOSE, (999).to_bytes(2, "big")),
])
def test_protocol_errors_are_1002(wire: bytes) -> None:
    reader = FrameReader(max_size=1000)
    reader.feed(wire)
    with pytest.raises(WsError) as err:
        read_all(reader)
    assert err.value.code == 1002


def test_close_frames_with_good_codes_pass() -> None:
    reader = FrameReader(max_size=1000)
    reader.feed(client_frame(CLOSE, b"") + client_frame(CLOSE, (1000).to_bytes(2, "big") + b"bye")
                + client_frame(CLOSE, (4008).to_bytes(2, "big")))
    assert [p for _, p in read_all(reader)] == [b"", b"\x03\xe8bye", b"\x0f\xa8"]


def test_a_frame_above_max_size_is_1009_before_its_payload_arrives() -> None:
    reader = FrameReader(max_size=65536)
    reader.feed(client_frame(BINARY, b"x" * 65537)[:14])  # the header only
    with pytest.raises(WsError) as err:
        reader.next()
    assert err.value.code == 1009


def test_a_message_whose_fragments_add_up_past_max_size_is_1009() -> None:
    reader = FrameReader(max_size=100)
    reader.feed(client_frame(BINARY, b"x" * 60, fin=False) + client_frame(0, b"x" * 60))
    with pytest.raises(WsError) as err:
        read_all(reader)
    assert err.value.code == 1009


def test_text_that_is_not_utf8_is_1007_also_across_fragments() -> None:
    reader = FrameReader(max_size=1000)
    reader.feed(client_frame(TEXT, b"\xc3", fin=False) + client_frame(0, b"\xa9"))
    assert read_all(reader) == [(TEXT, "é")]  # a character split over two fragments is fine
    reader.feed(client_frame(TEXT, b"\xff\xfe"))
    with pytest.raises(WsError) as err:
        reader.next()
    assert err.value.code == 1007
    reader = FrameReader(max_size=1000)
    reader.feed(client_frame(CLOSE, b"\x03\xe8\xff"))
    with pytest.raises(WsError) as err:
        reader.next()
    assert err.value.code == 1007


def test_an_idle_reader_holds_no_buffer() -> None:
    reader = FrameReader(max_size=1000)
    reader.feed(client_frame(TEXT, b"hi") + client_frame(TEXT, b"x")[:3])
    assert reader.next() == (TEXT, "hi") and reader.next() is None and reader.buffered == 3
    reader.feed(client_frame(TEXT, b"x")[3:])
    assert reader.next() == (TEXT, "x") and reader.buffered == 0


def test_close_frame_cuts_the_reason_to_fit_a_control_frame() -> None:
    wire = close_frame(4008, "x" * 300)
    assert wire[0] == 0x88 and wire[1] == 125 and wire[2:4] == (4008).to_bytes(2, "big")


HEAD = (b"GET /ws?x=1 HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: keep-alive, "
        b"Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"sec-websocket-version: 13\r\nsec-websocket-protocol: a, roomlog.v1.json\r\n")


def test_a_handshake_is_parsed_and_its_key_answered_as_rfc_6455_says() -> None:
    request = parse_request(HEAD)
    assert request.path == "/ws" and request.query == b"x=1"
    assert request.subprotocols == ["a", "roomlog.v1.json"]
    assert accept_key(request.key) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3
    assert response(101, [(b"upgrade", b"websocket")]).startswith(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n")
    assert b"content-length: 2\r\n\r\nno" in response(403, [], b"no")


@pytest.mark.parametrize(("change", "status"), [
    ((b"upgrade: websocket", b"upgrade: h2c"), 400),
    ((b"keep-alive, Upgrade", b"keep-alive"), 400),
    ((b"version: 13", b"version: 8"), 426),
    ((b"dGhlIHNhbXBsZSBub25jZQ==", b"short"), 400),
    ((b"dGhlIHNhbXBsZSBub25jZQ==", base64.b64encode(b"x" * 15)), 400),
    ((b"GET ", b"POST "), 400),
])
def test_a_request_that_is_no_handshake_is_refused(change: tuple[bytes, bytes],
                                                    status: int) -> None:
    with pytest.raises(HandshakeError) as err:
        parse_request(HEAD.replace(*change))
    assert err.value.status == status
