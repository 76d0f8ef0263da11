"""Validation of queue command arguments: ``INVALID_ARGS`` saying what is wrong.

Every command rejects keys it does not know (a typo must not pass silently).
Strings are stripped; a required string must be non-empty after stripping,
an optional one that strips to nothing counts as absent. Integers must be real
ints (not bools, not floats) within their range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from roomlog.rooms.args import int_in as _int
from roomlog.rooms.args import invalid, no_args
from roomlog.rooms.args import only as _only
from roomlog.rooms.args import optional_text as _optional_text
from roomlog.rooms.args import text as _text
from roomlog.rooms.queue_pay import AMOUNT_MAX, PayArgs, pay_args

__all__ = [
    "BATCH_MAX",
    "SETTINGS_RANGES",
    "BatchArgs",
    "SongArgs",
    "batch_args",
    "invalid",
    "no_args",
    "reorder_args",
    "request_id",
    "settings_args",
    "submit_args",
    "veto_args",
]

SONG_ID_MAX = 128
TITLE_MAX = 200
ARTIST_MAX = 200
NOTE_MAX = 280
REASON_MAX = 280
REQUEST_ID_MAX = 32
BATCH_MAX = 100
POSITION_MAX = 10_000

# setting -> (lowest, highest) allowed value
SETTINGS_RANGES: dict[str, tuple[int, int]] = {
    "request_cap_per_hour": (1, 1000),
    "max_active_per_guest": (1, 50),
    "submit_rate": (1, 60),
    "price": (0, AMOUNT_MAX),
    "jump_price": (0, AMOUNT_MAX),
}
_FLAGS = ("voting", "tips")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True, slots=True)
class SongArgs:
    song_id: str
    title: str
    artist: str
    note: str | None
    payment: PayArgs | None = None


@dataclass(frozen=True, slots=True)
class BatchArgs:
    action: str  # "accept" | "veto"
    request_ids: list[str]
    reason: str | None


def submit_args(args: dict[str, Any]) -> SongArgs:
    _only(args, {"song_id", "title", "artist"}, frozenset({"note", "payment"}))
    payment = args.get("payment")
    return SongArgs(
        song_id=_text(args["song_id"], "song_id", SONG_ID_MAX),
        title=_text(args["title"], "title", TITLE_MAX),
        artist=_text(args["artist"], "artist", ARTIST_MAX),
        note=_optional_text(args.get("note"), "note", NOTE_MAX),
        payment=None if payment is None else pay_args(payment),
    )


def request_id(args: dict[str, Any]) -> str:
    _only(args, {"request_id"})
    return _text(args["request_id"], "request_id", REQUEST_ID_MAX)


def veto_args(args: dict[str, Any]) -> tuple[str, str | None]:
    _only(args, {"request_id"}, frozenset({"reason"}))
    rid = _text(args["request_id"], "request_id", REQUEST_ID_MAX)
    return rid, _optional_text(args.get("reason"), "reason", REASON_MAX)


def reorder_args(args: dict[str, Any]) -> tuple[str, int]:
    """The position's upper bound (the queue's length) is checked by the decider."""
    _only(args, {"request_id", "position"})
    rid = _text(args["request_id"], "request_id", REQUEST_ID_MAX)
    return rid, _int(args["position"], "position", 1, POSITION_MAX)


def batch_args(args: dict[str, Any]) -> BatchArgs:
    _only(args, {"action", "request_ids"}, frozenset({"reason"}))
    action = args["action"]
    if action not in ("accept", "veto"):
        raise invalid("action must be 'accept' or 'veto'")
    ids = args["request_ids"]
    if not isinstance(ids, list) or not 1 <= len(ids) <= BATCH_MAX:
        raise invalid(f"request_ids must be a list of 1 to {BATCH_MAX} request ids")
    request_ids = [_text(i, "request_ids[]", REQUEST_ID_MAX) for i in ids]
    if len(set(request_ids)) != len(request_ids):
        raise invalid("request_ids must not repeat an id")
    reason = _optional_text(args.get("reason"), "reason", REASON_MAX)
    if reason is not None and action != "veto":
        raise invalid("reason is only for action 'veto'")
    return BatchArgs(action, request_ids, reason)


def settings_args(args: dict[str, Any]) -> dict[str, int | bool | str]:
    """The settings to change; at least one."""
    keys = [*SETTINGS_RANGES, *_FLAGS, "currency"]
    _only(args, set(), frozenset(keys))
    if not args:
        raise invalid(f"give at least one of {', '.join(keys)}")
    changes: dict[str, int | bool | str] = {}
    for key, (low, high) in SETTINGS_RANGES.items():
        if key in args:
            changes[key] = _int(args[key], key, low, high)
    for flag in _FLAGS:
        if flag in args:
            if not isinstance(args[flag], bool):
                raise invalid(f"{flag} must be true or false")
            changes[flag] = args[flag]
    if "currency" in args:
        currency = args["currency"]
        if not isinstance(currency, str) or not _CURRENCY_RE.fullmatch(currency):
            raise invalid("currency must be an ISO 4217 code: three capital letters")
        changes["currency"] = currency
    return changes
