"""Draw the PNG icons of the installable pages (clients/web/icons/*-192.png, *-512.png,
*-maskable-512.png) from the SVG glyphs next to them, with Debian's Chromium.

    python tools/make_icons.py

Run it after changing a glyph or a colour; commit the PNGs (the hub serves them as they
are, there is no build step). Plain icons have a rounded background and transparent
corners; maskable ones fill the square and keep the glyph inside the centre 60 %, the
safe zone every launcher mask leaves visible.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

ICONS = Path(__file__).resolve().parents[1] / "clients" / "web" / "icons"
CHROMIUM = os.environ.get("ROOMLOG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
APPS = {"guest": ("#4f46e5", "#7c3aed"), "repair": ("#0f766e", "#14b8a6")}


def glyph(name: str) -> str:
    """The SVG glyph drawn in white."""
    svg = (ICONS / f"{name}.svg").read_text()
    return re.sub(r'stroke="#[0-9a-fA-F]{6}"', 'stroke="#ffffff"', svg)


def page(name: str, size: int, maskable: bool) -> str:
    start, end = APPS[name]
    radius = 0 if maskable else size * 0.22
    inner = size * (0.5 if maskable else 0.6)
    return f"""<html><body style="margin:0;background:transparent">
<div style="width:{size}px;height:{size}px;border-radius:{radius}px;display:grid;
 place-items:center;background:linear-gradient(135deg,{start},{end})">
<div style="width:{inner}px;height:{inner}px">{glyph(name).replace('<svg ',
 '<svg width="100%" height="100%" ')}</div></div></body></html>"""


def main() -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        for name in APPS:
            for size, maskable, suffix in ((192, False, "192"), (512, False, "512"),
                                           (512, True, "maskable-512")):
                tab = browser.new_page(viewport={"width": size, "height": size})
                tab.set_content(page(name, size, maskable))
                out = ICONS / f"{name}-{suffix}.png"
                tab.screenshot(path=str(out), omit_background=not maskable)
                tab.close()
                print(out)
        browser.close()


if __name__ == "__main__":
    main()
