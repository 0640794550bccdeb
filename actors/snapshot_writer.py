"""The validator's risk snapshot, written on a thread of its own: off the intake loop.

The loop takes the snapshot (`node.risk.snapshot.take`: copies of the book's arrays as bytes and of
the pending reservations, so nothing it hands over changes afterwards) and hands it here with
`submit`; this thread reads the events tip (the next snapshot's events mark), encodes the snapshot and
SETs it, over a Redis client of its own, then leaves a `SnapshotOutcome` the loop collects with
`collect` (a deque pop: no lock, no wait). One snapshot at a time: `submit` is refused while one is
out, so snapshots land in the order they were taken and the loop never holds two sets of marks.

What the loop used to wait for here (the events tip's XREVRANGE and the SET: ~18% of the validator
thread's samples under load) now waits on this thread, with the GIL released; a stalled Redis
delays the snapshot, never the intake. Every failure is an outcome (`ok=False`, the error's type),
never a dead thread: the loop keeps its marks and tries again a second later.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

import msgspec

from actors.risk_state import RiskStateStore
from node.risk import snapshot as risk_snapshot


class SnapshotOutcome(msgspec.Struct, frozen=True):
    """One write's answer: the events tip read just before it (the next snapshot's events mark) and
    when (the writer's clock once the tip was read: the next snapshot is taken a period after)."""

    ok: bool
    taken_ns: int  # the snapshot's own `taken_ns` (the loop's clock when it was taken)
    events_tip: str = "0"
    tip_read_ns: int = 0
    write_ns: int = 0  # tip read + encode + SET, wall time on this thread
    error: str = ""


_STOP = None


class SnapshotWriter:
    """A daemon thread that writes the snapshots it is handed, one at a time."""

    def __init__(self, store: RiskStateStore, events_stream: str, clock_ns: Callable[[], int] = time.time_ns,
                 name: str = "risk-snapshot") -> None:
        self._store = store
        self._events_stream = events_stream
        self._clock_ns = clock_ns
        self._name = name
        self._job: deque = deque()  # at most one snapshot (or _STOP)
        self._outcomes: deque[SnapshotOutcome] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._out = False  # a snapshot handed over whose outcome the loop has not collected yet
        self.saved = 0
        self.failures = 0
        self.last_error = ""

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    @property
    def busy(self) -> bool:
        """A snapshot was handed over and its outcome not collected yet."""
        return self._out

    def submit(self, snap: risk_snapshot.RiskSnapshot) -> bool:
        """Hand one snapshot over (the loop must not touch it afterwards); False while one is out."""
        if self._out or self._thread is None:
            return False
        self._out = True
        self._job.append(snap)
        self._wake.set()
        return True

    def collect(self) -> SnapshotOutcome | None:
        """The outcome of the snapshot handed over, once it is written or failed; else None."""
        try:
            outcome = self._outcomes.popleft()
        except IndexError:
            return None
        self._out = False
        return outcome

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Write what was handed over (bounded by the client's socket timeout), then end; True when
        the thread ended within `timeout_s` (no write of this writer lands after that)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        self._job.append(_STOP)
        self._wake.set()
        thread.join(timeout_s)
        return not thread.is_alive()

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._job:
                snap = self._job.popleft()
                if snap is _STOP:
                    return
                self._outcomes.append(self._write(snap))

    def _write(self, snap: risk_snapshot.RiskSnapshot) -> SnapshotOutcome:
        t0 = time.perf_counter_ns()
        try:
            tip = self._store.tip(self._events_stream)
            tip_read_ns = self._clock_ns()
            self._store.save_snapshot(snap)
        except Exception as exc:  # noqa: BLE001 - the thread's loop boundary: an outcome, never a dead thread
            self.failures += 1
            self.last_error = type(exc).__name__ + ": " + (str(exc).splitlines() or [""])[0][:200]
            return SnapshotOutcome(ok=False, taken_ns=snap.taken_ns, error=self.last_error)
        self.saved += 1
        return SnapshotOutcome(ok=True, taken_ns=snap.taken_ns, events_tip=tip, tip_read_ns=tip_read_ns,
                               write_ns=time.perf_counter_ns() - t0)
