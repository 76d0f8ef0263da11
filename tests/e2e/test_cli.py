"""``roomlog`` as a person runs it in a terminal: Ctrl-C, --help."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.e2e.support import Server


async def test_ctrl_c_stops_quietly(tmp_path: Path) -> None:
    srv = await Server(tmp_path / "hub", log_level="info").astart()
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGINT)
    code = await asyncio.to_thread(srv.proc.wait, 30)
    output = srv.output()
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert code == 130, output
    assert output.rstrip().splitlines()[-1].startswith("roomlog: interrupted"), output
