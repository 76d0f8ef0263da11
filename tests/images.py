"""Small, structurally valid images for upload tests (no imaging library needed).

Each builder returns the bytes of a 1x1 image that a browser decodes: what an
upload must look like to be accepted (``roomlog/images.py`` checks the
structure, not the pixels).
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["jpeg", "png", "webp"]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def png(rgb: tuple[int, int, int] = (200, 30, 30), *, size: int | None = None) -> bytes:
    """A 1x1 RGB PNG of colour ``rgb``; ``size`` pads it (with a text chunk) to exactly
    that many bytes."""
    header = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    data = _chunk(b"IDAT", zlib.compress(b"\x00" + bytes(rgb)))
    end = _chunk(b"IEND", b"")
    if size is not None:
        text = b"pad\x00" + b"x" * (size - len(header + data + end) - 12 - 4)
        header += _chunk(b"tEXt", text)
    return header + data + end


def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def jpeg(shade: int = 0) -> bytes:
    """A 1x1 greyscale baseline JPEG (one 8x8 block: a DC value, then end of block).

    ``shade`` goes into a comment segment, so that uploads can differ."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\x00" + bytes([1] * 64)
    sof = b"\x08" + struct.pack(">HH", 1, 1) + b"\x01" + b"\x01\x11\x00"
    # One code of length 1 per table: DC symbol 0 (no difference), AC symbol 0 (EOB).
    dht = (b"\x00" + bytes([1] + [0] * 15) + b"\x00"
           + b"\x10" + bytes([1] + [0] * 15) + b"\x00")
    sos = b"\x01" + b"\x01\x00" + b"\x00\x3f\x00"
    scan = b"\x3f"  # bits 0 (DC), 0 (EOB), then padding ones
    return (b"\xff\xd8" + _segment(0xE0, app0) + _segment(0xFE, bytes([shade]))
            + _segment(0xDB, dqt) + _segment(0xC0, sof) + _segment(0xC4, dht)
            + _segment(0xDA, sos) + scan + b"\xff\xd9")


def webp() -> bytes:
    """A 1x1 lossless WebP."""
    vp8l = bytes.fromhex("2f000000100710111188 88fe07".replace(" ", ""))
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l + b"\x00"  # odd: padded
    return b"RIFF" + struct.pack("<I", len(body)) + body
