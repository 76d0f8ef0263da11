"""deploy/systemd/roomlog@.service: systemd accepts it (``systemd-analyze verify``, every
key known), and its limits fit the hub: SIGTERM drains within the stop timeout, enough
file descriptors, restarts on failure."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

from roomlog.settings import Settings
from tests.e2e.support import ROOT

UNIT = ROOT / "deploy" / "systemd" / "roomlog@.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return int(match[1]) * (60 if match[2] == "min" else 1)


def test_systemd_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian: apt-get install systemd)"
    # The installed command and env file of a real host do not exist here: point the
    # unit at this environment's `roomlog`, and make the env file optional.
    roomlog = Path(sys.executable).with_name("roomlog")
    text = UNIT.read_text().replace("/opt/roomlog/venv/bin/roomlog", str(roomlog))
    text = text.replace("EnvironmentFile=/", "EnvironmentFile=-/")
    assert str(roomlog) in text
    (tmp_path / UNIT.name).write_text(text)
    done = subprocess.run([analyze, "verify", "--man=no", f"{tmp_path}/roomlog@8001.service"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    # verify exits 0 on unknown keys and bad values too; it only warns: none allowed
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    assert "--port %i" in text


def test_the_unit_s_limits_fit_the_hub() -> None:
    service = unit()["Service"]
    assert service["KillSignal"] == "SIGTERM"  # the drain's signal
    # uvicorn waits up to the drain timeout twice (our drain, then its graceful shutdown)
    drain = Settings().drain_timeout
    assert seconds(service["TimeoutStopSec"]) > 2 * drain + 5
    assert int(service["LimitNOFILE"]) >= 65536
    assert service["Restart"] in ("on-failure", "always")
    assert "--log-format json" in service["ExecStart"]
    assert int(unit()["Unit"]["StartLimitBurst"]) > 0
