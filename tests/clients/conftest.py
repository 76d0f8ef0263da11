"""Fixtures of the client tests: the Python client (``clients/python``) made
importable without installing it, and private servers per test.

* ``make_server``: ``await make_server(websockets=False, ...)`` starts a real
  ``roomlog serve`` process (SQLite in tmp_path) with per-test ``ROOMLOG_*``
  settings; killed at the end of the test, its log checked for exceptions.
"""

from __future__ import annotations

import sys
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"
if str(CLIENT) not in sys.path:
    sys.path.insert(0, str(CLIENT))

# The end-to-end suite's private-server fixture, shared rather than copied.
from tests.e2e.conftest import MakeServer, make_server  # noqa: E402

__all__ = ["MakeServer", "make_server"]
