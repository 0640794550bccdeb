"""Batched appends to the Redis Streams log (one pipeline, one round trip per wake-up).

Stream layout (fixed; the ledger and recovery read it). One entry per wake-up holds the whole batch
as one msgpack array: an XADD per item costs ~7 us of Python and Redis time, a batched one ~0.4 us
per item, and at 20,000 signals/s with ~3 reports each that difference is most of a core.
- `execution.signals`: field b"A" = msgpack array of `SignalAccepted` (the accepted signals of one
  validator wake-up, in order).
- `execution.events`: field b"E" = msgpack array of `ExecutionReport` (strategy/request/signal ids
  filled in), the reports of one engine wake-up, in order.
- `execution.intake`: field b"f" = a signed frame, b"r" = the client's reply stream, appended by a
  client whose ZeroMQ intake did not answer (the fallback path, `node.fallback`); the validator
  consumes it with the same checks.
- `monitoring.events`: field b"m" = JSON.
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis

from node.errors import StoreError
from node.messages import ExecutionReport, SignalAccepted

SIGNALS_FIELD = b"A"
_LAST_SEQ = 2**64 - 1  # the highest sequence part of a stream entry id
EVENTS_FIELD = b"E"

_Raw = msgspec.Raw
_encode = msgspec.msgpack.Encoder().encode
accepted_batch_decoder = msgspec.msgpack.Decoder(list[SignalAccepted])
report_batch_decoder = msgspec.msgpack.Decoder(list[ExecutionReport])


#: entries a backward read asks Redis for in one command (the forward reads' pages are 500 too).
#: Redis runs one command at a time: one XREVRANGE of 5,000 event batches (a promotion's or the
#: reconciler's look for fills logged already) held it 2.2 s on a loaded host, and every intake
#: append waiting behind it was refused STORE_UNAVAILABLE. Smaller pages hold it less and cost more
#: round trips, each slow on a starved host: not tuned further (README "Engines and failover")
READ_PAGE = 500


def pack_batch(payloads: list[bytes]) -> bytes:
    """Already-encoded messages -> one msgpack array, without decoding them again."""
    return _encode([_Raw(p) for p in payloads])


def entry_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id ("<ms>-<seq>") as a key that sorts as Redis orders entries."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def unpack_signals(fields: dict) -> list[SignalAccepted]:
    return accepted_batch_decoder.decode(fields[SIGNALS_FIELD])


def unpack_reports(fields: dict) -> list[ExecutionReport]:
    return report_batch_decoder.decode(fields[EVENTS_FIELD])


#: how far before a fill's own time its report may sit in the events stream: the clocks of the
#: broker and of the Redis host (the stream's ids) may differ by this much
LOGGED_MARGIN_MS = 60_000


def logged_since_ms(reports: list[ExecutionReport], margin_ms: int = LOGGED_MARGIN_MS) -> int:
    """The stream id (ms) from which the events stream may hold any of `reports` (by their times)."""
    return max(0, min(r.ts_ns for r in reports) // 1_000_000 - margin_ms)


def _before_ms(ms: int) -> str:
    """The id just before any entry of millisecond `ms` ("0": the start)."""
    return str(ms - 1) + "-" + str(_LAST_SEQ) if ms > 0 else "0"


def exec_ids_in(entries: list, wanted: set[str]) -> set[str]:
    """Which of the exec ids `wanted` the events-stream `entries` ((id, fields) pairs) hold."""
    found = set()
    for _, fields in entries:
        for rep in unpack_reports(fields):
            if rep.exec_id in wanted:
                found.add(rep.exec_id)
    return found


def connect_redis(url: str, timeout_s: float = 2.0) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


class StreamLog:
    """Appends batches to one stream under one field; `append` is all-or-nothing."""

    def __init__(self, client: redis.Redis, stream: str, field: bytes, maxlen: int) -> None:
        self._client = client
        self._stream = stream
        self._field = field
        self._maxlen = maxlen
        self._conn: Any = None  # append_packed's own connection (a redis-py Connection)

    @property
    def stream(self) -> str:
        return self._stream

    def append(self, payloads: list[bytes]) -> bytes | None:
        """XADD the encoded messages as one batch entry; returns its id. Raises `StoreError`."""
        if not payloads:
            return None
        return self.append_packed(pack_batch(payloads))

    def append_packed(
        self, packed: bytes | None, also: tuple[str, bytes] | None = None,
        hash_changes: tuple[str, dict[str, bytes], list[str]] | None = None, mark: tuple[str, bytes] | None = None,
    ) -> bytes | None:
        """XADD one already-packed batch (None: no entry); `also` and `mark` = (key, value) SETs and
        `hash_changes` = (key, fields to set, fields to delete) in the same round trip. The commands go out on the
        log's own connection, written at once, one reply read per command (redis-py's pipeline
        object, per call, cost the engine's loop ~4x the CPU: bench.append_report). Any error drops
        that connection (a reply left unread must never be taken for the next call's)."""
        commands: list[tuple] = []
        if packed is not None:
            commands.append(("XADD", self._stream, "MAXLEN", "~", self._maxlen, "*", self._field, packed))
        if hash_changes is not None:
            key, sets, dels = hash_changes
            if sets:
                commands.append(("HSET", key, *[x for kv in sets.items() for x in kv]))
            if dels:
                commands.append(("HDEL", key, *dels))
        for pair in (also, mark):
            if pair is not None:
                commands.append(("SET", pair[0], pair[1]))
        if not commands:
            return None
        conn = self._conn
        try:
            if conn is None:
                conn = self._conn = self._client.connection_pool.make_connection()
            conn.send_packed_command(conn.pack_commands(commands))
            replies = [conn.read_response() for _ in commands]
        except (redis.RedisError, OSError) as exc:
            if conn is not None:
                conn.disconnect()
            raise StoreError("redis append to " + self._stream + " failed: " + type(exc).__name__) from exc
        return replies[0] if packed is not None else None

    def add(self, stream: str, fields: dict, maxlen: int = 100_000) -> None:
        """One plain entry on another stream (monitoring), on this log's connection."""
        try:
            self._client.xadd(stream, fields, maxlen=maxlen, approximate=True)
        except redis.RedisError as exc:
            raise StoreError("redis append to " + stream + " failed: " + type(exc).__name__) from exc

    def set(self, key: str, value: bytes) -> None:
        try:
            self._client.set(key, value)
        except redis.RedisError as exc:
            raise StoreError("redis SET " + key + " failed: " + type(exc).__name__) from exc

    def get(self, key: str) -> bytes | None:
        try:
            return self._client.get(key)
        except redis.RedisError as exc:
            raise StoreError("redis GET " + key + " failed: " + type(exc).__name__) from exc

    def hgetall(self, key: str) -> dict:
        try:
            return self._client.hgetall(key)
        except redis.RedisError as exc:
            raise StoreError("redis HGETALL " + key + " failed: " + type(exc).__name__) from exc

    def newest(self, since_ms: int, count: int, page: int = READ_PAGE) -> list[tuple[bytes, dict]]:
        """Up to `count` entries newer than `since_ms`, newest first, `page` entries a command."""
        out: list[tuple[bytes, dict]] = []
        top = "+"
        try:
            while len(out) < count:
                want = min(page, count - len(out))
                got = self._client.xrevrange(self._stream, max=top, min=str(since_ms), count=want)
                out += got
                if len(got) < want:
                    break
                top = "(" + got[-1][0].decode()
        except redis.RedisError as exc:
            raise StoreError("redis read of " + self._stream + " failed: " + type(exc).__name__) from exc
        return out

    def exec_ids_since(self, since_ms: int, wanted: set[str], page: int = 500) -> set[str]:
        """Which of the exec ids `wanted` the (events) stream holds from `since_ms` to its end: read
        forward a page at a time, until all are found or the end. Raises `StoreError`."""
        return self._exec_ids_after(_before_ms(since_ms), wanted, page)

    def exec_ids_from(self, entry_id: str, wanted: set[str], page: int = 500) -> set[str]:
        """Which of the exec ids `wanted` the (events) stream holds from entry `entry_id` (itself
        included) to its end, as `exec_ids_since`. Raises `StoreError`."""
        ms, seq = entry_key(entry_id)
        return self._exec_ids_after(str(ms) + "-" + str(seq - 1) if seq else _before_ms(ms), wanted, page)

    def _exec_ids_after(self, position: bytes | str, wanted: set[str], page: int) -> set[str]:
        found: set[str] = set()
        while len(found) < len(wanted):
            batch = self.entries_after(position, page)
            if not batch:
                break
            found |= exec_ids_in(batch, wanted)
            position = batch[-1][0]
        return found

    def signals_between(self, after: str, before: str, page: int = 500) -> list[tuple[str, list[SignalAccepted]]]:
        """The (signals) stream's batches strictly between entries `after` and `before`, oldest first
        (an entry that does not decode is left to the ledger's dead letters). Raises `StoreError`."""
        out: list[tuple[str, list[SignalAccepted]]] = []
        end = entry_key(before)
        position: bytes | str = after
        while True:
            batch = self.entries_after(position, page)
            for entry_id, fields in batch:
                if entry_key(entry_id.decode()) >= end:
                    return out
                if SIGNALS_FIELD in fields:
                    try:
                        out.append((entry_id.decode(), unpack_signals(fields)))
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        pass
            if len(batch) < page:
                return out
            position = batch[-1][0]

    def tip(self) -> str:
        """The id of the stream's newest entry ("0": none). Raises `StoreError`."""
        try:
            newest = self._client.xrevrange(self._stream, max="+", min="-", count=1)
        except redis.RedisError as exc:
            raise StoreError("redis read of " + self._stream + " failed: " + type(exc).__name__) from exc
        return newest[0][0].decode() if newest else "0"

    def entries_after(self, entry_id: bytes | str, count: int = 1_000, through: str = "+") -> list[tuple[bytes, dict]]:
        """Entries strictly after `entry_id` ("0" = from the start) up to `through` (an entry id,
        "+" = the end), oldest first."""
        start = "(" + (entry_id.decode() if isinstance(entry_id, bytes) else entry_id)
        if start == "(0":
            start = "-"
        try:
            return self._client.xrange(self._stream, min=start, max=through, count=count)
        except redis.RedisError as exc:
            raise StoreError("redis read of " + self._stream + " failed: " + type(exc).__name__) from exc
