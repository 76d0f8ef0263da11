"""A room's log as the console pages it: filters over stored messages. Pure.

Filters (all optional, all must hold): ``by`` (the author, exactly), ``event``
(a domain event's type, or the prefix before a dot: ``request`` matches
``request.vetoed``), ``text`` (found in the stored JSON, any case). The log is
read forward from ``after``; a page ends when ``limit`` messages matched or
``scan`` messages were looked at, and ``next`` says where to go on (None: the
head was reached). So a filter that matches rarely costs at most ``scan``
messages per request, never the whole log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from roomlog.errors import ProtocolError
from roomlog.protocol import Message

__all__ = ["MAX_LIMIT", "LogFilter", "parse_filter", "row"]

MAX_LIMIT = 200  # messages one page returns at most
MAX_FILTER = 200  # characters of a filter value


@dataclass(frozen=True, slots=True)
class LogFilter:
    by: str | None = None
    event: str | None = None
    text: str | None = None

    @property
    def empty(self) -> bool:
        return self.by is None and self.event is None and self.text is None

    def matches(self, message: Message) -> bool:
        if self.by is not None and message.by != self.by:
            return False
        if self.event is not None:
            data = message.data
            kind = data.get("event") if isinstance(data, dict) else None
            if not isinstance(kind, str) or not (
                    kind == self.event or kind.startswith(self.event + ".")):
                return False
        return self.text is None or self.text in message.raw.decode("utf-8", "replace").lower()

    def to_json(self) -> dict[str, Any]:
        return {"by": self.by, "event": self.event, "text": self.text}


def parse_filter(query: Mapping[str, str]) -> LogFilter:
    """The filters of a query string; BAD_FRAME for one that is too long."""
    values: dict[str, str | None] = {}
    for name in ("by", "event", "text"):
        raw = query.get(name) or None
        if raw is not None and len(raw) > MAX_FILTER:
            raise ProtocolError(f"'{name}' is longer than {MAX_FILTER} characters")
        values[name] = raw
    text = values["text"]
    return LogFilter(values["by"], values["event"], None if text is None else text.lower())


def row(message: Message) -> dict[str, Any]:
    """One message as the console lists it (an admin sees data whole)."""
    return {"seq": message.seq, "ts": message.ts, "by": message.by,
            "data": orjson.loads(message.raw)}
