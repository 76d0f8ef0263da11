"""The build step that puts the web app into the wheel (everything else is in
pyproject.toml).

The pages (``clients/web/``) and the browser client (``clients/js/roomlog.js``, its
offline store ``store.js``, and their ``.d.ts``) stay where their authors edit them;
``build_py`` copies them into the built package as ``roomlog/_clients/{web,js}``,
where ``roomlog.webapp`` finds them in an installed wheel. Tests and notes under those
directories are left out. An editable install copies nothing: the app serves
``clients/`` of the source tree itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
CLIENTS = ROOT / "clients"
SHIPPED_JS = ("roomlog.js", "roomlog.d.ts", "store.js", "store.d.ts")
_SKIP = shutil.ignore_patterns("test", "tests", "__pycache__", "*.md", "node_modules", ".*")


class BuildWithWebApp(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "roomlog" / "_clients"
        if target.exists():
            shutil.rmtree(target)
        web = CLIENTS / "web"
        if not (web / "index.html").is_file() or not (CLIENTS / "js" / SHIPPED_JS[0]).is_file():
            raise SystemExit(f"the web app is missing under {CLIENTS}: a wheel without it "
                             "serves no pages")
        shutil.copytree(web, target / "web", ignore=_SKIP)
        (target / "js").mkdir(parents=True)
        for name in SHIPPED_JS:
            shutil.copy2(CLIENTS / "js" / name, target / "js" / name)


setup(cmdclass={"build_py": BuildWithWebApp})
