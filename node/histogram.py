"""Latency histograms an actor keeps itself and `node.metrics` exports as Prometheus histograms (seconds).

Nothing here touches prometheus_client: an actor owns a `LatencyHistogram`, calls `observe_ns` once
per wake-up (a bisect over ~20 bounds and two additions; `count` observations of the same value at
once), and its `stats()` carries `snapshot()`, a plain dict that crosses Ray. The scrape turns it into a
histogram family (cumulative buckets, `_sum`, `_count`). Bounds are fixed, shared by every histogram,
so dashboards can aggregate across actors.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Mapping

#: upper bounds in seconds: 50 µs .. 10 s (signal -> reply is ~0.5-5 ms here, failover ~0.1-1 s)
BOUNDS_S: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
_BOUNDS_NS = tuple(int(b * 1e9) for b in BOUNDS_S)
HIST_KEY = "hist"  # a stats field whose value is a snapshot carries this key


class LatencyHistogram:
    """Counts per bucket (not cumulative), the sum in nanoseconds and the total count."""

    __slots__ = ("counts", "sum_ns", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BOUNDS_NS) + 1)  # the last one is +Inf
        self.sum_ns = 0
        self.count = 0

    def observe_ns(self, ns: int, count: int = 1) -> None:
        """`count` observations of `ns` nanoseconds each."""
        self.counts[bisect_left(_BOUNDS_NS, ns)] += count
        self.sum_ns += ns * count
        self.count += count

    def snapshot(self) -> dict[str, Any]:
        """Plain data for `stats()`: {"hist": True, "buckets": [[le_seconds, cumulative], ...], "sum_s", "count"}."""
        cumulative, running = [], 0
        for bound, n in zip(BOUNDS_S, self.counts):
            running += n
            cumulative.append([bound, running])
        return {HIST_KEY: True, "buckets": cumulative, "sum_s": self.sum_ns / 1e9, "count": self.count}


def is_snapshot(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get(HIST_KEY) is True and isinstance(value.get("buckets"), list)


def of_seconds(values: list[float]) -> dict[str, Any]:
    """A snapshot built from durations in seconds (a scrape-time histogram, e.g. of the failover log)."""
    hist = LatencyHistogram()
    for v in values:
        hist.observe_ns(max(0, int(v * 1e9)))
    return hist.snapshot()
