"""Signing, verification and the dedupe memory."""

import pytest

from node.messages import SignedSignal
from node.reasons import Reason
from node.signing import DedupeMemory, Verifier, make_envelope, sign

KEYS = {"k1": "secret-one", "k2": "secret-two"}
NOW = 1_700_000_000_000_000_000


def test_good_envelope_verifies():
    env = make_envelope("k1", b"secret-one", b"payload", NOW)
    assert Verifier(KEYS, 5_000).verify(env, NOW) is None


@pytest.mark.parametrize(
    "env, reason",
    [
        (SignedSignal(key_id="k1", ts_ns=NOW, payload=b"p", sig=b""), Reason.SIGNATURE_MISSING),
        (make_envelope("nope", b"secret-one", b"p", NOW), Reason.UNKNOWN_KEY),
        (make_envelope("k1", b"wrong", b"p", NOW), Reason.SIGNATURE_INVALID),
        (make_envelope("k2", b"secret-one", b"p", NOW), Reason.SIGNATURE_INVALID),
        (make_envelope("k1", b"secret-one", b"p", NOW - 6_000_000_000), Reason.STALE_TIMESTAMP),
        (make_envelope("k1", b"secret-one", b"p", NOW + 6_000_000_000), Reason.STALE_TIMESTAMP),
        (SignedSignal(key_id="k1", ts_ns=-5, payload=b"p", sig=b"x" * 32), Reason.STALE_TIMESTAMP),
    ],
)
def test_bad_envelopes(env, reason):
    assert Verifier(KEYS, 5_000).verify(env, NOW) == reason


def test_signature_covers_timestamp_and_payload():
    env = make_envelope("k1", b"secret-one", b"payload", NOW)
    tampered_ts = SignedSignal(key_id="k1", ts_ns=NOW + 1, payload=b"payload", sig=env.sig)
    tampered_payload = SignedSignal(key_id="k1", ts_ns=NOW, payload=b"paylaod", sig=env.sig)
    v = Verifier(KEYS, 5_000)
    assert v.verify(tampered_ts, NOW) is Reason.SIGNATURE_INVALID
    assert v.verify(tampered_payload, NOW) is Reason.SIGNATURE_INVALID


def test_rotated_keys_both_verify():
    v = Verifier(KEYS, 5_000)
    assert v.verify(make_envelope("k2", b"secret-two", b"p", NOW), NOW) is None
    assert sign(b"a", 1, b"p") != sign(b"b", 1, b"p")


def test_dedupe_retry_replay_and_eviction_watermark():
    mem: DedupeMemory[str] = DedupeMemory(window_secs=100, max_entries=2)
    mem.remember("r1", b"d1", 1000.0, "first")
    assert mem.lookup("r1", b"d1") == (True, "first")  # a retry gets the stored outcome
    assert mem.lookup("r1", b"other") == (True, None)  # other content: a replay
    assert mem.lookup("r2", b"d1") == (False, None)
    mem.remember("r2", b"d2", 1001.0, "x")
    mem.remember("r3", b"d3", 1002.0, "y")
    assert mem.expire(now_s=1003.0) == 1  # over max_entries: the oldest goes
    assert mem.lookup("r1", b"d1") == (False, None)
    # ...but r1 can never come back: its timestamp is at or below the watermark now
    assert mem.stale(1000.0, now_s=1003.0)
    assert not mem.stale(1002.5, now_s=1003.0)
    assert mem.expire(now_s=1200.0) == 2  # past the window: everything goes
    assert mem.stale(1099.0, now_s=1200.0)
