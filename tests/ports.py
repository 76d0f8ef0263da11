"""Ports for the servers tests start, taken from below the kernel's ephemeral range.

``bind(0)`` hands out a port from the ephemeral range and forgets it once the probe
socket closes; between that and the server's own bind, any outgoing connection on the
machine (the tests open thousands) may take it as its source port, and the server then
fails to start or a test talks to a stranger. Ports below the range are never given to
outgoing connections, so only another server picking the same one at random could
collide, and each pick is probed first.
"""

from __future__ import annotations

import random
import socket

__all__ = ["free_port"]

_FLOOR = 20_000


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            return int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, outside the range outgoing connections use."""
    top = max(_FLOOR + 1000, _ephemeral_low())
    for _ in range(200):
        port = random.randrange(_FLOOR, top)
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_FLOOR}..{top}")
