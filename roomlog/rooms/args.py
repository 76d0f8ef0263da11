"""Argument checks shared by the domain rooms' ``*_args`` modules. Pure.

Each raises INVALID_ARGS with a message that names the argument and what it
must be, so a client developer can fix the call from the error alone.
"""

from __future__ import annotations

from typing import Any

from roomlog.errors import ErrorCode, RoomlogError

__all__ = ["int_in", "invalid", "no_args", "only", "optional_text", "text"]


def invalid(message: str) -> RoomlogError:
    return RoomlogError(ErrorCode.INVALID_ARGS, message)


def only(args: dict[str, Any], required: set[str], optional: frozenset[str] = frozenset()) -> None:
    """Exactly the ``required`` keys and some of the ``optional`` ones."""
    unknown = sorted(set(args) - required - optional)
    if unknown:
        allowed = ", ".join(sorted(required | optional)) or "no arguments"
        raise invalid(f"unknown argument(s) {', '.join(unknown)}; expected {allowed}")
    missing = sorted(required - set(args))
    if missing:
        raise invalid(f"missing argument(s) {', '.join(missing)}")


def no_args(args: dict[str, Any]) -> None:
    only(args, set())


def text(value: Any, key: str, max_len: int) -> str:
    """A non-empty string of at most ``max_len`` characters, stripped."""
    if not isinstance(value, str):
        raise invalid(f"{key} must be a string")
    stripped = value.strip()
    if not stripped:
        raise invalid(f"{key} must not be empty")
    if len(stripped) > max_len:
        raise invalid(f"{key} must be at most {max_len} characters (got {len(stripped)})")
    return stripped


def optional_text(value: Any, key: str, max_len: int) -> str | None:
    """``text``, or None for null or blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return text(value, key, max_len)


def int_in(value: Any, key: str, low: int, high: int) -> int:
    """An integer (not a bool) in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{key} must be an integer")
    if not low <= value <= high:
        raise invalid(f"{key} must be between {low} and {high} (got {value})")
    return value
