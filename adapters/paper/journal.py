"""The paper account's book log in the node's Redis, so the account outlives the process.

One stream per paper broker, `<node_id>.paper.<broker name>` (beside the node's other keys, in the
same durable Redis as its signal and event logs), one entry per venue wake-up that hands reports
out (field `j`: the msgpack array of `adapters.paper.records`). The venue writes before it hands
out (`PaperVenue.advance`), so the log holds everything any engine, the ledger or Optimus could
have seen. `open_paper_venue` reads it back at the adapter's start and, when it has grown past
`COMPACT_AFTER` entries, rewrites it as the account's compact form in one transaction.

The writes run on the broker adapter's loop thread: one XADD per wake-up that hands reports out,
whatever their number, written on the log's own connection.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from adapters.paper.records import Record, decode_records, encode_records
from adapters.paper.venue import PaperVenue
from node.config import PaperVenueConfig
from node.errors import StoreError
from node.instruments import Multipliers

log = logging.getLogger("nae.broker.paper")

#: the log's field in each stream entry
FIELD = b"j"
#: entries read per XRANGE page at start
PAGE = 1_000
#: a log longer than this many entries is rewritten compact at start
COMPACT_AFTER = 1_000
#: records per entry of a compacted log
COMPACT_CHUNK = 10_000


def log_key(node_id: str, broker_name: str) -> str:
    return node_id + ".paper." + broker_name


class RedisBookLog:
    """A `BookLog` on a Redis stream (see the module docstring)."""

    def __init__(self, redis_url: str, key: str, timeout_s: float = 2.0) -> None:
        self.key = key
        self._r = redis.Redis.from_url(redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        self._conn: Any = None  # the appends' own connection (a redis-py Connection)

    def append(self, records: list[Record]) -> None:
        """One XADD written on the log's own connection and its reply read (redis-py's command layer,
        its pool and retry wrapper were a fifth of the broker adapter's loop under a paced run). Any
        error drops that connection (a reply left unread is never taken for the next append's) and
        raises: the venue hands nothing out and writes the batch again later."""
        conn = self._conn
        try:
            if conn is None:
                conn = self._conn = self._r.connection_pool.make_connection()
            conn.send_command("XADD", self.key, "*", FIELD, encode_records(records))
            conn.read_response()
        except (redis.RedisError, OSError):
            if conn is not None:
                conn.disconnect()
            raise

    def load(self) -> tuple[list[Record], int]:
        """Every record, oldest first, and the number of entries they came in. A malformed entry is
        a StoreError naming it: an account that cannot be read back does not start empty."""
        records: list[Record] = []
        entries = 0
        start = "-"
        while True:
            page = self._r.xrange(self.key, min=start, max="+", count=PAGE)
            for entry_id, fields in page:
                try:
                    records.extend(decode_records(fields[FIELD]))
                except Exception as exc:  # noqa: BLE001 - named and refused, never skipped
                    raise StoreError("paper book log " + self.key + ": entry " + entry_id.decode()
                                     + " unreadable: " + type(exc).__name__) from exc
            entries += len(page)
            if len(page) < PAGE:
                return records, entries
            start = "(" + page[-1][0].decode()

    def rewrite(self, records: list[Record]) -> None:
        """Replace the whole log by `records` atomically (MULTI/EXEC)."""
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(self.key)
        for i in range(0, len(records), COMPACT_CHUNK):
            pipe.xadd(self.key, {FIELD: encode_records(records[i : i + COMPACT_CHUNK])})
        pipe.execute()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()
        self._r.close()


def open_paper_venue(cfg: PaperVenueConfig, redis_url: str, key: str, now_ns: int | None = None,
                     compact_after: int = COMPACT_AFTER, multipliers: Multipliers | None = None,
                     exec_prefix: str = "") -> PaperVenue:
    """A paper venue that keeps its account in Redis under `key`: restored from its log, the log
    compacted when long. Redis unreachable or the log unreadable: StoreError (the adapter does not
    start with an empty account while the ledger remembers one)."""
    book_log = RedisBookLog(redis_url, key)
    venue = PaperVenue(cfg, book_log, multipliers, exec_prefix)
    try:
        t0 = time.perf_counter()
        records, entries = book_log.load()
        orders = venue.restore(records, time.time_ns() if now_ns is None else now_ns)
        if entries > compact_after:
            book_log.rewrite(venue.compacted())
    except redis.RedisError as exc:
        raise StoreError("paper book log " + key + ": " + type(exc).__name__ + ": " + str(exc)) from exc
    if orders:
        log.info("paper account %s restored: %d orders, %d fills, %d positions from %d entries in %.0f ms",
                 key, orders, len(venue.fills()), len(venue.positions()), entries, (time.perf_counter() - t0) * 1e3)
    return venue
