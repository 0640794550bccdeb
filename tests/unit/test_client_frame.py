"""The client's keyed-HMAC frame is byte for byte `make_envelope`'s, and the node's verifier (keyed
once per key) accepts it, refuses it under another key or with its payload changed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nae_client.client import ExecutionClient
from node.messages import encode, intake_request_decoder
from node.reasons import Reason
from node.signing import Verifier, make_envelope


@given(secret=st.binary(min_size=1, max_size=80), payload=st.binary(max_size=600), ts=st.integers(1, 2**63 - 1))
def test_the_client_frame_is_make_envelopes_and_verifies(secret, payload, ts):
    client = ExecutionClient("tcp://127.0.0.1:9", "k1", secret)
    try:
        frame = client.frame(payload, ts)
        assert frame == encode(make_envelope("k1", secret, payload, ts))
        env = intake_request_decoder.decode(frame)
        assert Verifier({"k1": secret}, window_ms=2**62 // 1_000_000).verify(env, ts) is None
        assert Verifier({"k1": secret + b"x"}, window_ms=10_000).verify(env, ts) is Reason.SIGNATURE_INVALID
        forged = intake_request_decoder.decode(encode(make_envelope("k1", secret, payload + b"!", ts)))
        tampered = type(env)(key_id="k1", ts_ns=ts, payload=payload + b"!", sig=env.sig)
        assert Verifier({"k1": secret}, window_ms=10_000).verify(tampered, ts) is Reason.SIGNATURE_INVALID
        assert Verifier({"k1": secret}, window_ms=10_000).verify(forged, ts) is None
    finally:
        client.close()
