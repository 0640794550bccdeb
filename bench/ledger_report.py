"""Ledger throughput: how many execution events per second the ledger drains into PostgreSQL.

`python -m bench.ledger_report [--events 150000] [--json]`

Generates N ExecutionReports (per order: NEW, PARTIAL_FILL, FILL, so two fills in three events;
with `--with-signals` also one SignalAccepted per order) into fresh streams (a unique name prefix)
in the real Redis, then
times one Ledger draining them into a fresh database (CREATE DATABASE nae_bench_<random>). Inputs
are made and appended outside the timed part; migrations and connections happen before it. The
streams and the database are removed afterwards. Output: events/s (execution events), entries/s
(events + signals), and p50/p99 of the batch commit latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from actors.ledger import Ledger, LedgerConfig
from node.config import StorageConfig
from node.messages import ExecKind, ExecutionReport, Side, Signal, SignalAccepted, encode
from node.migrations import create_database, drop_database
from node.stats import to_plain

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
SYMBOLS = ("AAPL", "MSFT", "NVDA", "SPY", "TSLA", "QQQ")


def make_reports(n_events: int, tag: str = "b") -> tuple[list[bytes], list[bytes]]:
    """(event payloads, signal payloads): msgpack ExecutionReports, 3 per order, and one
    SignalAccepted per order. Deterministic for a given tag."""
    events: list[bytes] = []
    signals: list[bytes] = []
    n_orders = (n_events + 2) // 3
    t0 = 1_700_000_000_000_000_000
    for i in range(n_orders):
        sym = SYMBOLS[i % len(SYMBOLS)]
        side = Side.BUY if i % 2 == 0 else Side.SELL
        coid = tag + "-o" + str(i)
        ids = dict(strategy_id="s" + str(i % 8), request_id=tag + "-r" + str(i), signal_id=tag + "-g" + str(i))
        sig = Signal(request_id=ids["request_id"], strategy_id=ids["strategy_id"], timestamp=1_700_000_000.0 + i,
                     symbol=sym, action="BUY" if side is Side.BUY else "SELL", quantity=100.0)  # fmt: skip
        signals.append(encode(SignalAccepted(ids["signal_id"], t0 + i, sig)))
        base = dict(client_order_id=coid, venue_order_id="v" + str(i), symbol=sym, side=side, **ids)
        events.append(encode(ExecutionReport(kind=ExecKind.NEW, leaves_qty=100.0, ts_ns=t0 + i, **base)))
        events.append(encode(ExecutionReport(
            kind=ExecKind.PARTIAL_FILL, exec_id=coid + "-x1", last_qty=40.0, last_px=100.0, cum_qty=40.0,
            leaves_qty=60.0, avg_px=100.0, ts_ns=t0 + i + 1, **base)))  # fmt: skip
        events.append(encode(ExecutionReport(
            kind=ExecKind.FILL, exec_id=coid + "-x2", last_qty=60.0, last_px=100.5, cum_qty=100.0,
            leaves_qty=0.0, avg_px=100.3, ts_ns=t0 + i + 2, **base)))  # fmt: skip
    return events[:n_events], signals


async def append(redis_url: str, stream: str, field: bytes, payloads: list[bytes], chunk: int = 10_000) -> None:
    client = aioredis.from_url(redis_url)
    try:
        for i in range(0, len(payloads), chunk):
            pipe = client.pipeline(transaction=False)
            for p in payloads[i : i + chunk]:
                pipe.xadd(stream, {field: p})
            await pipe.execute()
    finally:
        await client.aclose()


async def run_report(
    n_events: int,
    redis_url: str = REDIS_URL,
    admin_url: str = ADMIN_URL,
    batch_count: int = 5_000,
    with_signals: bool = False,
    per_entry: int = 64,
) -> dict[str, Any]:
    """Append, drain, measure, clean up. Returns the report dict. `with_signals` also appends one
    SignalAccepted per order to the signals stream, drained in the same timed run."""
    tag = secrets.token_hex(4)
    storage = StorageConfig(
        signals_stream="bench:" + tag + ":signals", events_stream="bench:" + tag + ":events",
        monitoring_stream="bench:" + tag + ":monitoring",
    )  # fmt: skip
    events, signals = make_reports(n_events, tag)
    if not with_signals:
        signals = []
    db_name, db_url = await create_database(admin_url, "nae_bench_")
    # batch_count is rows per transaction; a read takes entries, so scale it by the entry size
    ledger = Ledger(storage, redis_url, db_url, LedgerConfig(batch_count=max(1, batch_count // per_entry), block_ms=10))
    try:
        if per_entry > 1:  # as the engine and validator write them: one entry per wake-up
            from node.streams import pack_batch

            ev_entries = [pack_batch(events[i : i + per_entry]) for i in range(0, len(events), per_entry)]
            sig_entries = [pack_batch(signals[i : i + per_entry]) for i in range(0, len(signals), per_entry)]
            await append(redis_url, storage.events_stream, b"E", ev_entries)
            await append(redis_url, storage.signals_stream, b"A", sig_entries)
        else:
            ev_entries, sig_entries = events, signals
            await append(redis_url, storage.events_stream, b"e", events)
            await append(redis_url, storage.signals_stream, b"a", signals)
        await ledger.start()  # migrations, staging tables, groups: outside the timed part
        total = len(ev_entries) + len(sig_entries)
        t0 = time.perf_counter_ns()
        done = 0
        deadline = time.monotonic() + 60.0 + total / 5_000.0  # bounded: a stuck drain fails the run
        while done < total:
            done += await ledger.step()
            if time.monotonic() > deadline:
                raise RuntimeError("ledger drained " + str(done) + " of " + str(total) + " entries in time")
        elapsed_s = (time.perf_counter_ns() - t0) / 1e9
        stats = to_plain(ledger.stats())  # the dict the node's stats carry
        conn = await asyncpg.connect(db_url)
        try:
            tables = ("order_events", "fills", "orders", "signals")
            counts = {t: await conn.fetchval("SELECT count(*) FROM " + t) for t in tables}
        finally:
            await conn.close()
    finally:
        await ledger.close()
        client = aioredis.from_url(redis_url)
        await client.delete(storage.events_stream, storage.signals_stream, storage.monitoring_stream)
        await client.aclose()
        await drop_database(admin_url, db_name)
    return {
        "bench": "ledger",
        "events": len(events),
        "signals": len(signals),
        "batch_count": batch_count,
        "per_entry": per_entry,
        "elapsed_s": round(elapsed_s, 4),
        "events_per_s": round(len(events) / elapsed_s),
        "entries_per_s": round(total / elapsed_s),
        "rows_per_s": round((len(events) + len(signals)) / elapsed_s),
        "batches": stats["batches"],
        "commit_p50_ms": round(stats["commit_p50_us"] / 1000.0, 2),
        "commit_p99_ms": round(stats["commit_p99_us"] / 1000.0, 2),
        "rows": counts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ledger_report", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--batch-count", type=int, default=5_000)
    parser.add_argument("--per-entry", type=int, default=64,
                        help="reports per stream entry (64: as the engine writes under load; 1: one each)")
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL, else an embedded Redis")
    parser.add_argument("--database-url", default=None,
                        help="server to CREATE/DROP the bench database on (default: DATABASE_URL, else embedded)")
    parser.add_argument("--with-signals", action="store_true", help="also drain one accepted signal per order")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import os
    import tempfile

    redis_url = args.redis_url or os.environ.get("REDIS_URL")
    database_url = args.database_url or os.environ.get("DATABASE_URL")
    embedded = None
    if not (redis_url and database_url):
        from node.embedded import EmbeddedServices

        embedded = EmbeddedServices(tempfile.mkdtemp(prefix="nae-ledger-bench-"), redis_url, database_url)
        redis_url, database_url = embedded.start()
    try:
        report = asyncio.run(
            run_report(args.events, redis_url, database_url, args.batch_count, args.with_signals, args.per_entry)
        )
    finally:
        if embedded is not None:
            embedded.stop()
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>16}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
