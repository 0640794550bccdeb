"""The client's side of the fallback path: when the ZeroMQ intake does not answer in time, append
the signed signal to `execution.intake` with a maximum age and wait for the verdict on this client's
reply stream. Defined once: the node's validator reads the same field names from here.

The validator reads that stream with the same checks and refuses (REJECTED STALE_TIMESTAMP) an
entry it takes later than its maximum age, before risk sees it, and remembers that refusal like any
verdict; `request_id` makes both paths idempotent, so a signal that also reaches the intake over
ZeroMQ executes once, or never when its entry was refused as late. The blocking client also drops
the ZeroMQ frame it gave up on (it re-creates its socket), so such a copy is rare.
"""

from __future__ import annotations

import threading
import time
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit

import msgspec
import redis

from nae_client.errors import StoreError, TransportError
from nae_client.wire import Reply, response_decoder

FRAME_FIELD = b"f"
REPLY_FIELD = b"r"
MAX_AGE_FIELD = b"x"  # ms: the validator refuses the entry (STALE_TIMESTAMP) once it is older than this
DEFAULT_MAX_AGE_MS = 30_000
REPLY_TTL_S = 24 * 3600


_SECRET_PARAMS = frozenset({"password", "sslpassword"})


def mask_url(url: str) -> str:
    """`url` with any password (in the authority or a `password=` parameter) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    out = url
    netloc = parts.netloc
    if "@" in netloc:
        cred, host = netloc.rsplit("@", 1)
        if ":" in cred:
            out = out.replace("//" + netloc, "//" + cred.split(":", 1)[0] + ":***@" + host, 1)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
            masked = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="/*")
            out = out.replace("?" + query, "?" + masked, 1)
    return out


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
                try:
                    msg = response_decoder.decode(fields[REPLY_FIELD])
                except (KeyError, msgspec.DecodeError):
                    continue  # not a verdict of the node's: nobody waits for it
                if type(msg) is Reply:
                    self._verdicts[msg.request_id] = msg

    def close(self) -> None:
        self._redis.close()
