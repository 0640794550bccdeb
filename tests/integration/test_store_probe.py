"""node.health.StoreProbe against the machine's Redis and PostgreSQL: a real write, the ledger
group's lag read from XINFO GROUPS, `SELECT 1`; an unreachable store is `down` with a one-line
detail (no password), within the probe's deadline."""

from __future__ import annotations

import os
import secrets
import time

import redis.asyncio as aioredis

from node.health import StoreProbe

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def test_up_and_the_ledger_lag_counts_unread_and_pending():
    tag = "test:probe:" + secrets.token_hex(4)
    signals, events = tag + ":signals", tag + ":events"
    client = aioredis.from_url(REDIS_URL)
    try:
        for _ in range(5):
            await client.xadd(signals, {b"b": b"x"})
        await client.xgroup_create(signals, "ledger", id="0")
        await client.xgroup_create(events, "ledger", id="0", mkstream=True)
        await client.xreadgroup("ledger", "c1", {signals: ">"}, count=2)  # 2 pending, 3 never delivered
        probe = StoreProbe(REDIS_URL, DATABASE_URL, tag + ":readyz", [signals, events], "ledger", min_interval_s=0.0)
        got = await probe.check()
        await probe.close()
        assert got["redis"]["status"] == "up" and await client.exists(tag + ":readyz")
        assert got["postgresql"] == {"status": "up"}
        assert got["ledger_lag"] == {"status": "up", "entries": 5, "streams": {signals: 5, events: 0}}
    finally:
        await client.delete(signals, events, tag + ":readyz")
        await client.aclose()


async def test_unreachable_stores_are_down_within_the_deadline():
    probe = StoreProbe("redis://:pw-secret-1@127.0.0.1:1/0", "postgresql://u:pw-secret-2@127.0.0.1:1/x", "k", ["s"],
                       "ledger", timeout_s=0.5, min_interval_s=0.0)
    t0 = time.monotonic()
    got = await probe.check()
    await probe.close()
    assert time.monotonic() - t0 < 5
    assert got["redis"]["status"] == "down" and got["postgresql"]["status"] == "down"
    assert got["ledger_lag"]["status"] == "down"
    text = repr(got)
    assert "pw-secret" not in text and "\n" not in got["redis"]["detail"]


async def test_answers_are_cached_for_the_interval():
    probe = StoreProbe(REDIS_URL, None, "test:probe:cache:" + secrets.token_hex(4), [], None, min_interval_s=60.0)
    first = await probe.check()
    assert await probe.check() is first
    await probe.close()
