"""Optional persistence: the rooms' positions and the outbox, as one JSON file.

Written atomically (a temporary file in the same directory, flushed and fsynced,
then renamed over the old one), so a crash leaves either the old or the new
file, never half of one. The shape::

    {"version": 1,
     "rooms": {"chat:lobby": {"epoch": "b8de0f56121b", "seq": 41}},
     "outbox": [{"id": "…", "kind": "publish", "room": "chat:lobby", "body": {"data": …}}]}
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from roomlog_client.events import Pending, Position

__all__ = ["Saved", "StateFile"]

VERSION = 1


@dataclass
class Saved:
    rooms: dict[str, Position] = field(default_factory=dict)
    outbox: list[Pending] = field(default_factory=list)


class StateFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()

    def load(self) -> Saved:
        """What was saved; empty when there is no file yet. A file this version
        cannot read raises ValueError (rather than silently starting over)."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Saved()
        obj = json.loads(raw)
        if not isinstance(obj, dict) or obj.get("version") != VERSION:
            raise ValueError(f"{self.path}: not a roomlog-client state file of version "
                             f"{VERSION}")
        rooms = {name: Position(str(p["epoch"]), int(p["seq"]))
                 for name, p in obj.get("rooms", {}).items()}
        return Saved(rooms, [Pending.from_json(e) for e in obj.get("outbox", [])])

    def save(self, saved: Saved) -> None:
        obj = {"version": VERSION,
               "rooms": {name: {"epoch": p.epoch, "seq": p.seq}
                         for name, p in saved.rooms.items()},
               "outbox": [e.to_json() for e in saved.outbox]}
        data = json.dumps(obj, separators=(",", ":")).encode()
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
