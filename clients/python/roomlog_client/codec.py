"""Wire formats: JSON (``roomlog.v1.json``, text frames) and, when the ``msgpack``
package is installed, MessagePack (``roomlog.v1.msgpack``, binary frames).

A server WebSocket message is one frame or an array of frames (a coalesced
backlog): :meth:`Codec.decode` always returns the list.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["JSON", "MSGPACK", "Codec"]

JSON = "roomlog.v1.json"
MSGPACK = "roomlog.v1.msgpack"


class Codec:
    def __init__(self, fmt: str = "json") -> None:
        if fmt not in ("json", "msgpack"):
            raise ValueError("format is 'json' or 'msgpack'")
        self.binary = fmt == "msgpack"
        self._msgpack: Any = None
        if self.binary:
            try:
                import msgpack  # type: ignore[import-untyped,import-not-found,unused-ignore]
            except ImportError:
                raise ValueError("format='msgpack' needs the msgpack package "
                                 "(pip install 'roomlog-client[msgpack]')") from None
            self._msgpack = msgpack
        self.subprotocol = MSGPACK if self.binary else JSON

    def encode(self, frame: dict[str, Any]) -> str | bytes:
        if self.binary:
            return bytes(self._msgpack.packb(frame, use_bin_type=True))
        return json.dumps(frame, separators=(",", ":"))

    def decode(self, payload: str | bytes) -> list[dict[str, Any]]:
        """The server frames of one WebSocket message (flattened); ValueError if it
        is not a frame or an array of frames."""
        obj = self._msgpack.unpackb(payload, raw=False) if self.binary else json.loads(payload)
        items = obj if isinstance(obj, list) else [obj]
        if not all(isinstance(item, dict) and isinstance(item.get("type"), str)
                   for item in items):
            raise ValueError(f"not a frame or an array of frames: {str(obj)[:200]}")
        return items
