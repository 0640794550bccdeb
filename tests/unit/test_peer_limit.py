"""The per-peer limit at the ZeroMQ intake (node.peer_limit): pure, fake clock, with the real gate."""

from __future__ import annotations

import time

import msgspec
import pytest

from node.config import IntakeConfig, SigningConfig
from node.intake import SignalGate
from node.messages import Reply, SignedSignal, Status, encode, intake_response_decoder
from node.peer_limit import UNAUTHENTICATED, PeerLimiter
from node.ratelimit import TokenBuckets
from node.reasons import Reason
from node.signing import make_envelope

SEC = 1_000_000_000
KEYS = {"k1": "s3cret"}


def limiter(**intake) -> PeerLimiter:
    return PeerLimiter(IntakeConfig(**{"peer_unauthenticated_per_sec": 10.0, "peer_unauthenticated_burst": 3.0,
                                       **intake}))


def refused(reason: Reason) -> Reply:
    return Reply(status=Status.REJECTED, request_id="", reasons=[reason])


def test_a_peer_is_judged_until_its_unauthenticated_frames_spend_its_burst():
    limit, now = limiter(), 5 * SEC
    for _ in range(3):
        assert limit.admits(b"flood", now)
        limit.judged(b"flood", refused(Reason.SIGNATURE_INVALID), now)
    assert not limit.admits(b"flood", now)
    assert limit.admits(b"honest", now)  # another peer pays nothing for it
    assert limit.limited == 1


def test_a_limited_peer_is_judged_again_as_its_bucket_refills():
    limit, now = limiter(), 5 * SEC
    for _ in range(3):
        limit.judged(b"p", refused(Reason.MALFORMED_FRAME), now)
    assert not limit.admits(b"p", now)
    assert not limit.admits(b"p", now + SEC // 20)  # half a token at 10/s
    assert limit.admits(b"p", now + SEC // 10)


@pytest.mark.parametrize("reply", [
    Reply(status=Status.ACCEPTED, request_id="r", signal_id="s"),
    refused(Reason.MAX_NOTIONAL),  # risk refused a signed signal: the peer did nothing wrong
    refused(Reason.RATE_LIMITED),  # its key's bucket: that one already limits it
    refused(Reason.REPLAY),
    None,  # a discovery request
])
def test_authenticated_verdicts_cost_the_peer_nothing(reply):
    limit, now = limiter(), 5 * SEC
    for _ in range(100):
        limit.judged(b"p", reply, now)
    assert limit.admits(b"p", now) and len(limit) == 0  # not even a bucket stored


@pytest.mark.parametrize("reason", sorted(UNAUTHENTICATED))
def test_every_unauthenticated_reason_costs_a_token(reason):
    limit, now = limiter(peer_unauthenticated_burst=1.0), 5 * SEC
    limit.judged(b"p", refused(reason), now)
    assert not limit.admits(b"p", now)


def test_the_refusal_is_one_encoded_reply_saying_rate_limited():
    limit = limiter()
    reply = intake_response_decoder.decode(limit.refusal)
    assert type(reply) is Reply and reply.status is Status.REJECTED and reply.reasons == [Reason.RATE_LIMITED]
    assert reply.detail


def test_the_peers_table_is_capped_least_recently_seen_first():
    limit, now = limiter(max_peers=4, peer_unauthenticated_burst=1.0), 5 * SEC
    for i in range(1_000):
        limit.charge(b"peer-%d" % i, now)
    assert len(limit) == 4
    assert not limit.admits(b"peer-999", now) and limit.admits(b"peer-0", now)


def test_ready_does_not_spend_and_stores_nothing_for_a_new_name():
    buckets = TokenBuckets(1.0, 2.0, 8)
    assert buckets.ready("a", 0) and len(buckets) == 0
    assert buckets.take("a", 0) and buckets.ready("a", 0) and buckets.ready("a", 0)
    assert buckets.take("a", 0) and not buckets.ready("a", 0)
    assert buckets.ready("a", SEC)


def test_with_the_real_gate_a_badly_signed_flood_is_cut_off_and_a_signed_peer_never_is():
    """The validator's loop in miniature: the limiter before the gate, its verdict after."""
    gate = SignalGate(SigningConfig(keys=KEYS), IntakeConfig())
    limit = limiter(peer_unauthenticated_burst=20.0)
    now = time.time_ns()
    bad = encode(SignedSignal(key_id="k1", ts_ns=now, payload=b"\x80", sig=b"\x00" * 32))
    judged = {b"flood": 0, b"honest": 0}
    answers: dict[bytes, list[Reason]] = {b"flood": [], b"honest": []}
    for i in range(2_000):
        peer = b"flood" if i % 2 else b"honest"
        if peer == b"honest":
            payload = msgspec.msgpack.encode({"request_id": "h-%d" % i, "strategy_id": "s", "timestamp": time.time(),
                                              "symbol": "AAPL", "action": "BUY", "quantity": 1.0})
            frame = encode(make_envelope("k1", b"s3cret", payload, now))
        else:
            frame = bad
        if not limit.admits(peer, now):
            answers[peer].append(intake_response_decoder.decode(limit.refusal).reasons[0])
            continue
        judged[peer] += 1
        reply = gate.admit(frame, now).reply
        limit.judged(peer, reply, now)
        answers[peer].append(reply.reasons[0] if reply.reasons else reply.status)
    assert judged == {b"flood": 20, b"honest": 1_000}
    assert answers[b"honest"] == [Status.ACCEPTED] * 1_000
    assert answers[b"flood"] == [Reason.SIGNATURE_INVALID] * 20 + [Reason.RATE_LIMITED] * 980
