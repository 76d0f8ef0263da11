"""Numbers in query parameters and headers: strict, finite, in range. Pure.

``int()`` and ``float()`` accept far more than a client means: ``1_000``,
Unicode digits, ``nan``, ``inf``, ``1e999`` (infinity again). A parameter
that is not plainly a number in its range is ``BAD_FRAME`` naming it, so no
such value reaches a wait, a query or an encoder.
"""

from __future__ import annotations

import math
import re

from roomlog.errors import ProtocolError

__all__ = ["integer", "seconds"]

_INTEGER = re.compile(r"-?[0-9]{1,19}")
_DECIMAL = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


def integer(raw: str, name: str, *, low: int, high: int) -> int:
    """``raw`` as an integer from ``low`` to ``high`` (ASCII digits, an optional minus)."""
    if _INTEGER.fullmatch(raw) is None or not low <= int(raw) <= high:
        raise ProtocolError(f"'{name}' must be an integer from {low} to {high}")
    return int(raw)


def seconds(raw: str, name: str, *, high: float) -> float:
    """``raw`` as a duration in seconds (digits, an optional fraction), capped at
    ``high``: a longer one is shortened, not refused."""
    if _DECIMAL.fullmatch(raw) is None:
        raise ProtocolError(f"'{name}' must be a number of seconds (0 or more, like 2.5)")
    value = float(raw)
    assert math.isfinite(value)  # at most 12 digits before the point
    return min(value, high)
