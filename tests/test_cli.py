"""The ``roomlog`` command's help: written for people, a line for every flag."""

from __future__ import annotations

import argparse

import pytest

from roomlog import cli


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_and_flag_has_help() -> None:
    commands = subcommands()
    assert set(commands) == {"serve", "demo", "migrate", "token", "settings"}
    for name, parser in commands.items():
        assert parser.description and not parser.description.startswith('"""'), name
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help and len(action.help) > 15, (name, action.option_strings)


def test_top_level_help_is_prose_not_a_docstring(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and "roomlog demo" in out and "ROOMLOG_<NAME>" in out


def test_serve_takes_reload_and_log_flags() -> None:
    args = cli._parser().parse_args(["serve", "--reload", "--log-level", "DEBUG",
                                     "--log-format", "json", "--port", "9001"])
    assert (args.reload, args.log_level, args.log_format, args.port) == (True, "debug",
                                                                          "json", 9001)
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["serve", "--log-format", "xml"])


def test_durations() -> None:
    assert cli._duration("90") == 90 and cli._duration("15m") == 900
    assert cli._duration("7d") == 7 * 86400
    with pytest.raises(argparse.ArgumentTypeError):
        cli._duration("soon")
