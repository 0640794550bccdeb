"""The fallback intake: signed frames a client appended to `execution.intake` when the ZeroMQ
intake did not answer in time.

A reader thread (its own Redis connection) reads the stream through the consumer group
`validator`: first the entries this consumer had read but not acknowledged (a previous life of
this validator died holding them), then entries idle on any other consumer (XAUTOCLAIM), then new
ones. It hands each to the validator's loop over an inproc socket as
[entry_id, reply_stream, frame, max_age_ms]; the loop judges it with the same gate (the freshness window is
measured at the entry's append time), replies on the client's reply stream and acknowledges the
entry. `request_id` makes the two paths idempotent: a signal that arrives both ways executes once.
"""

from __future__ import annotations

import threading

import redis
import zmq

from node.fallback import FRAME_FIELD, MAX_AGE_FIELD, REPLY_FIELD

GROUP = "validator"
CLAIM_IDLE_MS = 5_000


def ensure_group(client: redis.Redis, stream: str) -> None:
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class FallbackReader:
    def __init__(self, redis_url: str, stream: str, consumer: str, push_endpoint: str) -> None:
        self._url = redis_url
        self._stream = stream
        self._consumer = consumer
        self._endpoint = push_endpoint
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.read = 0
        self.errors = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fallback-intake", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    def _run(self) -> None:
        client = redis.Redis.from_url(self._url, socket_timeout=5, socket_connect_timeout=2)
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(self._endpoint)
        backlog = True  # first our own unacknowledged entries
        try:
            while not self._stop.is_set():
                try:
                    ensure_group(client, self._stream)
                    if backlog:
                        entries = self._read(client, "0", block=None)
                        if not entries:
                            backlog = self._claim(client) > 0  # claimed entries are ours now: read them
                            continue
                    else:
                        entries = self._read(client, ">", block=200)
                except Exception:  # noqa: BLE001 - thread boundary: count, back off, carry on
                    self.errors += 1
                    self._stop.wait(0.5)
                    continue
                for entry_id, fields in entries:
                    frame = fields.get(FRAME_FIELD)
                    if frame is None:
                        continue
                    push.send_multipart((entry_id, fields.get(REPLY_FIELD, b""), frame, fields.get(MAX_AGE_FIELD, b"")))
                    self.read += 1
        finally:
            push.close(0)
            client.close()

    def _read(self, client: redis.Redis, start: str, block: int | None) -> list:
        res = client.xreadgroup(GROUP, self._consumer, {self._stream: start}, count=512, block=block)
        return res[0][1] if res else []

    def _claim(self, client: redis.Redis) -> int:
        """Take over entries another (dead) consumer read and never acknowledged; how many."""
        cursor, total = "0-0", 0
        while True:
            cursor, claimed, *_ = client.xautoclaim(
                self._stream, GROUP, self._consumer, min_idle_time=CLAIM_IDLE_MS, start_id=cursor, count=512
            )
            total += len(claimed)
            if not claimed or cursor in (b"0-0", "0-0"):
                return total
