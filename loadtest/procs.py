"""Process trees and kernel socket memory, from /proc (Linux), for the load tools
that run ``roomlog serve --workers N`` (a supervisor and its workers)."""

from __future__ import annotations

import os

from common import proc_cpu_times, proc_rss_kib

__all__ = ["PAGE", "socket_memory_kib", "tree_cpu", "tree_pids", "tree_rss_kib"]

PAGE = os.sysconf("SC_PAGE_SIZE")


def _children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        found.setdefault(ppid, []).append(int(entry))
    return found


def tree_pids(pid: int) -> list[int]:
    """``pid`` and every descendant of it."""
    children = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and its descendants, KiB."""
    return sum(proc_rss_kib(p) for p in tree_pids(pid))


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) of these processes so far."""
    return sum(sum(proc_cpu_times(p)) for p in pids)


def socket_memory_kib() -> dict[str, int]:
    """The kernel's TCP socket figures of the whole machine (/proc/net/sockstat):
    sockets in use, and the memory of their buffers in KiB."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                values = dict(zip(parts[1::2], map(int, parts[2::2]), strict=False))
                return {"inuse": values.get("inuse", 0),
                        "mem_kib": values.get("mem", 0) * PAGE // 1024}
    return {"inuse": 0, "mem_kib": 0}
