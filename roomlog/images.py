"""What an uploaded image is: its type, from its structure. Pure; no I/O.

A browser decides what a file is partly by looking at it, so a PNG with an
HTML page after its end, or a "JPEG" that is a few header bytes and then a
script, can be read as a page. :func:`image_type` walks each format's
structure from its signature to its end and accepts the file only if it ends
exactly there:

* PNG: the signature, then chunks (length, type, data, CRC, every CRC
  checked), IHDR first with a non-zero size, at least one IDAT, IEND last.
* JPEG: SOI, then segments (each with its length); a frame header (SOFn) with
  a non-zero size before the first scan; each scan's entropy-coded data up to
  the next marker; EOI last.
* WebP: a RIFF container whose declared size is the file's, the ``WEBP``
  form, and chunks (VP8, VP8L or VP8X first) that fill it exactly.

The pixels are not decoded (the entropy-coded data of a JPEG scan can hold any
bytes): serving photos with ``X-Content-Type-Options: nosniff`` and a sandboxing
``Content-Security-Policy`` (``roomlog.api``) is what makes whatever passes
inert.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["TYPES", "image_type"]

TYPES = ("image/jpeg", "image/png", "image/webp")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                  0xCF})
_RST = frozenset(range(0xD0, 0xD8))


class _Invalid(ValueError):
    pass


def image_type(body: bytes) -> tuple[str | None, str]:
    """(the content type ``body`` is, or None; why not, for the client)."""
    if body.startswith(_PNG_SIGNATURE):
        check, kind = _png, "image/png"
    elif body.startswith(b"\xff\xd8"):
        check, kind = _jpeg, "image/jpeg"
    elif body.startswith(b"RIFF") and body[8:12] == b"WEBP":
        check, kind = _webp, "image/webp"
    else:
        return None, "not a JPEG, PNG or WebP image"
    try:
        check(body)
    except _Invalid as exc:
        return None, f"not a well-formed {kind.split('/')[1].upper()}: {exc}"
    except (ValueError, struct.error, IndexError):  # read past the end
        return None, f"not a well-formed {kind.split('/')[1].upper()}: it ends too early"
    return kind, ""


def _png(body: bytes) -> None:
    at = len(_PNG_SIGNATURE)
    seen: list[bytes] = []
    while at < len(body):
        length, kind = struct.unpack_from(">I4s", body, at)
        end = at + 8 + length + 4
        if end > len(body):
            raise _Invalid(f"chunk {kind!r} runs past the end")
        if not kind.isalpha():
            raise _Invalid("a chunk type that is not four letters")
        data = body[at + 8:at + 8 + length]
        (crc,) = struct.unpack_from(">I", body, at + 8 + length)
        if zlib.crc32(kind + data) & 0xFFFFFFFF != crc:
            raise _Invalid(f"chunk {kind.decode('ascii')} fails its CRC")
        if not seen and (kind != b"IHDR" or length != 13
                         or 0 in struct.unpack_from(">II", data)):
            raise _Invalid("IHDR with a size must come first")
        seen.append(kind)
        at = end
        if kind == b"IEND":
            break
    if not seen or seen[-1] != b"IEND":
        raise _Invalid("no IEND")
    if at != len(body):
        raise _Invalid(f"{len(body) - at} bytes after IEND")
    if b"IDAT" not in seen:
        raise _Invalid("no image data (IDAT)")


def _jpeg(body: bytes) -> None:
    at, framed, scanned = 2, False, False
    while True:
        if body[at] != 0xFF:
            raise _Invalid(f"no marker at byte {at}")
        while body[at] == 0xFF:  # fill bytes before a marker
            at += 1
        marker = body[at]
        at += 1
        if marker == 0xD9:  # EOI
            break
        if marker in _RST or marker in (0x01, 0xD8, 0x00):
            raise _Invalid(f"marker {marker:#04x} out of place")
        (length,) = struct.unpack_from(">H", body, at)
        if length < 2 or at + length > len(body):
            raise _Invalid(f"segment {marker:#04x} runs past the end")
        if marker in _SOF:
            height, width = struct.unpack_from(">HH", body, at + 3)
            if not (height and width):
                raise _Invalid("a frame of size zero")
            framed = True
        at += length
        if marker == 0xDA:  # a scan: its entropy-coded data runs to the next marker
            if not framed:
                raise _Invalid("a scan before the frame header")
            scanned = True
            at = _scan_end(body, at)
    if not scanned:
        raise _Invalid("no image data (no scan)")
    if at != len(body):
        raise _Invalid(f"{len(body) - at} bytes after the end of the image (EOI)")


def _scan_end(body: bytes, at: int) -> int:
    """Where the entropy-coded data starting at ``at`` ends: the next 0xFF that is
    neither a stuffed zero byte nor a restart marker."""
    while True:
        at = body.index(b"\xff", at)
        following = body[at + 1]
        if following == 0x00 or following in _RST:
            at += 2
            continue
        return at


def _webp(body: bytes) -> None:
    (size,) = struct.unpack_from("<I", body, 4)
    if size + 8 != len(body):
        raise _Invalid(f"the RIFF size says {size + 8} bytes, the file has {len(body)}")
    at, first = 12, True
    while at < len(body):
        kind, length = struct.unpack_from("<4sI", body, at)
        if first and kind not in (b"VP8 ", b"VP8L", b"VP8X"):
            raise _Invalid("the first chunk is not VP8, VP8L or VP8X")
        first = False
        at += 8 + length + (length & 1)  # chunks are padded to an even length
        if at > len(body):
            raise _Invalid(f"chunk {kind!r} runs past the end")
    if first:
        raise _Invalid("no image chunk")
