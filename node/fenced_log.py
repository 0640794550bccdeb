"""The validator's append to the signal log, with an outcome never left unknown for good.

A signal is ACKed after its batch is in `execution.signals`. An XADD that timed out on the client
(Redis frozen, a network stall) may still be applied later, when Redis reads its socket again, so
"the append failed" is not "nothing was appended". This module makes the outcome decidable:

- Every append runs as one Lua script that first checks a *fence* key against this writer's
  generation: `GET fence == generation`, else it refuses (`FENCED`) and appends nothing.
- `settle()` moves the fence to a new generation (so an append still in flight can no longer land)
  and then, in the same pipeline on the same connection, reads the log after the last entry this
  writer knows. A batch is in the log (its exact packed bytes, in one entry) or, from then on, never
  will be. Redis runs commands one at a time, so nothing can slip in between.

The append goes out on a connection of its own (`make_connection`: one EVALSHA written, one reply
read), not through redis-py's command layer: `Script.__call__` -> `execute_command` -> the pool and
the retry wrapper cost ~130 us of CPU per append against ~25 us this way (bench.append_report), on
the intake's one thread. A script Redis no longer knows (NOSCRIPT: not run, so nothing appended) is
loaded again and the append sent once more. `send` and `receive` split one append in two, so the
caller can work while Redis runs it (the validator's group commit); one append is in flight at a time.

Outcomes: an append that returned is ACCEPTED; one Redis answered with an error (`FENCED`, OOM,
...) is definitely not in the log (`AppendRefused`); one that timed out or lost its connection is
`AppendOutcomeUnknown` until `settle()` says which. The writer's client never retries a command
itself (a blind retry could log a batch twice).
"""

from __future__ import annotations

import secrets
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from node.errors import StoreError
from node.reasons import Reason

_APPEND = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('FENCED the append generation moved on')
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', ARGV[3], ARGV[4])
"""
_SETTLE_READ_MAX = 100_000  # entries read after the last known one (only in-doubt batches are there)


class AppendRefused(StoreError):
    """Redis answered the append with an error: nothing was appended."""

    reason = Reason.STORE_UNAVAILABLE


class AppendOutcomeUnknown(StoreError):
    """The append was sent and no answer came: it may or may not be in the log (`settle()` tells)."""

    reason = Reason.STORE_OUTCOME_UNKNOWN


def connect_writer(url: str, timeout_s: float = 2.0) -> redis.Redis:
    """A client that never re-sends a command on its own (its outcome would be doubled, not known)."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
    )


class FencedLog:
    """Appends packed batches to one stream under one field, fenced by `fence_key`."""

    def __init__(self, client: redis.Redis, stream: str, field: bytes, maxlen: int, fence_key: str) -> None:
        self._client = client
        self._stream = stream
        self._field = field
        self._maxlen = str(maxlen)
        self._fence_key = fence_key
        self._script = client.register_script(_APPEND)
        self._conn: Any = None  # the appends' own connection (a redis-py Connection)
        self._sent: bytes | None = None  # the batch whose append is on the wire, its answer not read yet
        self.generation = b""
        self.last_id = b"0"  # the newest entry this writer knows is in the log
        self.settled = 0  # settle() runs that got an answer

    def open(self) -> None:
        """Take the fence (a writer before this one can append no more) and learn the newest entry.
        Raises `StoreError`."""
        generation = secrets.token_hex(8).encode()
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.set(self._fence_key, generation)
            pipe.xrevrange(self._stream, max="+", min="-", count=1)
            _, newest = pipe.execute()
        except redis.RedisError as exc:
            raise StoreError("redis fence of " + self._stream + " failed: " + type(exc).__name__) from exc
        self.generation = generation
        if newest:
            self.last_id = newest[0][0]

    def append(self, packed: bytes) -> bytes:
        """The entry id. Raises `AppendRefused` (not appended) or `AppendOutcomeUnknown`."""
        self.send(packed)
        return self.receive()

    def send(self, packed: bytes) -> None:
        """Write the append and return at once; `receive` reads its answer (one append in flight at a
        time: the validator checks the next batch meanwhile). Raises `AppendOutcomeUnknown`."""
        self._sent = packed
        try:
            self._write(packed)
        except redis.RedisError as exc:
            self._sent = None
            self._drop()
            raise AppendOutcomeUnknown("redis append to " + self._stream + " not sent: " + type(exc).__name__) from exc

    def receive(self) -> bytes:
        """The entry id of the append `send` wrote. Raises `AppendRefused` or `AppendOutcomeUnknown`."""
        packed, self._sent = self._sent, None
        if packed is None:
            raise AppendOutcomeUnknown("no append of " + self._stream + " is in flight")
        try:
            try:
                entry_id = self._conn.read_response()
            except redis.exceptions.NoScriptError:  # Redis lost its scripts (restart, SCRIPT FLUSH): not run
                self._client.script_load(_APPEND)
                self._write(packed)
                entry_id = self._conn.read_response()
        except redis.ResponseError as exc:
            raise AppendRefused("redis refused the append to " + self._stream + ": " + str(exc)[:120]) from exc
        except redis.RedisError as exc:
            self._drop()  # its reply may still come: the next append starts on a fresh socket
            raise AppendOutcomeUnknown(
                "redis append to " + self._stream + " unanswered: " + type(exc).__name__
            ) from exc
        self.last_id = entry_id
        return entry_id

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()

    def _write(self, packed: bytes) -> None:
        conn = self._conn
        if conn is None:
            conn = self._conn = self._client.connection_pool.make_connection()
        conn.send_command("EVALSHA", self._script.sha, 2, self._stream, self._fence_key, self.generation,
                          self._maxlen, self._field, packed)

    def settle(self, batches: list[bytes]) -> list[bytes | None]:
        """For each packed batch whose append had no answer: its entry id, or None if it is not in the
        log and never will be. Raises `StoreError` while Redis does not answer (still unknown)."""
        generation = secrets.token_hex(8).encode()
        start = "-" if self.last_id in (b"0", b"0-0") else "(" + self.last_id.decode()
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.set(self._fence_key, generation)
            pipe.xrange(self._stream, min=start, max="+", count=_SETTLE_READ_MAX)
            _, entries = pipe.execute()
        except redis.RedisError as exc:
            raise StoreError("redis settle of " + self._stream + " failed: " + type(exc).__name__) from exc
        self.generation = generation
        self.settled += 1
        where: dict[bytes, bytes] = {}
        for entry_id, fields in entries:
            packed = fields.get(self._field)
            if packed is not None:
                where.setdefault(packed, entry_id)
        if entries:
            self.last_id = entries[-1][0]
        return [where.get(b) for b in batches]
