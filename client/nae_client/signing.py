"""Signing, defined once (the node's verifier imports it): HMAC-SHA256(secret, ts_ns as 8 bytes
big-endian + payload)."""

from __future__ import annotations

import hashlib
import hmac

from nae_client.wire import SignedSignal


def signing_bytes(ts_ns: int, payload: bytes) -> bytes:
    return ts_ns.to_bytes(8, "big", signed=False) + payload


def sign(secret: bytes, ts_ns: int, payload: bytes) -> bytes:
    return hmac.new(secret, signing_bytes(ts_ns, payload), hashlib.sha256).digest()


def make_envelope(key_id: str, secret: bytes, payload: bytes, ts_ns: int) -> SignedSignal:
    return SignedSignal(key_id=key_id, ts_ns=ts_ns, payload=payload, sig=sign(secret, ts_ns, payload))


def http_headers(key_id: str, secret: bytes, body: bytes, ts_ns: int) -> dict[str, str]:
    """The headers of the seed-compatible `POST /v1/signals` for this exact body."""
    return {"X-Key-Id": key_id, "X-Timestamp": str(ts_ns), "X-Signature": sign(secret, ts_ns, body).hex(),
            "Content-Type": "application/json"}
