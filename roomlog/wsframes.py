"""The WebSocket wire format (RFC 6455) for a server, sans I/O: the opening
handshake's request and answers, the frames a client sends and the frames a
server writes. No asyncio, no sockets: bytes in, events or bytes out.

What the native transport (:mod:`roomlog.transports.native_ws`) needs and no
more: no extensions (permessage-deflate stays with the ASGI engine), no client
side. :class:`FrameReader` keeps nothing between messages (an idle connection
holds no buffer) and refuses a frame as soon as its header shows it is wrong:

* 1002 (protocol error): a client frame without a mask, reserved bits set, an
  unknown opcode, a fragmented or oversized (>125 bytes) control frame, a
  continuation without a start or a new message inside a fragmented one, a
  close frame with a 1-byte payload or a code a peer may not send;
* 1009 (too big): a frame or a message above ``max_size``, before its payload
  is read;
* 1007 (invalid data): a text message or a close reason that is not UTF-8.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import NamedTuple
from urllib.parse import unquote

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "FrameReader",
    "HandshakeError",
    "Request",
    "WsError",
    "accept_key",
    "close_frame",
    "frame",
    "parse_request",
    "response",
    "unmask",
]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA = frozenset({CONTINUATION, TEXT, BINARY})
_CONTROL = frozenset({CLOSE, PING, PONG})
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: close codes a peer may send (RFC 6455 7.4.1, and the IANA registry up to 1014)
_PEER_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
                         1014})
_PHRASES = {101: "Switching Protocols", 400: "Bad Request", 403: "Forbidden",
            426: "Upgrade Required", 500: "Internal Server Error",
            503: "Service Unavailable"}


class WsError(Exception):
    """The client broke the protocol: close with ``code`` (1002, 1007, 1009)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class HandshakeError(Exception):
    """The upgrade request is not a WebSocket handshake: answer ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Request(NamedTuple):
    """A WebSocket upgrade request: header names are lower-case bytes."""

    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    key: bytes
    subprotocols: list[str]

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip().lower() for t in value.split(b",")]


def parse_request(head: bytes) -> Request:
    """The request line and headers of an upgrade (``head`` ends at the blank line);
    :class:`HandshakeError` (400, 426) if it is not a WebSocket handshake."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or parts[2] != b"HTTP/1.1":
        raise HandshakeError(400, "not a GET HTTP/1.1 request")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise HandshakeError(400, "malformed header line")
        headers.append((name.strip().lower(), value.strip()))
    connection: list[bytes] = []
    upgrade: list[bytes] = []
    key: bytes | None = None
    version: bytes | None = None
    offered: list[str] = []
    for name, value in headers:
        if name == b"connection":
            connection += _tokens(value)
        elif name == b"upgrade":
            upgrade += _tokens(value)
        elif name == b"sec-websocket-key":
            if key is not None:
                raise HandshakeError(400, "more than one Sec-WebSocket-Key header")
            key = value
        elif name == b"sec-websocket-version":
            version = value
        elif name == b"sec-websocket-protocol":
            offered += [t.strip() for t in value.decode("latin-1").split(",") if t.strip()]
    if b"upgrade" not in connection:
        raise HandshakeError(400, "missing Connection: Upgrade")
    if upgrade != [b"websocket"]:
        raise HandshakeError(400, "missing Upgrade: websocket")
    if version != b"13":
        raise HandshakeError(426, "unsupported Sec-WebSocket-Version (13 only)")
    try:
        if key is None or len(base64.b64decode(key, validate=True)) != 16:
            raise HandshakeError(400, "missing or invalid Sec-WebSocket-Key")
    except binascii.Error:
        raise HandshakeError(400, "invalid Sec-WebSocket-Key") from None
    target = parts[1].decode("latin-1")
    raw_path, _, query = target.partition("?")
    return Request(unquote(raw_path), query.encode("latin-1"), headers, key, offered)


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value for a client's key."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def response(status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    """An HTTP/1.1 answer to the handshake; with a body it says ``Connection: close``."""
    out = [b"HTTP/1.1 %d %s\r\n" % (status, _PHRASES.get(status, "").encode())]
    for name, value in headers:
        out += [name, b": ", value, b"\r\n"]
    if status != 101:
        out.append(b"connection: close\r\ncontent-length: %d\r\n" % len(body))
    out += [b"\r\n", body]
    return b"".join(out)


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked (server) frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; the reason is cut to fit a control frame (123 bytes)."""
    return frame(CLOSE, code.to_bytes(2, "big") + reason.encode()[:123])


def unmask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """``data`` XOR the 4-byte ``mask``, repeated (one big-integer XOR: no loop)."""
    n = len(data)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(
        n, "little")


def _check_close(payload: bytes) -> None:
    if len(payload) == 1:
        raise WsError(1002, "close frame too short")
    if payload:
        code = int.from_bytes(payload[:2], "big")
        if code not in _PEER_CODES and not 3000 <= code < 5000:
            raise WsError(1002, f"invalid close code {code}")
        try:
            payload[2:].decode()
        except UnicodeDecodeError:
            raise WsError(1007, "close reason is not UTF-8") from None


class FrameReader:
    """Client frames in, messages and control frames out, one at a time.

    :meth:`feed` bytes as they come; :meth:`next` returns ``(opcode, payload)``:
    a whole message (``TEXT`` as ``str``, ``BINARY`` as ``bytes``, fragments
    joined) or a control frame (``PING``, ``PONG``, ``CLOSE``, payload bytes), or
    None until more bytes come. Raises :class:`WsError`; after that the reader is
    spent (feed nothing more).
    """

    __slots__ = ("_buf", "_max", "_parts", "_pos", "_size", "_start")

    def __init__(self, max_size: int) -> None:
        self._max = max_size
        self._buf: bytearray | None = None  # None while nothing is buffered (idle)
        self._pos = 0
        self._parts: list[bytes] | None = None  # fragments of an unfinished message
        self._start = 0  # the unfinished message's opcode
        self._size = 0  # its bytes so far

    def feed(self, data: bytes) -> None:
        if self._buf is None:
            self._buf = bytearray(data)
            self._pos = 0
        else:
            if self._pos > 65536 and self._pos * 2 > len(self._buf):
                del self._buf[:self._pos]
                self._pos = 0
            self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes fed and not yet returned as frames."""
        return 0 if self._buf is None else len(self._buf) - self._pos

    def next(self) -> tuple[int, str | bytes] | None:
        while True:
            got = self._frame()
            if got is None:
                return None
            fin, opcode, payload = got
            if opcode in _CONTROL:
                if opcode == CLOSE:
                    _check_close(payload)
                return opcode, payload
            if opcode == CONTINUATION:
                assert self._parts is not None
                self._parts.append(payload)
                if not fin:
                    continue
                opcode, payload = self._start, b"".join(self._parts)
                self._parts, self._size = None, 0
            elif not fin:
                self._parts, self._start, self._size = [payload], opcode, len(payload)
                continue
            if opcode == TEXT:
                try:
                    return TEXT, payload.decode()
                except UnicodeDecodeError as exc:
                    raise WsError(1007, f"invalid UTF-8: {exc.reason}") from None
            return BINARY, payload

    def _frame(self) -> tuple[bool, int, bytes] | None:
        buf, pos = self._buf, self._pos
        if buf is None:
            return None
        have = len(buf) - pos
        if have < 2:
            return None
        b0, b1 = buf[pos], buf[pos + 1]
        fin, opcode = bool(b0 & 0x80), b0 & 0x0F
        if b0 & 0x70:
            raise WsError(1002, "reserved bits must be 0")
        if not b1 & 0x80:
            raise WsError(1002, "incorrect masking: client frames must be masked")
        length, head = b1 & 0x7F, 6
        if length == 126:
            head = 8
            if have < head:
                return None
            length = int.from_bytes(buf[pos + 2:pos + 4], "big")
        elif length == 127:
            head = 14
            if have < head:
                return None
            length = int.from_bytes(buf[pos + 2:pos + 10], "big")
            if length >> 63:
                raise WsError(1002, "invalid frame length")
        if opcode in _CONTROL:
            if not fin:
                raise WsError(1002, "fragmented control frame")
            if length > 125:
                raise WsError(1002, "control frame too long")
        elif opcode not in _DATA:
            raise WsError(1002, f"invalid opcode {opcode:#x}")
        else:
            if opcode == CONTINUATION and self._parts is None:
                raise WsError(1002, "unexpected continuation frame")
            if opcode != CONTINUATION and self._parts is not None:
                raise WsError(1002, "expected a continuation frame")
            if self._size + length > self._max:
                raise WsError(1009, f"over size limit ({self._size + length} > "
                                    f"{self._max} bytes)")
        if have < head + length:
            return None
        mask = bytes(buf[pos + head - 4:pos + head])
        payload = unmask(memoryview(buf)[pos + head:pos + head + length], mask)
        end = pos + head + length
        if end == len(buf):
            self._buf, self._pos = None, 0
        else:
            self._pos = end
        return fin, opcode, payload
