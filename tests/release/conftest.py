"""The release tests drive the browser of the web-app tests (a package-scoped fixture)."""

from __future__ import annotations

from tests.web.conftest import browser

__all__ = ["browser"]
