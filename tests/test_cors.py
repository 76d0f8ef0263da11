"""Reading ``ROOMLOG_CORS_ORIGINS`` (pure; the behaviour over HTTP is in
tests/e2e/test_cors.py, in a browser in tests/web/test_cors.py)."""

from __future__ import annotations

import pytest

from roomlog.cors import cors_middleware, parse_origins


def test_origins_are_read_from_a_list() -> None:
    assert parse_origins("") == ()
    assert parse_origins("https://club.example, http://localhost:5173") == (
        "https://club.example", "http://localhost:5173")
    assert parse_origins("https://a.example https://a.example") == ("https://a.example",)
    assert parse_origins("http://[::1]:8080") == ("http://[::1]:8080",)
    assert parse_origins(" * ") == ("*",)


@pytest.mark.parametrize("bad", ["club.example", "https://club.example/", "https://club.example/app",
                                 "ftp://club.example", "https://*.example", "* https://a.example"])
def test_what_is_not_an_origin_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="CORS_ORIGINS"):
        parse_origins(bad)
    with pytest.raises(SystemExit, match="CORS_ORIGINS"):
        cors_middleware(bad, 600)
