"""The ledger: drains the Redis streams into PostgreSQL in batches, idempotently.

Contract:
- Reads `execution.signals`, `execution.events` and `monitoring.events` through the consumer group
  `ledger` (created with MKSTREAM at id 0, so nothing appended before the first start is missed).
- One XREADGROUP (COUNT ~5,000 per stream, BLOCK 50 ms) makes one batch; the batch is written in ONE
  transaction: COPY into temp staging tables, then INSERT ... SELECT ... ON CONFLICT DO NOTHING
  (orders: upsert of the latest state by stream position). Entries are XACKed only after COMMIT.
- A crash between COMMIT and XACK redelivers the entries; the unique keys make the second write a
  no-op (rows once). Entries that cannot be decoded go to `ledger_dead_letters` and are acked.
- A batch PostgreSQL refuses for its data (SQLSTATE class 22 data exception, e.g. a NUL in text;
  23 integrity; 54 program limit) is split in halves until the refused entries are alone; each is
  set aside in `ledger_dead_letters` with PostgreSQL's error, counted (`refused_rows`) and logged,
  and everything else is written: one bad row never stops the ledger.
- Recovery: at start, and after any Redis or PostgreSQL error, it first re-reads its own pending
  entries (XREADGROUP id 0) before new ones; every `claim_every_ms` it XAUTOCLAIMs entries pending
  on other consumers for more than `claim_min_idle_ms` (a dead ledger) and finishes them.
- `stats()` never blocks: counts, the last error, and p50/p99 batch commit latency.

The class is plain asyncio (Ray is applied elsewhere): `run()` until `stop()`; `main()` runs it as a
program.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
import traceback
from collections import deque
from typing import Any, Sequence

import asyncpg
import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from node.config import NonNegInt, PositiveInt, StorageConfig, load_config
from node.errors import ConfigError, StoreError
from node.histogram import LatencyHistogram
from node.logs import RepeatLimiter, logger, mask, passwords_in
from node.ledger_rows import (
    CONTROL_COLUMNS,
    DEAD_LETTER_COLUMNS,
    STRATEGY_STATE_COLUMNS,
    EVENT_COLUMNS,
    FAILOVER_COLUMNS,
    FILL_COLUMNS,
    MONITORING_COLUMNS,
    ORDER_COLUMNS,
    SIGNAL_COLUMNS,
    Batch,
    build_batch,
)
from node.ledger_rows import field_value
from node.migrations import apply_migrations
from node.stats import LedgerStats

_log = logging.getLogger("nae.ledger")
#: SQLSTATE classes that say "this data", not "this connection": the rows are set aside, never retried
_REFUSED_CLASSES = ("22", "23", "54")


def row_refused(exc: BaseException) -> bool:
    """PostgreSQL refused the data itself (retrying the same rows can never succeed)."""
    state = getattr(exc, "sqlstate", None)
    return isinstance(exc, asyncpg.PostgresError) and isinstance(state, str) and state[:2] in _REFUSED_CLASSES


def _printable(text: str) -> str:
    return text.replace("\x00", "\\0")[:500]


class LedgerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the ledger reads and writes. The consumer name is stable so a restarted ledger finds
    its own pending entries at once; other consumers' are claimed after `claim_min_idle_ms`."""

    group: str = "ledger"
    consumer: str = "ledger-1"
    batch_count: PositiveInt = 5_000
    block_ms: PositiveInt = 50
    #: new entries are read at most this often while reads come back short of `batch_count` (a full
    #: read is followed by the next at once): at a steady 1,000 signals/s a read took the 1-3 entries
    #: that came while the last batch committed, and each transaction's fixed cost (its COPYs and
    #: INSERTs) was paid per signal, in the ledger and in PostgreSQL, on the intake's two cores.
    #: 0: read again as soon as the last batch is in (the rows land sooner, in smaller transactions)
    linger_ms: NonNegInt = 100
    claim_min_idle_ms: PositiveInt = 5_000
    claim_every_ms: PositiveInt = 5_000
    retry_backoff_ms: PositiveInt = 200
    retry_backoff_max_ms: PositiveInt = 5_000
    apply_migrations: bool = True
    drain_monitoring: bool = True
    latency_window: PositiveInt = 4_096
    node_id: str = ""  # written on every fills and orders row: which node's ledger it is (sql/114)


# (staging table, target table, columns, conflict clause)
_APPEND_TABLES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("signals", "signals", SIGNAL_COLUMNS),
    ("fills", "fills", FILL_COLUMNS),
    ("events", "order_events", EVENT_COLUMNS),
    ("monitoring", "monitoring_events", MONITORING_COLUMNS),
    ("failovers", "failover_events", FAILOVER_COLUMNS),
    ("dead", "ledger_dead_letters", DEAD_LETTER_COLUMNS),
    ("controls", "control_events", CONTROL_COLUMNS),
)

_ORDER_UPSERT = (
    "INSERT INTO orders AS o (" + ", ".join(ORDER_COLUMNS) + ", node_id) "
    "SELECT " + ", ".join(ORDER_COLUMNS) + ", $1 FROM ledger_stage_orders "
    "ON CONFLICT (client_order_id) DO UPDATE SET "
    "signal_id = CASE WHEN o.signal_id = '' THEN EXCLUDED.signal_id ELSE o.signal_id END, "
    "request_id = CASE WHEN o.request_id = '' THEN EXCLUDED.request_id ELSE o.request_id END, "
    "strategy_id = CASE WHEN o.strategy_id = '' THEN EXCLUDED.strategy_id ELSE o.strategy_id END, "
    "symbol = CASE WHEN o.symbol = '' THEN EXCLUDED.symbol ELSE o.symbol END, "
    "venue_order_id = COALESCE(NULLIF(EXCLUDED.venue_order_id, ''), o.venue_order_id), "
    "state = EXCLUDED.state, "
    "cum_qty = GREATEST(o.cum_qty, EXCLUDED.cum_qty), "
    "leaves_qty = EXCLUDED.leaves_qty, "
    "avg_px = COALESCE(NULLIF(EXCLUDED.avg_px, 0), o.avg_px), "
    "reason = EXCLUDED.reason, "
    "last_event_ns = EXCLUDED.last_event_ns, "
    "stream_pos = EXCLUDED.stream_pos, "
    "stream_id = EXCLUDED.stream_id, "
    "updated_at = now() "
    "WHERE o.stream_pos < EXCLUDED.stream_pos"
)


_BREAKER_UPSERT = (
    "INSERT INTO circuit_breaker_state AS b (name, state, failures, opened_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state, "
    "failures = EXCLUDED.failures, opened_at = COALESCE(EXCLUDED.opened_at, CASE WHEN EXCLUDED.state = 'CLOSED' "
    "THEN NULL ELSE b.opened_at END), updated_at = EXCLUDED.updated_at WHERE b.updated_at <= EXCLUDED.updated_at"
)


_STRATEGY_STATE_UPSERT = (
    "INSERT INTO strategy_state AS s (" + ", ".join(STRATEGY_STATE_COLUMNS) + ") "
    "VALUES (" + ", ".join("$" + str(k + 1) for k in range(len(STRATEGY_STATE_COLUMNS))) + ") "
    "ON CONFLICT (strategy_id) DO UPDATE SET paused = EXCLUDED.paused, killed = EXCLUDED.killed, "
    "mode = EXCLUDED.mode, reason = EXCLUDED.reason, updated_at = EXCLUDED.updated_at, "
    "stream_pos = EXCLUDED.stream_pos, stream_id = EXCLUDED.stream_id WHERE s.stream_pos < EXCLUDED.stream_pos"
)


def _stage_ddl() -> list[str]:
    ddl = []
    for stage, table, _ in (*_APPEND_TABLES, ("orders", "orders", ORDER_COLUMNS)):
        ddl.append(
            "CREATE TEMP TABLE IF NOT EXISTS ledger_stage_" + stage + " (LIKE " + table + " INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        )
    return ddl


#: tables whose rows carry the writing node's id (`$1` of their insert)
_NODE_TABLES = frozenset({"fills"})


def _insert_sql(stage: str, table: str, columns: Sequence[str]) -> str:
    cols = ", ".join(columns)
    node = table in _NODE_TABLES
    return (
        "INSERT INTO " + table + " (" + cols + (", node_id" if node else "") + ") SELECT " + cols
        + (", $1" if node else "") + " FROM ledger_stage_" + stage + " ON CONFLICT DO NOTHING"
    )


_INSERTS = {stage: _insert_sql(stage, table, cols) for stage, table, cols in _APPEND_TABLES}


class LedgerWriter:
    """Writes `Batch`es to PostgreSQL over one connection, one transaction per batch."""

    def __init__(self, conn: asyncpg.Connection, node_id: str = "") -> None:
        self.conn = conn
        self.node_id = node_id

    @classmethod
    async def connect(cls, database_url: str, timeout_s: float = 5.0, node_id: str = "") -> "LedgerWriter":
        conn = await asyncpg.connect(database_url, timeout=timeout_s)
        for ddl in _stage_ddl():
            await conn.execute(ddl)
        return cls(conn, node_id)

    async def write(self, batch: Batch) -> None:
        """COPY every non-empty row list into its staging table and merge it into the real table,
        all in one transaction. Raises asyncpg / OS errors as they come (the caller retries)."""
        conn = self.conn
        async with conn.transaction():
            for stage, table, cols in _APPEND_TABLES:
                rows = getattr(batch, stage)
                if rows:
                    await conn.copy_records_to_table("ledger_stage_" + stage, records=rows, columns=cols)
                    if table in _NODE_TABLES:
                        await conn.execute(_INSERTS[stage], self.node_id)
                    else:
                        await conn.execute(_INSERTS[stage])
            if batch.orders:
                await conn.copy_records_to_table("ledger_stage_orders", records=batch.orders, columns=ORDER_COLUMNS)
                await conn.execute(_ORDER_UPSERT, self.node_id)
            if batch.breakers:
                await conn.executemany(_BREAKER_UPSERT, list(batch.breakers.values()))
            if batch.strategy_states:
                await conn.executemany(_STRATEGY_STATE_UPSERT, list(batch.strategy_states.values()))

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.conn.close(), 2.0)
        except Exception:  # a broken connection fails in many ways; terminate() always works
            self.conn.terminate()


class Ledger:
    """Drains the execution and monitoring streams into PostgreSQL (see the module docstring)."""

    def __init__(
        self, storage_cfg: StorageConfig, redis_url: str, database_url: str, cfg: LedgerConfig | None = None
    ) -> None:
        self.storage = storage_cfg
        self.redis_url = redis_url
        self.database_url = database_url
        self.cfg = cfg if cfg is not None else LedgerConfig()
        streams = [storage_cfg.signals_stream, storage_cfg.events_stream, storage_cfg.controls_stream]
        if self.cfg.drain_monitoring:
            streams.append(storage_cfg.monitoring_stream)
        self.streams: tuple[str, ...] = tuple(streams)
        self._redis: aioredis.Redis | None = None
        self._writer: LedgerWriter | None = None
        self._stopping = asyncio.Event()
        self._backlog = True  # re-read our own pending entries before new ones
        self._next_claim = 0.0
        self._latencies_ns: deque[int] = deque(maxlen=self.cfg.latency_window)
        self._commit_hist = LatencyHistogram()  # node.metrics: nae_ledger_commit_seconds
        self._counts = {
            "signals": 0, "events": 0, "monitoring": 0, "dead_letters": 0, "entries": 0, "batches": 0,
            "claimed": 0, "errors": 0, "refused_rows": 0,
        }  # fmt: skip
        self._next_refusal_log = 0.0
        self._last_error = ""
        self._error_lines = RepeatLimiter(10.0)
        self._running = False
        self._prefetch: asyncio.Future[Batch | None] | None = None
        self._last_read = 0.0  # when the last read of new entries was sent (time.monotonic)
        self._last_full = False  # it came back with `batch_count` entries of some stream: more are waiting

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect, apply migrations (if configured), create the consumer groups. Idempotent."""
        if self._redis is None:
            self._redis = aioredis.from_url(self.redis_url, socket_connect_timeout=2.0)
            # keep XREADGROUP replies raw ([[stream, [[id, [field, value]], ...]], ...]): building a
            # dict per entry costs more than the rows; node.ledger_rows reads either form
            self._redis.set_response_callback("XREADGROUP", _raw_reply)
        if self._writer is None:
            if self.cfg.apply_migrations:
                await apply_migrations(self.database_url)
            self._writer = await LedgerWriter.connect(self.database_url, node_id=self.cfg.node_id)
        for stream in self.streams:
            try:
                await self._redis.xgroup_create(stream, self.cfg.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._backlog = True
        self._next_claim = 0.0

    async def run(self) -> None:
        """Drain until `stop()`. Errors at the loop boundary are counted, connections re-opened
        with backoff, and the ledger's own pending entries re-read first."""
        self._stopping.clear()
        self._running = True
        backoff_ms = self.cfg.retry_backoff_ms
        try:
            while not self._stopping.is_set():
                try:
                    await self.start()
                    while not self._stopping.is_set():
                        await self.step()
                        backoff_ms = self.cfg.retry_backoff_ms
                    await self._settle_prefetch()
                except Exception as exc:  # loop boundary: count, reconnect, carry on (asyncpg also
                    # raises InternalClientError on a connection the server terminated)
                    self._counts["errors"] += 1
                    self._last_error = mask(type(exc).__name__ + ": " + str(exc)[:300])
                    self._log_error(exc)
                    await self._drop_connections()
                    try:
                        await asyncio.wait_for(self._stopping.wait(), backoff_ms / 1000.0)
                    except asyncio.TimeoutError:
                        pass
                    backoff_ms = min(backoff_ms * 2, self.cfg.retry_backoff_max_ms)
        finally:
            self._running = False
            await self._drop_connections()

    def note_start_failure(self, exc: BaseException) -> None:
        """`start()` failed before `run()` (PostgreSQL down at start): counted, shown in stats."""
        self._counts["errors"] += 1
        self._last_error = type(exc).__name__ + ": " + str(exc)[:300]

    def _log_error(self, exc: Exception) -> None:
        """Once per 10 s per exception type, with its traceback; the store URLs' passwords masked
        here (this process may have no configured handler: the text itself must be clean)."""
        suppressed = self._error_lines.allow(type(exc))
        if suppressed is None:
            return
        text = mask("".join(traceback.format_exception(exc)), passwords_in(self.redis_url, self.database_url))
        logger("ledger").error("loop error (%d so far, %d like it not logged), retrying: %s",
                               self._counts["errors"], suppressed, text)

    async def stop(self) -> None:
        """Ask `run()` to finish after the batch in hand (committed and acked, or left pending)."""
        self._stopping.set()

    async def close(self) -> None:
        """Finish a read started ahead, then close the connections (for callers that used
        `start()`/`step()` without `run()`)."""
        try:
            await self._settle_prefetch()
        finally:
            await self._drop_connections()

    # ------------------------------------------------------------ one step

    async def step(self) -> int:
        """Claim if due, take one batch (own pending first), write it, ack it. Returns the number
        of stream entries finished (0 when there was nothing to read).

        When reading new entries, the next XREADGROUP (and its decoding) runs while this batch's
        transaction is in PostgreSQL; it is never started while re-reading pending entries, which
        would fetch the unacked batch again.
        """
        settled = 0
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self.cfg.claim_every_ms / 1000.0
            settled = await self._settle_prefetch()
            await self.claim_stale()
        if self._prefetch is not None:
            task, self._prefetch = self._prefetch, None
            batch = await task
        else:
            batch = await self._read_batch()
        if batch is None:
            return settled
        if not self._backlog and not self._stopping.is_set():
            self._prefetch = asyncio.ensure_future(self._read_batch())
        await self._commit(batch)
        return settled + batch.entry_count

    async def _read_batch(self) -> Batch | None:
        reply = await self.read()
        if not reply:
            return None
        return build_batch(
            reply, self.storage.signals_stream, self.storage.events_stream, self.storage.monitoring_stream,
            self.storage.controls_stream,
        )

    async def _settle_prefetch(self) -> int:
        """Finish a read started ahead: write and ack what it got (on error its entries stay
        pending on this consumer and are re-read from the backlog). Returns entries finished."""
        task, self._prefetch = self._prefetch, None
        if task is None:
            return 0
        batch = await task
        if batch is None:
            return 0
        await self._commit(batch)
        return batch.entry_count

    async def _cancel_prefetch(self) -> None:
        task, self._prefetch = self._prefetch, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):  # its entries stay pending; the backlog re-reads them
            pass
        self._backlog = True

    async def read(self) -> list:
        """One XREADGROUP over all streams: this consumer's pending entries (id 0) while in
        backlog, else new ones (id >, BLOCK `block_ms`); an empty backlog read ends the backlog and
        reads new entries at once. Returns [(stream, entries), ...] with empty streams left out."""
        if self._backlog:
            got = await self._xreadgroup("0", None)
            if got:
                return got
            self._backlog = False
        await self._linger()
        self._last_read = time.monotonic()
        got = await self._xreadgroup(">", self.cfg.block_ms)
        self._last_full = any(len(entries) >= self.cfg.batch_count for _, entries in got)
        return got

    async def _linger(self) -> None:
        """Let new entries gather (`linger_ms` since the last read), unless that read was full or the
        ledger is stopping."""
        if self._last_full or not self.cfg.linger_ms:
            return
        wait = self._last_read + self.cfg.linger_ms / 1000.0 - time.monotonic()
        if wait <= 0 or self._stopping.is_set():
            return
        try:
            await asyncio.wait_for(self._stopping.wait(), wait)
        except asyncio.TimeoutError:
            pass

    async def _xreadgroup(self, ids: str, block: int | None) -> list:
        assert self._redis is not None
        reply = await self._redis.xreadgroup(
            self.cfg.group, self.cfg.consumer, {s: ids for s in self.streams}, count=self.cfg.batch_count, block=block
        )
        if not reply:
            return []
        items = reply.items() if isinstance(reply, dict) else reply  # RESP3 map or RESP2 list
        return [(name, entries) for name, entries in items if entries]

    async def write(self, batch: Batch) -> None:
        """Write one batch in one transaction and record its commit latency."""
        assert self._writer is not None
        t0 = time.perf_counter_ns()
        await self._writer.write(batch)
        took = time.perf_counter_ns() - t0
        self._latencies_ns.append(took)
        self._commit_hist.observe_ns(took)
        c = self._counts
        c["signals"] += len(batch.signals)
        c["events"] += len(batch.events)
        c["monitoring"] += len(batch.monitoring)
        c["dead_letters"] += len(batch.dead)
        c["batches"] += 1

    async def _commit(self, batch: Batch) -> None:
        """Write and ack one batch; rows PostgreSQL refuses are isolated and set aside first."""
        try:
            await self.write(batch)
        except Exception as exc:
            if not row_refused(exc):
                raise
            await self._isolate(batch)
        await self.ack(batch)

    async def _isolate(self, batch: Batch) -> None:
        """Re-read the batch's entries (XRANGE: they are still pending) and write them in halves,
        down to single entries; a single entry still refused becomes a dead letter."""
        assert self._redis is not None
        entries: list[tuple[str, bytes, Any]] = []
        for stream, ids in batch.acks.items():
            for entry_id in ids:
                got = await self._redis.xrange(stream, entry_id, entry_id)
                if got:
                    entries.append((stream, entry_id, got[0][1]))
        await self._write_halves(entries)

    async def _write_halves(self, entries: list[tuple[str, bytes, Any]]) -> None:
        if not entries:
            return
        reply: list[tuple[str, list]] = []
        for stream, entry_id, fields in entries:
            if not reply or reply[-1][0] != stream:
                reply.append((stream, []))
            reply[-1][1].append((entry_id, fields))
        part = build_batch(reply, self.storage.signals_stream, self.storage.events_stream, self.storage.monitoring_stream)
        try:
            await self.write(part)
            return
        except Exception as exc:
            if not row_refused(exc):
                raise
            if len(entries) == 1:
                await self._dead_letter(entries[0], exc)
                return
        mid = len(entries) // 2
        await self._write_halves(entries[:mid])
        await self._write_halves(entries[mid:])

    async def _dead_letter(self, entry: tuple[str, bytes, Any], exc: BaseException) -> None:
        stream, entry_id, fields = entry
        raw = _entry_bytes(fields)
        error = _printable("refused by PostgreSQL: " + type(exc).__name__ + " (" + str(getattr(exc, "sqlstate", ""))
                           + "): " + str(exc))
        dead = Batch()
        dead.dead.append((stream, entry_id.decode(), raw, error))
        await self.write(dead)
        self._counts["refused_rows"] += 1
        self._last_error = error[:300]
        now = time.monotonic()
        if now >= self._next_refusal_log:  # at most one line a second, never the row's content
            self._next_refusal_log = now + 1.0
            _log.error("ledger: entry %s of %s set aside in ledger_dead_letters: %s", entry_id.decode(), stream,
                       type(exc).__name__)

    async def ack(self, batch: Batch) -> None:
        """XACK every entry of a committed batch (one pipeline)."""
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        for stream, ids in batch.acks.items():
            if ids:
                pipe.xack(stream, self.cfg.group, *ids)
        await pipe.execute()
        self._counts["entries"] += batch.entry_count

    async def claim_stale(self) -> int:
        """XAUTOCLAIM entries idle on other consumers for `claim_min_idle_ms` into this consumer;
        they are then finished through the backlog read. Returns how many were claimed."""
        assert self._redis is not None
        claimed = 0
        for stream in self.streams:
            start: Any = "0-0"
            for _ in range(1_000):  # bounded: 1,000 pages of batch_count ids
                res = await self._redis.xautoclaim(
                    stream, self.cfg.group, self.cfg.consumer, self.cfg.claim_min_idle_ms,
                    start_id=start, count=self.cfg.batch_count,
                )  # fmt: skip (not JUSTID: redis-py then drops the cursor)
                start, ids = res[0], res[1]
                claimed += len(ids)
                if start in (b"0-0", "0-0"):
                    break
        if claimed:
            self._counts["claimed"] += claimed
            self._backlog = True
        return claimed

    async def drain(self, idle_reads: int = 2, max_steps: int = 100_000) -> int:
        """Run steps until `idle_reads` reads in a row find nothing (for tests and tools); returns
        entries finished. Needs `start()` first."""
        done = idle = steps = 0
        while idle < idle_reads and steps < max_steps:
            n = await self.step()
            done += n
            idle = idle + 1 if n == 0 else 0
            steps += 1
        return done

    # ------------------------------------------------------------ observation

    def stats(self) -> LedgerStats:
        """Counters, running flag, last error, and batch commit latency p50/p99 in microseconds."""
        lat = sorted(self._latencies_ns)
        degraded = None
        if self._writer is None and self._last_error:  # not connected to PostgreSQL (yet): degraded
            degraded = "ledger not writing: " + self._last_error
        return LedgerStats(
            **self._counts, running=self._running, last_error=self._last_error, degraded=degraded,
            commit_p50_us=lat[len(lat) // 2] / 1000.0 if lat else 0.0,
            commit_p99_us=lat[min(len(lat) - 1, (len(lat) * 99) // 100)] / 1000.0 if lat else 0.0,
            commit_hist=self._commit_hist.snapshot(),
        )

    async def _drop_connections(self) -> None:
        await self._cancel_prefetch()
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.close()
        client, self._redis = self._redis, None
        if client is not None:
            try:
                await client.aclose()
            except (RedisError, OSError):
                pass


def _entry_bytes(fields: Any) -> bytes | None:
    """The stored bytes of a stream entry (its first known field, else all of it as msgpack)."""
    for name in (b"A", b"a", b"E", b"e", b"m"):
        value = field_value(fields, name)
        if value is not None:
            return bytes(value)
    try:
        return msgspec.msgpack.encode(fields)
    except TypeError:
        return None


def _raw_reply(response: Any, **_options: Any) -> Any:
    return response


# ---------------------------------------------------------------- queries


async def ledger_fills(database_url: str) -> list[dict[str, Any]]:
    """Every fill in the ledger, ordered by exec_id: exec_id, client_order_id, venue_order_id,
    strategy_id, symbol, side, qty, px, ts_ns (what reconciliation compares with the broker)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT exec_id, client_order_id, venue_order_id, strategy_id, symbol, side, qty, px, ts_ns "
            "FROM fills ORDER BY exec_id"
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


# ---------------------------------------------------------------- program


async def main(argv: Sequence[str] | None = None) -> int:
    """`python -m actors.ledger [--config node.toml] [--redis-url URL] [--database-url URL]`:
    drain until SIGINT / SIGTERM. URLs default to the config (REDIS_URL / DATABASE_URL)."""
    parser = argparse.ArgumentParser(prog="ledger", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config")
    parser.add_argument("--redis-url")
    parser.add_argument("--database-url")
    parser.add_argument("--consumer", default=LedgerConfig().consumer)
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print("ledger: " + str(exc), flush=True)
        return 2
    redis_url = args.redis_url or cfg.storage.redis_url
    database_url = args.database_url or cfg.storage.database_url
    if not redis_url or not database_url:
        print("ledger: need a Redis URL and a database URL (--redis-url/--database-url or REDIS_URL/DATABASE_URL)")
        return 2
    from node.preflight import check_stores

    try:
        await check_stores(redis_url, database_url)
    except StoreError as exc:
        print("ledger: " + str(exc), flush=True)
        return 1
    ledger = Ledger(cfg.storage, redis_url, database_url, LedgerConfig(consumer=args.consumer, node_id=cfg.node_id))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(ledger.stop()))
    try:
        await ledger.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
