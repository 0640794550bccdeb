"""The supervisor's writes to Redis, off its decision path: records, the lane checkpoint, the store probe.

A frozen or lost Redis must never hold up liveness or a failover (issue 9 item 3: a frozen Redis set
off a chain of failovers, most of them unrecorded). So:
- `Recorder.record(kind, event)` only queues; a thread of its own appends to the monitoring stream
  with a short timeout and keeps what it could not write, in order, until the store answers again
  (bounded: past `max_pending` the oldest are dropped and counted). Every epoch grant goes through it.
- `Recorder.checkpoint(key, value)` keeps the newest value per key and writes it the same way.
- The same thread probes the store every `probe_ms` and tells `on_store(ok, now_ns)` (the failover
  policy's input): a store that does not answer in time is down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

import orjson
import redis

log = logging.getLogger("nae.supervisor.recorder")


class Recorder:
    def __init__(
        self,
        redis_url: str,
        stream: str,
        on_store: Callable[[bool, int], None] = lambda ok, now: None,
        probe_ms: int = 50,
        timeout_ms: int = 200,
        max_pending: int = 100_000,
    ) -> None:
        self._redis_url = redis_url
        self._stream = stream
        self._on_store = on_store
        self._probe_s = probe_ms / 1000
        self._timeout_s = timeout_ms / 1000
        self._pending: deque[bytes] = deque()
        self._max_pending = max_pending
        self._checkpoints: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0
        self.store_failures = 0
        self._last_warn = 0.0

    # ------------------------------------------------------------ callers (never block)

    def record(self, kind: str, event: dict) -> None:
        entry = orjson.dumps({**event, "kind": kind}, default=str)
        with self._lock:
            self._pending.append(entry)
            while len(self._pending) > self._max_pending:
                self._pending.popleft()
                self.dropped += 1
        self._wake.set()

    def checkpoint(self, key: str, value: bytes) -> None:
        with self._lock:
            self._checkpoints[key] = value
        self._wake.set()

    def pending(self) -> int:
        return len(self._pending) + len(self._checkpoints)

    def stats(self) -> dict:
        return {"written": self.written, "pending": self.pending(), "dropped": self.dropped,
                "store_failures": self.store_failures}

    # ------------------------------------------------------------ the thread

    def start(self) -> None:
        if self._thread is not None:  # idempotent (a restarted supervisor that finds no checkpoint starts afresh)
            return
        self._thread = threading.Thread(target=self._run, name="supervisor-recorder", daemon=True)
        self._thread.start()

    def stop(self, flush_s: float = 2.0) -> None:
        deadline = time.monotonic() + flush_s
        while self.pending() and time.monotonic() < deadline and self._thread is not None and self._thread.is_alive():
            self._wake.set()
            time.sleep(0.01)
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(flush_s)

    def _client(self) -> redis.Redis:
        return redis.Redis.from_url(self._redis_url, socket_timeout=self._timeout_s,
                                    socket_connect_timeout=self._timeout_s)

    def _run(self) -> None:
        client = self._client()
        while not self._stopping.is_set():
            self._wake.wait(self._probe_s)
            self._wake.clear()
            try:
                client.ping()
                self._on_store(True, time.time_ns())
                self._flush(client)
            except Exception:  # noqa: BLE001 - loop boundary: the store is down; kept, retried
                self.store_failures += 1
                self._on_store(False, time.time_ns())
                self._warn()
                client.close()
                client = self._client()
                self._stopping.wait(self._probe_s)
        client.close()

    def _flush(self, client: redis.Redis) -> None:
        while True:
            with self._lock:
                batch = list(self._pending)[:256]
                saved = dict(self._checkpoints)
            if not batch and not saved:
                return
            pipe = client.pipeline(transaction=False)
            for entry in batch:
                pipe.xadd(self._stream, {b"m": entry}, maxlen=100_000, approximate=True)
            for key, value in saved.items():
                pipe.set(key, value)
            pipe.execute()  # raises: nothing is taken off, all of it is tried again
            with self._lock:
                for _ in batch:
                    self._pending.popleft()
                for key, value in saved.items():
                    if self._checkpoints.get(key) is value:
                        del self._checkpoints[key]
            self.written += len(batch)

    def _warn(self) -> None:
        now = time.monotonic()
        if now - self._last_warn >= 1.0:
            self._last_warn = now
            log.warning("store unavailable: %d records and checkpoints kept for later", self.pending())


def read_checkpoint(redis_url: str, key: str, timeout_ms: int = 500) -> bytes | None:
    """A checkpoint written by a Recorder (None when absent or the store does not answer in time)."""
    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=timeout_ms / 1000,
                                      socket_connect_timeout=timeout_ms / 1000)
        try:
            return client.get(key)
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no checkpoint to carry on from: start afresh
        return None
