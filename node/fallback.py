"""The client's side of the fallback path: when the ZeroMQ intake does not answer in time, append
the signed signal to `execution.intake` and wait for the verdict on this client's reply stream.

The validator reads that stream with the same checks; `request_id` makes both paths idempotent, so
a signal that also reaches the intake over ZeroMQ later executes once, or never when its entry was
refused as late (that refusal is remembered like any other). The client also drops the ZeroMQ frame
it gave up on (it re-creates its socket), so a late copy is rare.
"""

from __future__ import annotations

import threading
import time
import uuid

import redis

from node.errors import StoreError, TransportError
from node.messages import Reply, intake_response_decoder
from node.streams import mask_url

FRAME_FIELD = b"f"
REPLY_FIELD = b"r"
MAX_AGE_FIELD = b"x"  # ms: the validator refuses the entry (STALE_TIMESTAMP) once it is older than this
DEFAULT_MAX_AGE_MS = 30_000
REPLY_TTL_S = 24 * 3600


def lateness(max_age: bytes, appended_ns: int, taken_ns: int) -> str:
    """Why an entry taken at `taken_ns` is past the maximum age its client gave (`max_age`, the
    MAX_AGE_FIELD of the entry, in ms), or "" when it is not (no or a malformed max age: not late)."""
    try:
        limit_ns = int(max_age) * 1_000_000
    except ValueError:
        return ""
    if limit_ns <= 0 or taken_ns - appended_ns <= limit_ns:
        return ""
    return ("fallback entry taken " + str((taken_ns - appended_ns) // 1_000_000) + " ms after its append, past its"
            " max age of " + str(limit_ns // 1_000_000) + " ms")


class FallbackChannel:
    """Thread-safe: several threads may wait for verdicts at once."""

    def __init__(self, redis_url: str, stream: str, client_name: str) -> None:
        self._url = redis_url
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
        self._stream = stream
        self.reply_stream = stream + ".replies." + client_name + "." + uuid.uuid4().hex[:8]
        self._lock = threading.Lock()
        self._cursor = "0"
        self._verdicts: dict[str, Reply] = {}
        self.queued = 0

    def submit(self, frame: bytes, max_age_ms: int = DEFAULT_MAX_AGE_MS) -> None:
        """Queue a signed frame; the node executes it only if it takes it within `max_age_ms` of
        this append (a validator down for longer answers REJECTED STALE_TIMESTAMP instead)."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.xadd(self._stream, {FRAME_FIELD: frame, REPLY_FIELD: self.reply_stream.encode(),
                                     MAX_AGE_FIELD: str(int(max_age_ms)).encode()})
            pipe.expire(self.reply_stream, REPLY_TTL_S)
            pipe.execute()
        except redis.RedisError as exc:
            raise StoreError("fallback append to " + self._stream + " at " + mask_url(self._url) + " failed: " + type(exc).__name__) from exc
        self.queued += 1

    def await_reply(self, request_id: str, timeout_s: float) -> Reply:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                reply = self._verdicts.pop(request_id, None)
                if reply is not None:
                    return reply
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TransportError(
                        "no reply over ZeroMQ; the signal is queued on " + self._stream
                        + " and its verdict will arrive on " + self.reply_stream
                    )
                self._read(min(left, 0.2))

    def _read(self, block_s: float) -> None:
        try:
            res = self._redis.xread({self.reply_stream: self._cursor}, count=512, block=max(1, int(block_s * 1000)))
        except redis.RedisError:
            time.sleep(0.05)
            return
        for _, entries in res or ():
            for entry_id, fields in entries:
                self._cursor = entry_id
                msg = intake_response_decoder.decode(fields[REPLY_FIELD])
                if type(msg) is Reply:
                    self._verdicts[msg.request_id] = msg

    def close(self) -> None:
        self._redis.close()
