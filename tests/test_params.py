"""Numbers in query parameters (``roomlog/params.py``): pure."""

from __future__ import annotations

import pytest

from roomlog.errors import ProtocolError
from roomlog.params import integer, seconds


@pytest.mark.parametrize("raw, value", [("0", 0), ("42", 42), ("-3", -3), ("-0", 0)])
def test_integers(raw: str, value: int) -> None:
    assert integer(raw, "n", low=-10, high=100) == value


@pytest.mark.parametrize("raw", ["", " 1", "1 ", "1_0", "\u0661", "1e3", "0x1", "nan", "+1", "101",
                                 "-11", "9" * 20, "1.0"])
def test_not_integers(raw: str) -> None:
    with pytest.raises(ProtocolError, match="'n'"):
        integer(raw, "n", low=-10, high=100)


@pytest.mark.parametrize("raw, value", [("0", 0.0), ("2.5", 2.5), ("30", 30.0),
                                        ("999999999999", 60.0)])
def test_seconds_are_capped(raw: str, value: float) -> None:
    assert seconds(raw, "wait", high=60.0) == value


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "Infinity", "1e999", "-1", "", ".5",
                                 "1.", "1e3", "0x10", "\u00bd", "9" * 13])
def test_not_seconds(raw: str) -> None:
    with pytest.raises(ProtocolError, match="'wait'"):
        seconds(raw, "wait", high=60.0)
