"""The fallback path: when the node's ZeroMQ intake does not answer in time, the signed signal is
appended to the intake stream in Redis (`execution.intake`) with a maximum age, and the verdict is
read from this client's reply stream. The node refuses (REJECTED STALE_TIMESTAMP) an entry it takes
later than its maximum age: a queued signal is executed in time or not at all.
"""

from __future__ import annotations

import threading
import time
import uuid

import msgspec
import redis

from nae_client.errors import StoreError, TransportError
from nae_client.wire import Reply, response_decoder

FRAME_FIELD = b"f"
REPLY_FIELD = b"r"
MAX_AGE_FIELD = b"x"
DEFAULT_MAX_AGE_MS = 30_000
REPLY_TTL_S = 24 * 3600


class FallbackChannel:
    """Thread-safe: several threads may wait for verdicts at once."""

    def __init__(self, redis_url: str, stream: str, client_name: str, max_age_ms: int = DEFAULT_MAX_AGE_MS) -> None:
        if max_age_ms <= 0:
            raise ValueError("max_age_ms must be > 0")
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
        self._stream = stream
        self.max_age_ms = max_age_ms
        self.reply_stream = stream + ".replies." + client_name + "." + uuid.uuid4().hex[:8]
        self._lock = threading.Lock()
        self._cursor = "0"
        self._verdicts: dict[str, Reply] = {}
        self.queued = 0

    def submit(self, frame: bytes) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.xadd(self._stream, {FRAME_FIELD: frame, REPLY_FIELD: self.reply_stream.encode(),
                                     MAX_AGE_FIELD: str(self.max_age_ms).encode()})
            pipe.expire(self.reply_stream, REPLY_TTL_S)
            pipe.execute()
        except redis.RedisError as exc:
            raise StoreError("fallback append to " + self._stream + " failed: " + type(exc).__name__) from exc
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
                    raise TransportError("no reply over ZeroMQ; the signal is queued on " + self._stream
                                         + " (max age " + str(self.max_age_ms) + " ms), its verdict will arrive on "
                                         + self.reply_stream)
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
                try:
                    msg = response_decoder.decode(fields[REPLY_FIELD])
                except (KeyError, msgspec.DecodeError):
                    continue
                if type(msg) is Reply:
                    self._verdicts[msg.request_id] = msg

    def close(self) -> None:
        self._redis.close()
