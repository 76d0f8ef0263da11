"""Rewrite the README's settings table from the code: ``python -m tools.settings_table``.

The table is what ``roomlog settings`` prints; ``tests/test_readme.py`` fails when
the two differ, so a new setting cannot go undocumented.
"""

from __future__ import annotations

import re
from pathlib import Path

from roomlog.cli import settings_table

README = Path(__file__).resolve().parent.parent / "README.md"
HEAD = "| variable | default | meaning |\n| --- | --- | --- |\n"
TABLE = re.compile(re.escape(HEAD) + r"(?:\|[^\n]*\n)*")


def table() -> str:
    text = settings_table()
    assert text.startswith(HEAD)
    return text


def main() -> None:
    text = README.read_text()
    new, count = TABLE.subn(lambda _: table(), text)
    if count != 1:
        raise SystemExit(f"expected one settings table in {README}, found {count}")
    README.write_text(new)


if __name__ == "__main__":
    main()
