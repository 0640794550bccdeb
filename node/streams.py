"""Batched appends to the Redis Streams log (one pipeline, one round trip per wake-up).

Stream layout (fixed; the ledger and recovery read it):
- `execution.signals`: field b"a" = msgpack `SignalAccepted`, one entry per accepted signal.
- `execution.events`: field b"e" = msgpack `ExecutionReport` (strategy/request/signal ids filled in).
- `execution.intake`: field b"f" = the signed frame, appended by a client whose ZeroMQ intake did not
  answer (the fallback path); the validator consumes it with the same checks.
- `monitoring.events`: field b"m" = JSON.
"""

from __future__ import annotations

import redis

from node.errors import StoreError

INTAKE_STREAM = "execution.intake"


def connect_redis(url: str, timeout_s: float = 2.0) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def mask_url(url: str) -> str:
    if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
        scheme, rest = url.split("//", 1)
        cred, host = rest.split("@", 1)
        return scheme + "//" + cred.split(":", 1)[0] + ":***@" + host
    return url


class StreamLog:
    """Appends entries of one field to one stream; `append` is all-or-nothing from the caller's view."""

    def __init__(self, client: redis.Redis, stream: str, field: bytes, maxlen: int) -> None:
        self._client = client
        self._stream = stream
        self._field = field
        self._maxlen = maxlen

    @property
    def stream(self) -> str:
        return self._stream

    def append(self, payloads: list[bytes]) -> list[bytes]:
        """XADD every payload in one pipeline; returns the entry ids. Raises `StoreError`."""
        if not payloads:
            return []
        pipe = self._client.pipeline(transaction=False)
        field, stream, maxlen = self._field, self._stream, self._maxlen
        for p in payloads:
            pipe.xadd(stream, {field: p}, maxlen=maxlen, approximate=True)
        try:
            return pipe.execute()
        except redis.RedisError as exc:
            raise StoreError("redis append to " + stream + " failed: " + type(exc).__name__) from exc
