"""What the web app vendors (no CDN: the pages work with no internet): the chart library
is the npm release it names, unmodified (``SHA256SUMS``), with its licence; and no page
loads a script or stylesheet from another origin."""

from __future__ import annotations

import hashlib
import json
import re

from tests.e2e.support import ROOT

WEB = ROOT / "clients" / "web"
UPLOT = WEB / "vendor" / "uplot"


def test_uplot_is_the_npm_release_unmodified_with_its_licence() -> None:
    package = json.loads((UPLOT / "package.json").read_text())
    assert (package["name"], package["version"], package["license"]) == ("uplot", "1.6.32",
                                                                          "MIT")
    sums = dict(reversed(line.split()) for line in (UPLOT / "SHA256SUMS").read_text()
                .splitlines() if line.strip())
    assert set(sums) == {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}
    for name, digest in sums.items():
        assert hashlib.sha256((UPLOT / name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in (UPLOT / "LICENSE").read_text()


def test_pages_load_nothing_from_other_origins() -> None:
    for page in WEB.glob("*.html"):
        html = page.read_text()
        for url in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert not re.match(r"^(?:[a-z]+:)?//", url), f"{page.name}: {url}"
