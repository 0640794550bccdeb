"""The ledger's loop boundary logs an outage once per interval, with its traceback and without the
store's password, and keeps retrying."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets

from actors.ledger import Ledger, LedgerConfig
from node.config import StorageConfig

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PASSWORD = "ledger-pa55-" + secrets.token_hex(4)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_a_postgres_outage_is_logged_once_without_the_password():
    tag = "test:ledger-log:" + secrets.token_hex(4) + ":"
    storage = StorageConfig(signals_stream=tag + "s", events_stream=tag + "e", monitoring_stream=tag + "m")
    url = "postgresql://nae:" + PASSWORD + "@127.0.0.1:1/nae"  # nothing listens on port 1
    ledger = Ledger(storage, REDIS_URL, url, LedgerConfig(retry_backoff_ms=10, retry_backoff_max_ms=20))
    handler = Lines()
    log = logging.getLogger("nae.ledger")
    log.addHandler(handler)
    task = asyncio.create_task(ledger.run())
    try:
        for _ in range(600):
            if ledger.stats().errors >= 5:
                break
            await asyncio.sleep(0.05)
    finally:
        await ledger.stop()
        await asyncio.wait_for(task, 30)
        log.removeHandler(handler)
    assert ledger.stats().errors >= 5
    assert len(handler.lines) == 1, handler.lines  # once per 10 s per exception type
    line = handler.lines[0]
    assert "Traceback" in line and "loop error" in line
    assert PASSWORD not in line
