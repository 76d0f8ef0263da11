"""The plain histogram the hot paths use (exported by roomlog.metrics)."""

from __future__ import annotations

from roomlog.stats import Histogram


def test_histogram_counts_cumulatively_into_its_buckets() -> None:
    h = Histogram((0.01, 0.1, 1.0))
    for value in (0.005, 0.01, 0.05, 0.5, 2.0, 3.0):
        h.observe(value)
    # Prometheus buckets are "less than or equal": 0.01 falls in the first.
    assert h.cumulative() == [("0.01", 2), ("0.1", 3), ("1.0", 4), ("+Inf", 6)]
    assert abs(h.sum - 5.565) < 1e-9
