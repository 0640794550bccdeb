"""Execution reports replayed from the node's durable events stream, from a sequence number, so a
client that was away misses no fill.

The node appends every report to the Redis stream `execution.events` (one entry per engine wake-up,
holding that wake-up's reports in order). A report's sequence number is `"<entry id>/<index>"`, ordered
like the stream; entry ids start with the append time in milliseconds, so "everything since 09:30:00"
is `since_ms(...)`. Live reports over ZeroMQ carry no sequence number: a client that reconnects replays
from a time before it lost the feed and drops what it already had (`ReportKey`: a fill is known by its
`exec_id`, any other report by its order, kind and cumulative quantity).

    log = ReportLog("redis://...", "execution.events")
    for seq, report in log.read(since=last_seq):      # what happened while away
        handle(report); last_seq = seq
    for seq, report in log.follow(since=last_seq):    # then block for new ones
        ...
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import msgspec
import redis

from nae_client.errors import StoreError
from nae_client.wire import ExecutionReport, report_batch_decoder

EVENTS_FIELD = b"E"
START = "0-0/-1"  # before everything


class Sequenced(NamedTuple):
    seq: str
    report: ExecutionReport


def since_ms(epoch_ms: int) -> str:
    """The sequence number just before anything appended at or after `epoch_ms`."""
    return str(int(epoch_ms)) + "-0/-1"


def _split(seq: str) -> tuple[str, int]:
    entry, sep, index = seq.partition("/")
    if not sep or "-" not in entry:
        raise ValueError("a sequence number looks like '<ms>-<n>/<index>', got " + repr(seq))
    return entry, int(index)


def report_key(report: ExecutionReport) -> tuple:
    """What identifies one report across the live feed and a replay (for dropping duplicates)."""
    if report.exec_id:
        return ("fill", report.exec_id)
    return (report.kind, report.client_order_id, report.cum_qty, report.reason)


class ReportLog:
    def __init__(self, redis_url: str, stream: str = "execution.events", timeout_s: float = 5.0) -> None:
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=timeout_s + 1, socket_connect_timeout=2)
        self.stream = stream
        self.undecodable = 0  # entries skipped because they were not a batch of reports

    def close(self) -> None:
        self._redis.close()

    def read(self, since: str = START, count: int = 1_000) -> list[Sequenced]:
        """Reports after `since` (exclusive), oldest first, from at most `count` stream entries."""
        entry, index = _split(since)
        try:
            rows = self._redis.xrange(self.stream, min=entry, max="+", count=count)
        except redis.RedisError as exc:
            raise StoreError("reading " + self.stream + " failed: " + type(exc).__name__) from exc
        return self._unpack(rows, entry, index)

    def follow(self, since: str = START, block_ms: int = 1_000) -> Iterator[Sequenced]:
        """Every report after `since`, then new ones as they are appended (blocks; stop by breaking)."""
        last = since
        while True:
            batch = self.read(last)
            for item in batch:
                last = item.seq
                yield item
            if batch:
                continue
            entry, _ = _split(last)
            try:
                self._redis.xread({self.stream: entry}, count=1, block=block_ms)
            except redis.RedisError as exc:
                raise StoreError("waiting on " + self.stream + " failed: " + type(exc).__name__) from exc

    def _unpack(self, rows: list, after_entry: str, after_index: int) -> list[Sequenced]:
        out: list[Sequenced] = []
        for raw_id, fields in rows:
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            try:
                reports = report_batch_decoder.decode(fields[EVENTS_FIELD])
            except (KeyError, msgspec.DecodeError):
                self.undecodable += 1
                continue
            for i, report in enumerate(reports):
                if entry_id == after_entry and i <= after_index:
                    continue
                out.append(Sequenced(entry_id + "/" + str(i), report))
        return out
