"""The cyclic garbage collector's pauses in this process, and its tuning for a latency-bound loop.

CPython's cyclic collector runs inside whichever thread allocates past a threshold and holds the
GIL while it walks every container of the generations it collects: every thread of the process
(the intake loop too) waits. A full (generation 2) collection walks everything long-lived: in an
actor process that is Ray's, numba's and the imports' objects (hundreds of thousands) plus the
node's own growing state (the dedupe memory, the order books), tens of milliseconds each time,
and it comes every few seconds while that state grows. That is the stall behind the paced p99.

- `GcWatch` times every collection (`gc.callbacks`: four clock reads per collection, nothing per
  signal) and keeps counts per generation, the total and the worst pause (wall clock: what the
  loop waited) and the total CPU time the collections took (the thread's own clock: what they
  cost, whatever else the machine runs), and a histogram of the pauses; `snapshot()` goes into an
  actor's `stats()`, so `/metrics` exports it.
- `settle_after_start(threshold0)` runs once, after an actor opened its sockets and warmed up:
  one full collection, then `gc.freeze()` moves every object alive then into the permanent
  generation, which no collection walks again (they are still freed by reference counting), and
  the first generation's threshold is raised so young collections come less often. Cycles created
  later are still found and freed by the collector as before.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from node.histogram import LatencyHistogram

_now_ns = time.perf_counter_ns
_cpu_ns = time.thread_time_ns


class GcWatch:
    """Collections and their pauses in this process (one per process: see `watch()`)."""

    __slots__ = ("collections", "pause_ns", "max_pause_ns", "cpu_ns", "hist", "_t0", "_c0", "_gen")

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.pause_ns = [0, 0, 0]
        self.max_pause_ns = [0, 0, 0]
        self.cpu_ns = [0, 0, 0]
        self.hist = LatencyHistogram()
        self._t0 = self._c0 = 0
        self._gen = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gen = info["generation"]
            self._c0 = _cpu_ns()
            self._t0 = _now_ns()
            return
        took = _now_ns() - self._t0
        gen = self._gen
        self.cpu_ns[gen] += _cpu_ns() - self._c0
        self.collections[gen] += 1
        self.pause_ns[gen] += took
        if took > self.max_pause_ns[gen]:
            self.max_pause_ns[gen] = took
        self.hist.observe_ns(took)

    def snapshot(self) -> dict[str, Any]:
        """Flat fields for `stats()`: per generation the collections, their total and worst pause."""
        out: dict[str, Any] = {"gc_frozen": gc.get_freeze_count(), "gc_pause_hist": self.hist.snapshot()}
        for gen in range(3):
            out["gc%d_collections" % gen] = self.collections[gen]
            out["gc%d_pause_total_ms" % gen] = round(self.pause_ns[gen] / 1e6, 3)
            out["gc%d_pause_max_ms" % gen] = round(self.max_pause_ns[gen] / 1e6, 3)
            out["gc%d_cpu_total_ms" % gen] = round(self.cpu_ns[gen] / 1e6, 3)
        return out


_WATCH: GcWatch | None = None


def watch() -> GcWatch:
    """This process's watch, installed on first use."""
    global _WATCH
    if _WATCH is None:
        _WATCH = GcWatch()
        gc.callbacks.append(_WATCH)
    return _WATCH


def settle_after_start(threshold0: int) -> None:
    """Collect once, freeze what is alive (start-up state is never walked again), and set the
    first generation's threshold (`threshold0` allocations between young collections; 0 keeps
    the interpreter's). Idempotent: a second call freezes what was created since."""
    gc.collect()
    gc.freeze()
    if threshold0 > 0:
        _, t1, t2 = gc.get_threshold()
        gc.set_threshold(threshold0, t1, t2)
