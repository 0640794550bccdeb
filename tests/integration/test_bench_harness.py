"""The benchmark harness against real services: a short run of the floor and the seed-style
baseline (real ZeroMQ, real Redis, a real uvicorn child process) checks the report shape and that
nothing is lost or duplicated; an in-process target checks that errors, losses and duplicates are
counted (so the zero-loss assertions can fail). No timed assertions: only shapes and counts."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import orjson
import pytest

from bench.baseline import BaselineTarget
from bench.floor import measure_floor
from bench.harness import LatencyStats, run_concurrent, run_max_rate, run_paced
from bench.run import BenchRedis, Plan, Plans, drive, ratios, run_all, table

FIGURES = ("reply_p50_us", "reply_p99_us", "reply_p999_us", "fill_p50_us", "fill_p99_us", "fill_p999_us")
TINY = Plan(warmup=30, paced_rate_per_s=500.0, paced_n=150, concurrent_n=200, max_rate_n=200, window=16, budget_s=90.0)


@pytest.fixture(scope="module")
def bench_redis_url():
    with BenchRedis(os.environ.get("REDIS_URL")) as url:
        yield url


class FakeTarget:
    """In-process target: replies after a yield; fails, drops or duplicates the indices it is told."""

    name = "fake"

    def __init__(self, n: int, fail: set[int] = frozenset(), no_fill: set[int] = frozenset(),
                 dup: set[int] = frozenset()) -> None:
        self._fail, self._no_fill, self._dup = fail, no_fill, dup
        self._sent = np.zeros(n, dtype=bool)
        self.accepted = self.rejected = self.duplicates = 0

    async def start(self) -> None:
        pass

    async def send(self, i: int) -> None:
        self._sent[i] = True
        await asyncio.sleep(0)
        if i in self._fail:
            raise TimeoutError("no reply")
        self.accepted += 1
        self.duplicates += i in self._dup

    async def wait_fills(self, timeout_s: float, indices: range | None = None) -> np.ndarray:
        idx = [i for i in indices if self._sent[i] and i not in self._fail and i not in self._no_fill]
        return np.full(len(idx), 1_000, dtype=np.int64)

    def counts(self) -> dict:
        return {"sent": int(self._sent.sum()), "accepted": self.accepted, "rejected": 0, "lost": 0,
                "duplicates": self.duplicates}

    async def stop(self) -> None:
        pass


def test_latency_stats_percentiles():
    stats = LatencyStats.from_ns(np.arange(1, 1001, dtype=np.int64) * 1_000)  # 1..1000 us
    assert (stats.n, stats.p50_us, stats.p99_us, stats.mean_us, stats.max_us) == (1000, 500.5, 990.0, 500.5, 1000.0)
    assert LatencyStats.from_ns(np.empty(0, dtype=np.int64)) is None


@pytest.mark.parametrize("runner", ["paced", "concurrent", "max_rate"])
async def test_harness_counts_errors_losses_and_duplicates(runner):
    target = FakeTarget(300, fail={105, 110}, no_fill={120}, dup={130})
    if runner == "paced":
        result = await run_paced(target, 5_000.0, 100, 100, fill_timeout_s=0.1)
    elif runner == "concurrent":
        result = await run_concurrent(target, 16, 100, 100, fill_timeout_s=0.1)
    else:
        result = await run_max_rate(target, 100, 32, 100, fill_timeout_s=0.1)
    assert (result.n, result.ok, result.errors, result.fills) == (100, 98, 2, 97)
    assert result.lost == 3  # two without a reply, one accepted without a fill
    assert result.duplicates == 1
    assert result.reply.n == 98 and result.first_error.startswith("TimeoutError")


class RestingTarget(FakeTarget):
    """Like the user path: some ACKed orders rest and are never to fill (its stops)."""

    def __init__(self, n: int, rest: set[int], **kw) -> None:
        super().__init__(n, no_fill=rest, **kw)
        self._rest = rest

    def resting(self, indices: range) -> int:
        return sum(1 for i in indices if i in self._rest and self._sent[i] and i not in self._fail)


async def test_orders_that_rest_are_not_counted_lost_but_a_missing_fill_still_is():
    target = RestingTarget(300, rest={101, 102, 103}, fail={110})
    target._no_fill = {101, 102, 103, 120}  # 120 must fill and does not
    result = await run_paced(target, 5_000.0, 100, 100, fill_timeout_s=0.1)
    assert (result.ok, result.fills) == (99, 95)
    assert result.lost == 2  # one without a reply, one accepted without its fill; the three stops are not lost


async def test_floor_figures(bench_redis_url):
    floor = await measure_floor(bench_redis_url, n=300)
    for name in ("zmq_rtt", "zmq_async_rtt", "redis_rtt"):
        p50, p99 = floor[name + "_p50_us"], floor[name + "_p99_us"]
        assert 0 < p50 <= p99 <= floor[name + "_p999_us"]
    assert floor["sum_p50_us"] == pytest.approx(floor["zmq_rtt_p50_us"] + floor["redis_rtt_p50_us"], abs=0.2)


async def test_baseline_loses_nothing(bench_redis_url):
    target = BaselineTarget(bench_redis_url, n_max=TINY.total)
    report = await drive(target, TINY, progress=lambda line: None)
    for run in ("paced", "concurrent", "max_rate"):
        figures = report[run]
        assert all(figures[k] is not None and figures[k] > 0 for k in FIGURES), figures
        assert figures["lost"] == figures["errors"] == figures["duplicates"] == 0
    assert report["counts"] == {"sent": TINY.total, "accepted": TINY.total, "rejected": 0, "lost": 0, "duplicates": 0}
    assert report["lost"] == report["duplicates"] == 0 and report["rate_per_s"] > 0


async def test_baseline_rejects_a_bad_signature(bench_redis_url):
    target = BaselineTarget(bench_redis_url, n_max=2)
    await target.start()
    try:
        target._headers[1]["x-signature"] = "00" * 32
        await target.send(0)
        with pytest.raises(RuntimeError, match="HTTP 401"):
            await target.send(1)
        fills = await target.wait_fills(5.0)
    finally:
        await target.stop()
    assert target.counts() == {"sent": 2, "accepted": 1, "rejected": 1, "lost": 0, "duplicates": 0}
    assert len(fills) == 1


async def test_report_without_node(bench_redis_url):
    plans = Plans(floor_n=200, baseline=TINY, node=TINY)
    report = await run_all(bench_redis_url, plans, quick=True, progress=lambda line: None, include_node=False)
    assert report["node"] is None
    assert report["ratio"] == {"p50": None, "p99": None, "rate": None}
    assert report["floor"]["zmq_rtt_p50_us"] > 0 and report["floor"]["redis_rtt_p50_us"] > 0
    assert report["baseline"]["lost"] == 0
    assert orjson.loads(orjson.dumps(report)) == report
    assert "baseline" in table(report)


def test_ratios_use_concurrent_latency_and_max_rate():
    node = {"concurrent": {"reply_p50_us": 200.0, "reply_p99_us": 500.0}, "rate_per_s": 20_000.0}
    baseline = {"concurrent": {"reply_p50_us": 800.0, "reply_p99_us": 10_000.0}, "rate_per_s": 700.0}
    assert ratios(node, baseline) == {"p50": 4.0, "p99": 20.0, "rate": 28.57}
    assert ratios(None, baseline) == {"p50": None, "p99": None, "rate": None}
    assert ratios({"error": "x"}, baseline)["rate"] is None
