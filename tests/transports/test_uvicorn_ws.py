"""The framing shortcut of the direct send writes what websockets itself would."""

from __future__ import annotations

import pytest
from websockets.protocol import OPEN, Protocol, Side

from roomlog.transports.uvicorn_ws import _framed


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 200_000])
@pytest.mark.parametrize("text", [True, False])
def test_shared_frame_equals_the_protocols_own(size: int, text: bool) -> None:
    payload = b"x" * size
    server = Protocol(Side.SERVER, state=OPEN)
    if text:
        server.send_text(payload)
    else:
        server.send_binary(payload)
    assert b"".join(server.data_to_send()) == _framed(payload, text)


def test_the_frame_is_built_once_per_payload() -> None:
    payload = b'[{"type":"message"}]'
    assert _framed(payload, True) is _framed(payload, True)
    assert _framed(payload, False) != _framed(payload, True)  # the opcode differs
