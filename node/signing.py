"""Signing and verification of signals, and replay refusal.

The signature is mandatory: HMAC-SHA256 over `ts_ns` (8 bytes, big-endian) followed by the exact
payload bytes, keyed by a named key (`key_id`) so keys rotate. The verifier refuses a missing or
wrong signature, an unknown key and a signing timestamp outside the window; it compares in
constant time (`hmac.compare_digest`).

`DedupeMemory` remembers every `request_id` it accepted, with a digest of its payload:
- the same request_id with the same payload is a *retry*: it gets the original reply, no new order;
- the same request_id with other content is a *replay*: REJECTED REPLAY;
- a signal whose own `timestamp` is older than what the memory still covers is refused as stale,
  so evicting old ids can never let a replay through.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from typing import Generic, TypeVar

from nae_client.signing import make_envelope, sign, signing_bytes  # noqa: F401 - defined once, for the client
from node.messages import SignedSignal
from node.reasons import Reason

T = TypeVar("T")


class Verifier:
    """Checks envelopes against a key ring and a timestamp window."""

    def __init__(self, keys: dict[str, str | bytes], window_ms: int) -> None:
        self._keys = {k: (v.encode() if isinstance(v, str) else v) for k, v in keys.items()}
        # one keyed HMAC per key, copied per envelope: the key schedule is not redone (~35% of the HMAC)
        self._macs = {k: hmac.new(v, digestmod=hashlib.sha256) for k, v in self._keys.items()}
        self._window_ns = window_ms * 1_000_000

    def verify(self, env: SignedSignal, now_ns: int) -> Reason | None:
        """None when the envelope is authentic and fresh, else the reason it is not."""
        if not env.sig:
            return Reason.SIGNATURE_MISSING
        keyed = self._macs.get(env.key_id)
        if keyed is None:
            return Reason.UNKNOWN_KEY
        if env.ts_ns < 0 or env.ts_ns >= 1 << 64:
            return Reason.STALE_TIMESTAMP
        mac = keyed.copy()
        mac.update(signing_bytes(env.ts_ns, env.payload))
        if not hmac.compare_digest(mac.digest(), env.sig):
            return Reason.SIGNATURE_INVALID
        if abs(now_ns - env.ts_ns) > self._window_ns:
            return Reason.STALE_TIMESTAMP
        return None


#: stored for ids rebuilt from the log after a restart, where the original bytes are not known:
#: any signal with such an id is answered as a retry (never executed again)
UNKNOWN_DIGEST = b""


def payload_digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


class DedupeMemory(Generic[T]):
    """request_id -> (payload digest, signal timestamp, stored outcome), bounded in age and count."""

    def __init__(self, window_secs: float, max_entries: int) -> None:
        self._window_s = float(window_secs)
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[bytes, float, T]] = OrderedDict()
        self._watermark_s = 0.0  # signals at or before this time are no longer covered

    def __len__(self) -> int:
        return len(self._entries)

    def stale(self, signal_ts_s: float, now_s: float) -> bool:
        return signal_ts_s <= self._watermark_s or signal_ts_s < now_s - self._window_s

    def lookup(self, request_id: str, digest: bytes) -> tuple[bool, T | None]:
        """(known, outcome): known with the same digest -> (True, outcome); other digest -> (True, None)."""
        entry = self._entries.get(request_id)
        if entry is None:
            return False, None
        return True, (entry[2] if entry[0] == digest or entry[0] == UNKNOWN_DIGEST else None)

    def remember(self, request_id: str, digest: bytes, signal_ts_s: float, outcome: T) -> None:
        self._entries[request_id] = (digest, signal_ts_s, outcome)

    def replace_outcome(self, request_id: str, outcome: T) -> None:
        """The same request, a new answer (an append whose outcome became known)."""
        entry = self._entries.get(request_id)
        if entry is not None:
            self._entries[request_id] = (entry[0], entry[1], outcome)

    def raise_watermark(self, signal_ts_s: float) -> None:
        """Refuse as stale every signal at or before this time (what the memory no longer covers)."""
        self._watermark_s = max(self._watermark_s, signal_ts_s)

    def forget(self, request_id: str) -> None:
        self._entries.pop(request_id, None)

    def expire(self, now_s: float) -> int:
        """Drop entries older than the window, and the oldest past `max_entries`. Returns how many."""
        horizon = now_s - self._window_s
        dropped = 0
        entries = self._entries
        while entries:
            key, (_, ts, _) = next(iter(entries.items()))
            if ts >= horizon and len(entries) <= self._max:
                break
            entries.popitem(last=False)
            if ts > self._watermark_s:
                self._watermark_s = ts
            dropped += 1
        return dropped
