"""Load generation and latency statistics for the benchmark: one target, three ways to drive it.

A *target* is anything that answers signals (the node, the seed-style baseline). The harness
drives it three ways, each bounded in count (and, through the target's own timeouts, in time):

- `run_paced`: open loop at a fixed rate. Send k is due at ``t0 + k * period``, scheduled by
  absolute deadlines from `perf_counter_ns` (no `sleep(1/rate)` drift; a late wake-up sends the
  overdue signals at once). Each send runs as its own task, so a slow reply never delays the
  next send; the number in flight is capped (`max_in_flight`) so an overloaded target cannot
  make the run unbounded, nor pile thousands of requests into a client's queue. Sends then start
  late: `late_sends` and `max_lag_ms` show it, and `rate_per_s` falls below the asked rate.
  Latency counts from the actual send, so check those two before reading an overloaded run.
- `run_concurrent`: closed loop, `senders` coroutines each awaiting its reply before its next send.
- `run_max_rate`: the sustained rate, a bounded in-flight window of `window` outstanding signals
  (a pipeline of `window` closed-loop lanes: no task is created per signal), rate = n / elapsed.

Reply latency is measured here (send start -> `send` resolved). Fill latency (signal sent ->
fill received) is measured by the target itself and handed back by `wait_fills`. Each run uses its
own block of signal indices ``[start, start + n)``; inputs are prepared by the target in
`start()`, before anything is timed, and the warm-up is a separate, unreported run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

import msgspec
import numpy as np

_perf_ns = time.perf_counter_ns


class LatencyStats(msgspec.Struct, frozen=True, kw_only=True):
    """Percentiles of a latency sample, in microseconds."""

    n: int
    p50_us: float
    p99_us: float
    p999_us: float
    mean_us: float
    max_us: float

    @classmethod
    def from_ns(cls, samples: np.ndarray) -> LatencyStats | None:
        """Stats of `samples` (nanoseconds); None for an empty sample."""
        a = np.asarray(samples, dtype=np.float64)
        if a.size == 0:
            return None
        p50, p99, p999 = np.percentile(a, (50.0, 99.0, 99.9))
        return cls(
            n=int(a.size),
            p50_us=round(float(p50) / 1e3, 1),
            p99_us=round(float(p99) / 1e3, 1),
            p999_us=round(float(p999) / 1e3, 1),
            mean_us=round(float(a.mean()) / 1e3, 1),
            max_us=round(float(a.max()) / 1e3, 1),
        )


@runtime_checkable
class Target(Protocol):
    """What the harness drives. `name` labels it in reports.

    - `start()` starts the system under test and prepares every input (outside the timed part).
    - `send(i)` resolves when the reply to signal i arrived; raises on an error reply or a timeout.
    - `wait_fills(timeout_s, indices)` waits up to `timeout_s` for the fills of the signals in
      `indices` (all sent so far when None) and returns the fill latencies in ns (signal sent ->
      fill received) of those that filled; a target without fills returns None.
    - `counts()` -> cumulative dict with `sent`, `accepted`, `rejected`, `lost`, `duplicates` (a second
      execution of one signal), optionally `repeats` (a report seen again: same exec id) and
      `unattributed` (a fill without a request_id to match).
    """

    name: str

    async def start(self) -> None: ...

    async def send(self, i: int) -> None: ...

    async def wait_fills(self, timeout_s: float, indices: range | None = None) -> np.ndarray | None: ...

    def counts(self) -> dict: ...

    async def stop(self) -> None: ...


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    """One run of one target: what was sent, what came back, how fast."""

    mode: str  # "paced" | "concurrent" | "max_rate" | "warmup"
    n: int
    ok: int  # sends that resolved
    errors: int  # sends that raised (error reply, rejection or timeout)
    rejected: int  # of those, explicit rejections
    elapsed_s: float
    rate_per_s: float  # ok / elapsed
    reply: LatencyStats | None
    fill: LatencyStats | None
    fills: int  # fills received for the run's signals (-1: the target has no fills)
    lost: int  # no reply (not a rejection) + accepted without a fill
    duplicates: int  # duplicates the target counted during the run (a second execution of one signal)
    repeats: int = 0  # reports the client saw again (same exec id) and dropped: not duplicates
    unattributed: int = 0  # fill reports without a request_id the client could match
    late_sends: int = 0  # paced only: sends started more than one period after their deadline
    max_lag_ms: float = 0.0  # paced only: the worst delay of a send behind its deadline
    first_error: str = ""

    def figures(self) -> dict:
        """The flat figures the report carries for this run."""
        r, f = self.reply, self.fill
        return {
            "n": self.n,
            "reply_p50_us": r.p50_us if r else None,
            "reply_p99_us": r.p99_us if r else None,
            "reply_p999_us": r.p999_us if r else None,
            "fill_p50_us": f.p50_us if f else None,
            "fill_p99_us": f.p99_us if f else None,
            "fill_p999_us": f.p999_us if f else None,
            "rate_per_s": round(self.rate_per_s, 1),
            "errors": self.errors,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "repeats": self.repeats,
            "unattributed": self.unattributed,
            "late_sends": self.late_sends,
            "max_lag_ms": self.max_lag_ms,
        }


class _Recorder:
    """Per-run latency slots (preallocated) and error counts."""

    __slots__ = ("start", "lat", "errors", "first_error")

    def __init__(self, start: int, n: int) -> None:
        self.start = start
        self.lat = np.full(n, -1, dtype=np.int64)
        self.errors = 0
        self.first_error = ""

    async def send(self, target: Target, i: int) -> None:
        t0 = _perf_ns()
        try:
            await target.send(i)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # loop boundary: count and carry on
            self.errors += 1
            if not self.first_error:
                self.first_error = type(exc).__name__ + ": " + str(exc)[:200]
            return
        self.lat[i - self.start] = _perf_ns() - t0


async def _finish(
    target: Target, mode: str, rec: _Recorder, n: int, elapsed_ns: int, before: dict,
    fill_timeout_s: float, late_sends: int = 0, max_lag_ns: int = 0,
) -> RunResult:
    indices = range(rec.start, rec.start + n)
    fills_ns = await target.wait_fills(fill_timeout_s, indices)
    after = target.counts()
    ok_mask = rec.lat >= 0
    ok = int(ok_mask.sum())
    rejected = int(after.get("rejected", 0) - before.get("rejected", 0))
    no_reply = max(0, rec.errors - rejected)
    if fills_ns is None:
        fill, fills, no_fill = None, -1, 0
    else:
        fill, fills = LatencyStats.from_ns(fills_ns), int(len(fills_ns))
        # a target whose stream has orders that rest (the user path's stops) says how many of the
        # ACKed ones are not to fill: they were counted lost before, 20% of every user-path run
        resting = getattr(target, "resting", None)
        no_fill = max(0, ok - fills - (resting(indices) if resting is not None else 0))
    elapsed_s = elapsed_ns / 1e9
    return RunResult(
        mode=mode,
        n=n,
        ok=ok,
        errors=rec.errors,
        rejected=rejected,
        elapsed_s=round(elapsed_s, 3),
        rate_per_s=ok / elapsed_s if elapsed_s > 0 else 0.0,
        reply=LatencyStats.from_ns(rec.lat[ok_mask]),
        fill=fill,
        fills=fills,
        lost=no_reply + no_fill,
        duplicates=int(after.get("duplicates", 0) - before.get("duplicates", 0)),
        repeats=int(after.get("repeats", 0) - before.get("repeats", 0)),
        unattributed=int(after.get("unattributed", 0) - before.get("unattributed", 0)),
        late_sends=late_sends,
        max_lag_ms=round(max_lag_ns / 1e6, 1),
        first_error=rec.first_error,
    )


async def run_paced(
    target: Target, rate_per_s: float, n: int, start: int = 0, *,
    max_in_flight: int = 4_096, fill_timeout_s: float = 10.0, mode: str = "paced",
) -> RunResult:
    """Open loop: signal k of `n` is due at t0 + k / rate; replies are awaited in their own tasks."""
    rec = _Recorder(start, n)
    before = target.counts()
    period_ns = int(1e9 / rate_per_s)
    slot = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task] = set()
    loop = asyncio.get_running_loop()
    late = 0
    max_lag = 0

    async def one(i: int) -> None:
        try:
            await rec.send(target, i)
        finally:
            slot.release()

    t0 = _perf_ns()
    for k in range(n):
        due = t0 + k * period_ns
        wait_ns = due - _perf_ns()
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
        await slot.acquire()
        lag = _perf_ns() - due
        if lag > period_ns:
            late += 1
            if lag > max_lag:
                max_lag = lag
        task = loop.create_task(one(start + k))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    elapsed = _perf_ns() - t0
    return await _finish(target, mode, rec, n, elapsed, before, fill_timeout_s, late, max_lag)


async def _lanes(target: Target, rec: _Recorder, n: int, lanes: int) -> int:
    """`lanes` closed-loop senders sharing indices [rec.start, rec.start + n); returns elapsed ns."""
    end = rec.start + n
    nxt = [rec.start]

    async def lane() -> None:
        send = rec.send
        while True:
            i = nxt[0]
            if i >= end:
                return
            nxt[0] = i + 1
            await send(target, i)

    t0 = _perf_ns()
    await asyncio.gather(*(lane() for _ in range(min(lanes, n))))
    return _perf_ns() - t0


async def run_concurrent(
    target: Target, senders: int = 16, n: int = 10_000, start: int = 0, *,
    fill_timeout_s: float = 10.0,
) -> RunResult:
    """Closed loop: `senders` concurrent senders, each awaiting its reply before its next send."""
    rec = _Recorder(start, n)
    before = target.counts()
    elapsed = await _lanes(target, rec, n, senders)
    return await _finish(target, "concurrent", rec, n, elapsed, before, fill_timeout_s)


async def run_max_rate(
    target: Target, n: int, window: int = 512, start: int = 0, *, fill_timeout_s: float = 20.0,
) -> RunResult:
    """Sustained rate: `n` signals with at most `window` outstanding; rate = replies / elapsed.

    The rate counts only when the result's `lost` is 0 (the report shows both)."""
    rec = _Recorder(start, n)
    before = target.counts()
    elapsed = await _lanes(target, rec, n, window)
    return await _finish(target, "max_rate", rec, n, elapsed, before, fill_timeout_s)


async def warm_up(target: Target, n: int, start: int = 0, senders: int = 8) -> RunResult:
    """An unreported closed-loop run that brings connections, caches and JITs up to speed."""
    rec = _Recorder(start, n)
    before = target.counts()
    elapsed = await _lanes(target, rec, n, senders)
    return await _finish(target, "warmup", rec, n, elapsed, before, 10.0)
