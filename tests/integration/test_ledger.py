"""actors.ledger against the real Redis and PostgreSQL: drains the streams, writes each row once
even when entries are delivered twice, finishes a dead consumer's pending entries, survives a
dropped database connection."""

from __future__ import annotations

import asyncio
import os
import secrets
import time

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from actors.ledger import Ledger, LedgerConfig, ledger_fills
from node.config import StorageConfig
from node.ledger_rows import build_batch
from node.messages import ExecKind, ExecutionReport, Side, Signal, SignalAccepted, encode
from node.migrations import apply_migrations, create_database, drop_database

SERVER_URL = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
async def database():
    """One throwaway database for the module, migrated; tables emptied before each test."""
    name, url = await create_database(SERVER_URL, "nae_test_ledger_")
    await apply_migrations(url)
    yield url
    await drop_database(SERVER_URL, name)


@pytest.fixture
async def db(database: str) -> str:
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(
            "TRUNCATE signals, orders, fills, order_events, ledger_dead_letters, monitoring_events, failover_events"
        )
    finally:
        await conn.close()
    return database


@pytest.fixture
async def storage():
    """Fresh stream names per test; deleted afterwards."""
    tag = "test:ledger:" + secrets.token_hex(4) + ":"
    cfg = StorageConfig(
        signals_stream=tag + "signals", events_stream=tag + "events", monitoring_stream=tag + "monitoring"
    )
    yield cfg
    client = aioredis.from_url(REDIS_URL)
    await client.delete(cfg.signals_stream, cfg.events_stream, cfg.monitoring_stream)
    await client.aclose()


def lifecycle(coid: str) -> list[bytes]:
    ids = dict(strategy_id="s1", request_id="r-" + coid, signal_id="g-" + coid, symbol="NVDA", side=Side.BUY)
    return [
        encode(ExecutionReport(kind=ExecKind.NEW, client_order_id=coid, leaves_qty=10.0, ts_ns=1, **ids)),
        encode(ExecutionReport(kind=ExecKind.PARTIAL_FILL, client_order_id=coid, exec_id=coid + "-x1", last_qty=4.0,
                               last_px=140.0, cum_qty=4.0, leaves_qty=6.0, avg_px=140.0, ts_ns=2, **ids)),
        encode(ExecutionReport(kind=ExecKind.FILL, client_order_id=coid, exec_id=coid + "-x2", last_qty=6.0,
                               last_px=141.0, cum_qty=10.0, leaves_qty=0.0, avg_px=140.6, ts_ns=3, **ids)),
    ]  # fmt: skip


def accepted(i: int) -> bytes:
    sig = Signal(request_id="r-o" + str(i), strategy_id="s1", timestamp=1_700_000_000.0, symbol="NVDA",
                 action="BUY", quantity=10.0)  # fmt: skip
    return encode(SignalAccepted("g-o" + str(i), 1_700_000_000_000_000_000 + i, sig))


async def append(stream: str, field: bytes, payloads: list[bytes]) -> None:
    client = aioredis.from_url(REDIS_URL)
    pipe = client.pipeline(transaction=False)
    for p in payloads:
        pipe.xadd(stream, {field: p})
    await pipe.execute()
    await client.aclose()


async def fill_orders(storage: StorageConfig, first: int, count: int) -> int:
    """Append `count` orders' signals and lifecycles; returns the number of entries appended."""
    await append(storage.signals_stream, b"a", [accepted(i) for i in range(first, first + count)])
    events = [p for i in range(first, first + count) for p in lifecycle("o" + str(i))]
    await append(storage.events_stream, b"e", events)
    return count + len(events)


async def counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        tables = ("signals", "orders", "fills", "order_events", "ledger_dead_letters", "monitoring_events", "failover_events")
        return {t: await conn.fetchval("SELECT count(*) FROM " + t) for t in tables}
    finally:
        await conn.close()


async def pending(storage: StorageConfig, group: str = "ledger") -> int:
    client = aioredis.from_url(REDIS_URL)
    try:
        total = 0
        for s in (storage.signals_stream, storage.events_stream, storage.monitoring_stream):
            info = await client.xpending(s, group)
            total += info["pending"]
        return total
    finally:
        await client.aclose()


async def wait_for(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def ledger(storage: StorageConfig, url: str, **cfg) -> Ledger:
    cfg.setdefault("block_ms", 10)
    return Ledger(storage, REDIS_URL, url, LedgerConfig(**cfg))


# ---------------------------------------------------------------- tests


async def test_drains_signals_events_and_monitoring(db: str, storage: StorageConfig) -> None:
    n = await fill_orders(storage, 0, 20)
    mon = [
        {"kind": "breaker_trip", "name": "broker:paper"},
        {"kind": "failover", "role": "engine", "epoch": 3, "from": "engine:a", "to": "engine:b", "reason": "missed heartbeats"},
    ]
    await append(storage.monitoring_stream, b"m", [orjson.dumps(m) for m in mon])
    led = ledger(storage, db)
    await led.start()
    try:
        assert await led.drain() == n + 2
    finally:
        await led.close()
    assert await counts(db) == {
        "signals": 20, "orders": 20, "fills": 40, "order_events": 60, "ledger_dead_letters": 0,
        "monitoring_events": 2, "failover_events": 1,
    }  # fmt: skip
    assert await pending(storage) == 0
    conn = await asyncpg.connect(db)
    try:
        row = await conn.fetchrow("SELECT * FROM orders WHERE client_order_id = 'o7'")
        assert (row["state"], row["cum_qty"], row["leaves_qty"], row["avg_px"], row["side"]) == ("FILL", 10.0, 0.0, 140.6, "BUY")
        assert (row["signal_id"], row["request_id"], row["symbol"]) == ("g-o7", "r-o7", "NVDA")
        fo = await conn.fetchrow("SELECT * FROM failover_events")
        assert (fo["epoch"], fo["from_name"], fo["to_name"]) == (3, "engine:a", "engine:b")
    finally:
        await conn.close()
    fills = await ledger_fills(db)
    assert [f["exec_id"] for f in fills][:2] == ["o0-x1", "o0-x2"]
    assert {(f["client_order_id"], f["qty"], f["px"]) for f in fills if f["client_order_id"] == "o3"} == {
        ("o3", 4.0, 140.0), ("o3", 6.0, 141.0),
    }  # fmt: skip
    assert led.stats().entries == n + 2 and led.stats().batches >= 1


async def test_crash_before_xack_redelivers_and_rows_are_written_once(db: str, storage: StorageConfig) -> None:
    n = await fill_orders(storage, 0, 30)
    first = ledger(storage, db)
    await first.start()
    reply = await first.read()
    batch = build_batch(reply, storage.signals_stream, storage.events_stream, storage.monitoring_stream)
    assert batch.entry_count == n
    await first.write(batch)  # committed ... and then the process dies before XACK
    await first.close()
    assert await pending(storage) == n
    before = await counts(db)

    second = ledger(storage, db)  # the restarted ledger (same consumer name)
    await second.start()
    try:
        assert await second.drain() == n
    finally:
        await second.close()
    assert await counts(db) == before  # every row once
    assert before["fills"] == 60 and before["signals"] == 30 and before["order_events"] == 90
    assert await pending(storage) == 0


async def test_entries_pending_on_a_dead_consumer_are_claimed_and_finished(db: str, storage: StorageConfig) -> None:
    n = await fill_orders(storage, 0, 10)
    survivor = ledger(storage, db, consumer="ledger-2", claim_min_idle_ms=1, claim_every_ms=1)
    await survivor.start()  # creates the groups
    client = aioredis.from_url(REDIS_URL)
    try:  # another ledger reads everything and dies without writing or acking
        got = await client.xreadgroup(
            "ledger", "ledger-dead", {storage.signals_stream: ">", storage.events_stream: ">"}, count=1_000
        )
        assert sum(len(entries) for _, entries in (got.items() if isinstance(got, dict) else got)) == n
    finally:
        await client.aclose()
    await fill_orders(storage, 10, 5)  # and new entries keep coming
    await asyncio.sleep(0.01)
    try:
        assert await survivor.drain() == n + 20
    finally:
        await survivor.close()
    assert (await counts(db))["orders"] == 15 and (await counts(db))["fills"] == 30
    assert await pending(storage) == 0
    assert survivor.stats().claimed == n


async def test_replayed_older_event_does_not_roll_an_order_back(db: str, storage: StorageConfig) -> None:
    new, _, fill = lifecycle("o1")
    led = ledger(storage, db)
    await led.start()
    try:
        ev = storage.events_stream
        await led.write(build_batch([[ev, [(b"200-0", {b"e": fill})]]], storage.signals_stream, ev, storage.monitoring_stream))
        await led.write(build_batch([[ev, [(b"100-0", {b"e": new})]]], storage.signals_stream, ev, storage.monitoring_stream))
    finally:
        await led.close()
    conn = await asyncpg.connect(db)
    try:
        row = await conn.fetchrow("SELECT state, cum_qty, stream_id FROM orders WHERE client_order_id = 'o1'")
        assert tuple(row) == ("FILL", 10.0, "200-0")
        assert await conn.fetchval("SELECT count(*) FROM order_events") == 2
    finally:
        await conn.close()


async def test_poison_entries_go_to_dead_letters_and_do_not_block(db: str, storage: StorageConfig) -> None:
    await append(storage.events_stream, b"e", [b"\xc1\xc1 not msgpack"] + lifecycle("o1"))
    led = ledger(storage, db)
    await led.start()
    try:
        assert await led.drain() == 4
    finally:
        await led.close()
    c = await counts(db)
    assert c["ledger_dead_letters"] == 1 and c["order_events"] == 3
    assert await pending(storage) == 0


async def test_run_survives_a_dropped_database_connection(db: str, storage: StorageConfig) -> None:
    led = ledger(storage, db, retry_backoff_ms=20)
    task = asyncio.create_task(led.run())
    try:
        n1 = await fill_orders(storage, 0, 10)

        async def reached(n: int):
            return led.stats().entries >= n

        await wait_for(lambda: reached(n1))
        admin = await asyncpg.connect(SERVER_URL)
        try:  # kill the ledger's session, as a database restart would
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
                db.rsplit("/", 1)[1].split("?", 1)[0],
            )
            assert killed >= 1
        finally:
            await admin.close()
        n2 = await fill_orders(storage, 10, 10)
        await wait_for(lambda: reached(n1 + n2))
        stats = led.stats()
        assert stats.errors >= 1 and stats.last_error
    finally:
        await led.stop()
        await asyncio.wait_for(task, 10.0)
    assert led.stats().running is False
    c = await counts(db)
    assert (c["orders"], c["fills"], c["signals"], c["order_events"]) == (20, 40, 20, 60)
    assert await pending(storage) == 0


async def test_program_drains_until_sigterm_and_names_a_bad_url(db: str, storage: StorageConfig, tmp_path) -> None:
    import signal
    import subprocess
    import sys

    conf = tmp_path / "node.toml"
    conf.write_text(
        "[storage]\n"
        + "".join(k + ' = "' + getattr(storage, k) + '"\n' for k in ("signals_stream", "events_stream", "monitoring_stream"))
    )
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    cmd = [sys.executable, "-m", "actors.ledger", "--config", str(conf), "--redis-url", REDIS_URL]
    bad = subprocess.run(cmd + ["--database-url", "postgresql://u:hunter2@127.0.0.1:1/x"], env=env,
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert bad.returncode == 1 and "Traceback" not in bad.stdout + bad.stderr
    assert "PostgreSQL at postgresql://u:***@127.0.0.1:1/x is unreachable" in bad.stdout
    assert "hunter2" not in bad.stdout

    proc = subprocess.Popen(cmd + ["--database-url", db], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        await fill_orders(storage, 0, 5)

        async def drained():
            return (await counts(db))["order_events"] == 15

        await wait_for(drained, 30.0)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, out
    assert await pending(storage) == 0


async def test_a_row_postgresql_refuses_is_set_aside_and_the_rest_is_written(db: str, storage: StorageConfig) -> None:
    """Issue 10 item 2: a NUL in a text field (from a client, or an adapter) used to stop the ledger
    for ever: the same pending batch was re-read and refused again, nothing after it written."""
    for field in ("strategy_id", "request_id", "model_id"):
        sig = Signal(**{"request_id": "r-nul-" + field, "strategy_id": "s1", "timestamp": 1_700_000_000.0,
                        "symbol": "NVDA", "action": "BUY", "quantity": 1.0, field: "bad\x00" + field})
        await append(storage.signals_stream, b"a", [encode(SignalAccepted("g-nul-" + field, 1, sig))])
    n = await fill_orders(storage, 0, 10)
    bad_report = ExecutionReport(kind=ExecKind.NEW, client_order_id="c-nul", strategy_id="evil\x00", ts_ns=1)
    await append(storage.events_stream, b"e", [encode(bad_report)])
    n += await fill_orders(storage, 10, 10)
    led = ledger(storage, db)
    await led.start()
    try:
        await led.drain()
        stats = led.stats()
    finally:
        await led.close()
    got = await counts(db)
    assert got["signals"] == 20 and got["orders"] == 20 and got["fills"] == 40
    assert got["ledger_dead_letters"] == 4
    assert stats.refused_rows == 4 and stats.entries == n + 4
    assert await pending(storage) == 0
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch("SELECT stream, raw, error FROM ledger_dead_letters ORDER BY stream_id")
    finally:
        await conn.close()
    assert all(r["raw"] and "refused by PostgreSQL" in r["error"] for r in rows)


async def test_a_trickle_is_written_in_batches_a_linger_apart(db: str, storage: StorageConfig) -> None:
    """At a steady trickle (one signal every 5 ms) each read waits `linger_ms` after the last one, so a
    transaction carries many signals, not the one or two that came while the last one committed."""
    led = ledger(storage, db, linger_ms=300)
    task = asyncio.ensure_future(led.run())
    try:
        t0 = time.monotonic()
        for i in range(200):
            await append(storage.signals_stream, b"a", [accepted(i)])
            await asyncio.sleep(0.005)

        async def all_in() -> bool:
            return led.stats().signals == 200

        await wait_for(all_in)
        elapsed = time.monotonic() - t0
    finally:
        await led.stop()
        await task
    assert (await counts(db))["signals"] == 200
    assert led.stats().batches <= elapsed / 0.3 + 2, (led.stats().batches, elapsed)


async def test_a_full_read_is_followed_at_once_whatever_the_linger(db: str, storage: StorageConfig) -> None:
    """A backlog (reads that come back with `batch_count` entries) is drained read after read: the
    linger applies only after a short read."""
    await append(storage.signals_stream, b"a", [accepted(i) for i in range(1_000)])
    led = ledger(storage, db, linger_ms=30_000, batch_count=128)
    task = asyncio.ensure_future(led.run())
    try:
        async def all_in() -> bool:
            return led.stats().signals == 1_000

        await wait_for(all_in)  # 8 reads; a linger after each would take 210 s
    finally:
        await led.stop()
        await task
    assert (await counts(db))["signals"] == 1_000
