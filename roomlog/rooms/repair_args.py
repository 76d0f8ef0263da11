"""Validation of repair command arguments: ``INVALID_ARGS`` saying what is wrong.

Like :mod:`.queue_args`: every command rejects keys it does not know; strings
are stripped, a required string must be non-empty, an optional one that strips
to nothing is absent; integers are real ints (not bools, not floats).

Only checks that need no state live here (including the ones that tie two
arguments together, such as "awaiting_approval needs a quote"), so a malformed
command is INVALID_ARGS whatever the ticket's state.

User ids (``customer_id``, ``technicians``) must be usable in room names
(``user:{id}``, ``repairs:{id}``): letters, digits and ``. _ - @``, starting
with a letter or digit, at most 128 characters. ``all`` is no technician: it
names the admins' feed ``repairs:all``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from roomlog.rooms.args import int_in as _int
from roomlog.rooms.args import invalid, no_args
from roomlog.rooms.args import only as _only
from roomlog.rooms.args import optional_text as _optional_text
from roomlog.rooms.args import text as _text
from roomlog.rooms.repair_state import CATEGORIES, PRIORITIES, VISIBILITIES, Status

__all__ = [
    "CreateArgs",
    "NoteArgs",
    "PhotoArgs",
    "QaArgs",
    "QuoteArgs",
    "StatusArgs",
    "assign_args",
    "create_args",
    "decline_args",
    "eta_args",
    "invalid",
    "milestone_args",
    "no_args",
    "note_args",
    "photo_args",
    "qa_args",
    "status_args",
]

DEVICE_MAX = 200
PROBLEM_MAX = 2000
REASON_MAX = 500
TITLE_MAX = 200
CAPTION_MAX = 500
URL_MAX = 2048
ITEM_MAX = 100
QA_NOTE_MAX = 1000
NOTE_MAX = 4000
DESCRIPTION_MAX = 1000
TECHNICIANS_MAX = 10
INTERNAL_KEYS_MAX = 32
INTERNAL_KEY_MAX = 64
INTERNAL_BYTES_MAX = 8192  # the JSON text of ``internal``
AMOUNT_MAX = 1_000_000_000
TS_MAX = 2**53  # ms; JavaScript's largest safe integer

_USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_UPLOAD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CURRENCY_RE = re.compile(r"[A-Za-z]{3}")
_NEEDS_REASON = frozenset({Status.ON_HOLD, Status.CANCELLED})


@dataclass(frozen=True, slots=True)
class CreateArgs:
    customer_id: str
    device: str
    problem: str
    technicians: list[str]
    internal: dict[str, Any]


@dataclass(frozen=True, slots=True)
class QuoteArgs:
    amount: int | float
    currency: str  # upper case
    description: str | None


@dataclass(frozen=True, slots=True)
class StatusArgs:
    status: Status
    reason: str | None
    internal_reason: str | None
    quote: QuoteArgs | None


@dataclass(frozen=True, slots=True)
class PhotoArgs:
    category: str
    caption: str
    url: str | None
    upload_id: str | None
    visibility: str


@dataclass(frozen=True, slots=True)
class QaArgs:
    item: str
    passed: bool
    note: str | None
    required: bool


@dataclass(frozen=True, slots=True)
class NoteArgs:
    text: str
    priority: str
    visibility: str | None  # None: not given


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(f"{key} must be true or false")
    return value


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise invalid(f"{key} must be one of {', '.join(choices)} (got {value!r})")
    return str(value)


def _user(value: Any, key: str) -> str:
    if not isinstance(value, str) or not _USER_RE.fullmatch(value):
        raise invalid(f"{key} must be a user id (letters, digits and . _ - @, starting with "
                      "a letter or digit, at most 128 characters)")
    return value


def _technicians(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > TECHNICIANS_MAX:
        raise invalid(f"technicians must be a list of at most {TECHNICIANS_MAX} user ids")
    ids = [_user(t, "technicians[]") for t in value]
    if len(set(ids)) != len(ids):
        raise invalid("technicians must not repeat a user id")
    if "all" in ids:
        raise invalid("'all' is reserved (the admins' feed repairs:all); it is no technician")
    return ids


def _internal(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid("internal must be an object")
    if len(value) > INTERNAL_KEYS_MAX:
        raise invalid(f"internal takes at most {INTERNAL_KEYS_MAX} keys")
    for key in value:
        if not isinstance(key, str) or not key or len(key) > INTERNAL_KEY_MAX:
            raise invalid(f"internal keys must be strings of 1 to {INTERNAL_KEY_MAX} characters")
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise invalid("internal must hold JSON values only") from None
    if len(text) > INTERNAL_BYTES_MAX:
        raise invalid(f"internal must be at most {INTERNAL_BYTES_MAX} characters as JSON")
    copy: dict[str, Any] = json.loads(text)  # a deep copy the caller cannot change later
    return copy


def create_args(args: dict[str, Any]) -> CreateArgs:
    _only(args, {"customer_id", "device", "problem", "technicians"}, frozenset({"internal"}))
    return CreateArgs(
        customer_id=_user(args["customer_id"], "customer_id"),
        device=_text(args["device"], "device", DEVICE_MAX),
        problem=_text(args["problem"], "problem", PROBLEM_MAX),
        technicians=_technicians(args["technicians"]),
        internal=_internal(args.get("internal")),
    )


def assign_args(args: dict[str, Any]) -> list[str]:
    _only(args, {"technicians"})
    return _technicians(args["technicians"])


def _quote(value: Any) -> QuoteArgs:
    if not isinstance(value, dict):
        raise invalid("quote must be an object {amount, currency, description?}")
    _only(value, {"amount", "currency"}, frozenset({"description"}))
    amount = value["amount"]
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(
            amount) or not 0 < amount <= AMOUNT_MAX:
        raise invalid(f"quote.amount must be a number above 0 and at most {AMOUNT_MAX}")
    currency = value["currency"]
    if not isinstance(currency, str) or not _CURRENCY_RE.fullmatch(currency):
        raise invalid("quote.currency must be a 3-letter currency code such as EUR")
    description = _optional_text(value.get("description"), "quote.description",
                                 DESCRIPTION_MAX)
    return QuoteArgs(amount, currency.upper(), description)


def status_args(args: dict[str, Any]) -> StatusArgs:
    """``awaiting_approval`` needs a quote and no other status takes one;
    ``on_hold`` and ``cancelled`` need a reason or an internal_reason."""
    _only(args, {"status"}, frozenset({"reason", "internal_reason", "quote"}))
    value = args["status"]
    if value not in list(Status):
        raise invalid(f"status must be one of {', '.join(Status)} (got {value!r})")
    status = Status(value)
    reason = _optional_text(args.get("reason"), "reason", REASON_MAX)
    internal_reason = _optional_text(args.get("internal_reason"), "internal_reason", REASON_MAX)
    quote = None if args.get("quote") is None else _quote(args["quote"])
    if status is Status.AWAITING_APPROVAL and quote is None:
        raise invalid("awaiting_approval needs a quote {amount, currency, description?}")
    if status is not Status.AWAITING_APPROVAL and quote is not None:
        raise invalid("a quote is only given when setting awaiting_approval")
    if status in _NEEDS_REASON and reason is None and internal_reason is None:
        raise invalid(f"{status} needs a reason (told to the customer) or an internal_reason")
    return StatusArgs(status, reason, internal_reason, quote)


def decline_args(args: dict[str, Any]) -> str | None:
    _only(args, set(), frozenset({"reason"}))
    return _optional_text(args.get("reason"), "reason", REASON_MAX)


def milestone_args(args: dict[str, Any]) -> tuple[str, int]:
    _only(args, {"title", "percent"})
    return _text(args["title"], "title", TITLE_MAX), _int(args["percent"], "percent", 0, 100)


def eta_args(args: dict[str, Any]) -> int | None:
    """The ETA in ms, or None to clear it (being in the future is the decider's check)."""
    _only(args, {"at"})
    return None if args["at"] is None else _int(args["at"], "at", 1, TS_MAX)


def photo_args(args: dict[str, Any]) -> PhotoArgs:
    _only(args, {"category", "caption"}, frozenset({"url", "upload_id", "visibility"}))
    url, upload = args.get("url"), args.get("upload_id")
    if (url is None) == (upload is None):
        raise invalid("give exactly one of url and upload_id")
    if url is not None:
        url = _text(url, "url", URL_MAX)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or any(
                c.isspace() for c in url):
            raise invalid("url must be an absolute http or https URL")
    if upload is not None and (not isinstance(upload, str) or not _UPLOAD_RE.fullmatch(upload)):
        raise invalid("upload_id must be the id the upload endpoint returned")
    return PhotoArgs(
        category=_choice(args["category"], "category", CATEGORIES),
        caption=_text(args["caption"], "caption", CAPTION_MAX),
        url=url,
        upload_id=upload,
        visibility=_choice(args.get("visibility", "customer"), "visibility", VISIBILITIES),
    )


def qa_args(args: dict[str, Any]) -> QaArgs:
    _only(args, {"item", "passed"}, frozenset({"note", "required"}))
    return QaArgs(
        item=" ".join(_text(args["item"], "item", ITEM_MAX).split()),
        passed=_bool(args["passed"], "passed"),
        note=_optional_text(args.get("note"), "note", QA_NOTE_MAX),
        required=_bool(args.get("required", True), "required"),
    )


def note_args(args: dict[str, Any]) -> NoteArgs:
    """``visibility`` is required of staff; the decider checks that (customers may omit it)."""
    _only(args, {"text"}, frozenset({"priority", "visibility"}))
    visibility = args.get("visibility")
    return NoteArgs(
        text=_text(args["text"], "text", NOTE_MAX),
        priority=_choice(args.get("priority", "normal"), "priority", PRIORITIES),
        visibility=None if visibility is None else _choice(visibility, "visibility",
                                                           VISIBILITIES),
    )
