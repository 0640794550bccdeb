"""pytest-benchmark mirror of the ledger bench (quick; the program is `python -m bench.ledger_report`).

    .venv/bin/pytest bench/bench_ledger.py -q

- `test_build_batch`: decode one 5,000-entry XREADGROUP reply of ExecutionReports into row tuples
  (the ledger's Python cost per batch, no I/O).
- `test_drain`: one drain of 15,000 events from the real Redis into a fresh PostgreSQL database
  (REDIS_URL / DATABASE_URL when set, else the machine's at 127.0.0.1); checks the row counts.
"""

from __future__ import annotations

import asyncio
import os

from bench.ledger_report import ADMIN_URL, REDIS_URL, make_reports, run_report
from node.ledger_rows import build_batch

EVENTS = "execution.events"


def test_build_batch(benchmark) -> None:
    events, _ = make_reports(5_000, "bb")
    reply = [[EVENTS.encode(), [[b"1700000000000-" + str(i).encode(), [b"e", p]] for i, p in enumerate(events)]]]
    batch = benchmark(build_batch, reply, "execution.signals", EVENTS, "monitoring.events")
    assert len(batch.events) == 5_000 and len(batch.fills) == 3_333 and batch.entry_count == 5_000


def test_drain(benchmark) -> None:
    redis_url = os.environ.get("REDIS_URL") or REDIS_URL
    admin_url = os.environ.get("DATABASE_URL") or ADMIN_URL
    report = benchmark.pedantic(
        lambda: asyncio.run(run_report(15_000, redis_url, admin_url)), rounds=1, iterations=1
    )
    benchmark.extra_info.update({k: report[k] for k in ("events_per_s", "commit_p50_ms", "commit_p99_ms")})
    assert report["rows"] == {"order_events": 15_000, "fills": 10_000, "orders": 5_000, "signals": 0}
