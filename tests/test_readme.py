"""The README's settings table is the code's: every setting, its default and meaning."""

from __future__ import annotations

from tools.settings_table import README, TABLE, table


def test_the_readme_lists_every_setting_as_the_code_has_it() -> None:
    found = TABLE.findall(README.read_text())
    assert found == [table()], "run `python -m tools.settings_table` to refresh the README"
