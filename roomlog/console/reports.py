"""The latest report of every instance (``roomlog.console.instances``). Pure."""

from __future__ import annotations

from typing import Any

__all__ = ["Instances"]

MAX_INSTANCES = 1000  # reports kept at most (a bound, whatever the bus carries)


class Instances:
    """The latest report of each instance, as received (pure; the clock is given)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._reports: dict[str, tuple[float, dict[str, Any]]] = {}

    def receive(self, report: object, now: float) -> None:
        """A report from the bus or from this instance; anything else is ignored."""
        if not isinstance(report, dict) or not isinstance(report.get("instance"), str):
            return
        self._reports.pop(report["instance"], None)
        self._reports[report["instance"]] = (now, report)
        while len(self._reports) > MAX_INSTANCES:
            self._reports.pop(next(iter(self._reports)))

    def listing(self, now: float) -> list[dict[str, Any]]:
        """Every instance heard of lately, by id, with ``age_s`` and ``stale``."""
        out = []
        for name, (received, report) in sorted(self._reports.items()):
            age = max(0.0, now - received)
            if age > 10 * self.interval:
                del self._reports[name]
                continue
            out.append(report | {"age_s": round(age, 3), "stale": age > 3 * self.interval})
        return out
