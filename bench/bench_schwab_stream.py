"""Fill latency at the Schwab adapter: by the streamer vs the sweep alone, in one run.

    .venv/bin/python -m bench.bench_schwab_stream [--fills N] [--sweep-ms MS]   (needs REDIS_URL, DATABASE_URL)

For each mode a fresh Schwab fake (tests/fakes/) and a `SchwabVenue` with `sweep_interval_ms`
(1,000, the default): N LIMIT orders rest at the fake, then one at a time the fake fills one and
the clock runs until the venue hands out its FILL report (`advance`); before each fill a pause
uniform in [0, sweep period), so fills land anywhere in the sweep's cycle. `stream`: the streamer on
(ACCT_ACTIVITY wakes the worker, which reads the order); `sweep`: `stream = false`, the fill waits
for the next sweep. Prints JSON: percentiles (ms) per mode and the ratio of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import time

import zmq

from adapters.brokers.schwab.venue import SchwabVenue
from bench.bench_brokers import DATABASE_URL, REDIS_URL, _fake, _seed_token
from node.config import SchwabConfig
from node.messages import ExecKind, OrderIntent, OrderType, Side
from node.migrations import apply_migrations, create_database, drop_database


def _reports(venue: SchwabVenue, timeout_s: float):
    if venue.socket.poll(int(timeout_s * 1000)):
        return venue.advance(time.time_ns())
    return []


def measure(token_db: str, stream: bool, fills: int, sweep_ms: int) -> list[float]:
    fake = _fake("schwab_fake").SchwabFake(account_hash="L" + secrets.token_hex(4)).start()
    cfg = SchwabConfig(
        api_key=fake.api_key, app_secret=fake.app_secret, account_hash=fake.account_hash, base_url=fake.base_url,
        database_url=token_db, vault_keys_hex={"k1": secrets.token_hex(32)}, vault_key_id="k1", redis_url=REDIS_URL,
        order_requests_per_min=1_000_000, order_requests_per_day=1_000_000, sweep_interval_ms=sweep_ms, stream=stream,
    )  # fmt: skip
    _seed_token(cfg, fake.issue_token())
    venue = SchwabVenue(cfg)
    ctx = zmq.Context()
    venue.open(ctx)
    try:
        deadline = time.monotonic() + 15
        while stream and not venue.stats().get("stream_up") and time.monotonic() < deadline:
            time.sleep(0.05)
        ids: dict[str, str] = {}
        for k in range(fills):
            it = OrderIntent(client_order_id="NAE-l" + secrets.token_hex(5) + "-" + str(k), signal_id="s",
                             request_id="r", strategy_id="bench", symbol="AAPL", side=Side.BUY,
                             order_type=OrderType.LIMIT, quantity=1.0, limit_price=99.0)
            venue.submit(it, time.time_ns())
            ids[it.client_order_id] = ""
        deadline = time.monotonic() + 60
        while any(not v for v in ids.values()) and time.monotonic() < deadline:
            for rep in _reports(venue, 0.1):
                if rep.kind is ExecKind.NEW:
                    ids[rep.client_order_id] = rep.venue_order_id
        out = []
        phase = random.Random(7)
        for coid, oid in ids.items():
            time.sleep(phase.uniform(0.0, sweep_ms / 1000))  # fills land anywhere in the sweep's period
            t0 = time.perf_counter()
            fake.fill(int(oid), 1.0, 99.0)
            done = False
            while not done and time.perf_counter() - t0 < 10:
                done = any(r.kind is ExecKind.FILL and r.client_order_id == coid for r in _reports(venue, 0.5))
            out.append((time.perf_counter() - t0) * 1000)
        return out
    finally:
        venue.close()
        ctx.term()
        fake.stop()


def _pcts(xs: list[float]) -> dict:
    q = statistics.quantiles(xs, n=100, method="inclusive")
    return {"n": len(xs), "p50_ms": round(statistics.median(xs), 2), "p90_ms": round(q[89], 2),
            "p99_ms": round(q[98], 2), "max_ms": round(max(xs), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fills", type=int, default=40)
    ap.add_argument("--sweep-ms", type=int, default=1_000)
    a = ap.parse_args()
    name, url = asyncio.run(create_database(DATABASE_URL, "nae_bench_"))
    try:
        asyncio.run(apply_migrations(url))
        stream = measure(url, True, a.fills, a.sweep_ms)
        sweep = measure(url, False, a.fills, a.sweep_ms)
    finally:
        asyncio.run(drop_database(DATABASE_URL, name))
    s, w = _pcts(stream), _pcts(sweep)
    print(json.dumps({"sweep_interval_ms": a.sweep_ms, "stream": s, "sweep_only": w,
                      "ratio_p50_sweep_over_stream": round(w["p50_ms"] / s["p50_ms"], 1),
                      "load": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
