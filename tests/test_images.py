"""Image structure checks (``roomlog/images.py``): pure, no I/O."""

from __future__ import annotations

import struct

import pytest

from roomlog.images import image_type
from tests.images import jpeg, png, webp

HTML = b"<html><script>alert(1)</script></html>"


@pytest.mark.parametrize("body, kind", [
    (png(), "image/png"), (png(size=5000), "image/png"), (jpeg(), "image/jpeg"),
    (jpeg(7), "image/jpeg"), (webp(), "image/webp"),
])
def test_well_formed_images_are_recognised(body: bytes, kind: str) -> None:
    assert image_type(body) == (kind, "")


def _jpeg_with_restart() -> bytes:
    """A scan with a stuffed 0xFF00 byte and a restart marker inside."""
    photo = jpeg()
    return photo[:-3] + b"\xff\x00\x3f\xff\xd0\x3f" + photo[-2:]


def test_a_jpeg_scan_may_hold_stuffed_bytes_and_restart_markers() -> None:
    assert image_type(_jpeg_with_restart())[0] == "image/jpeg"


@pytest.mark.parametrize("case, body, says", [
    ("html", HTML, "not a JPEG, PNG or WebP"),
    ("empty", b"", "not a JPEG, PNG or WebP"),
    ("png + html", png() + HTML, "after IEND"),
    ("png + one byte", png() + b"\x00", "after IEND"),
    ("png cut", png()[:-6], "ends too early"),
    ("png bad crc", png()[:-1] + bytes([png()[-1] ^ 1]), "CRC"),
    ("png without idat", png()[:33] + png()[-12:], "IDAT"),
    ("png signature only", png()[:8], "no IEND"),
    ("png zero width", png()[:16] + b"\x00\x00\x00\x00" + png()[20:], "CRC"),
    ("png chunk past the end", png()[:8] + struct.pack(">I", 10**6) + b"IHDR", "past the end"),
    ("jpeg + html", jpeg() + HTML, "after the end"),
    ("jpeg twice", jpeg() + jpeg(), "after the end"),
    ("jpeg without eoi", jpeg()[:-2], "ends too early"),
    ("jpeg header then html", jpeg()[:20] + HTML, "no marker"),
    ("jpeg soi only", b"\xff\xd8", "ends too early"),
    ("jpeg segment past the end", b"\xff\xd8\xff\xe0\xff\xff", "past the end"),
    ("jpeg without scan", b"\xff\xd8\xff\xd9", "no scan"),
    ("jpeg restart outside a scan", b"\xff\xd8\xff\xd0\xff\xd9", "out of place"),
    ("webp + html", webp() + HTML, "RIFF size"),
    ("webp size lies", webp()[:4] + b"\xff\xff\x00\x00" + webp()[8:], "RIFF size"),
    ("webp of no image", b"RIFF\x04\x00\x00\x00WEBP", "no image chunk"),
    ("webp wrong first chunk", b"RIFF\x0c\x00\x00\x00WEBPEXIF\x00\x00\x00\x00", "first chunk"),
])
def test_malformed_or_padded_images_are_refused(case: str, body: bytes, says: str) -> None:
    kind, why = image_type(body)
    assert kind is None and says in why, (case, why)


def test_a_jpeg_with_a_frame_of_size_zero_is_refused() -> None:
    photo = jpeg()
    at = photo.index(b"\xff\xc0") + 5  # SOF0: length (2), precision (1), then height
    zero = photo[:at] + b"\x00\x00" + photo[at + 2:]
    assert image_type(zero) == (None, "not a well-formed JPEG: a frame of size zero")
