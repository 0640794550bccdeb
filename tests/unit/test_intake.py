"""The signal gate: every bad input gets a precise reason; good ones pass once."""

import time

import msgspec
import pytest

from node.config import IntakeConfig, SigningConfig
from node.intake import SignalGate
from node.risk import PreTradeRisk
from node.risk.config import throughput_limits
from node.messages import Discover, Status, encode
from node.reasons import Reason
from node.signing import make_envelope

SECRET = b"s3cret"
SIGNING = SigningConfig(keys={"k": SECRET.decode()})


def gate(**risk):
    limits = msgspec.structs.replace(throughput_limits(), **risk)
    return SignalGate(SIGNING, IntakeConfig(), PreTradeRisk(limits, ["AAPL"], {"AAPL": 200.0}, 1_000_000.0))


#: stands for "the time the frame is signed": parametrize tables are built at collection, which may be
#: longer ago than the dedupe window when the whole suite runs first
FRESH = "<fresh>"


def good(**over):
    d = {
        "request_id": "r-" + str(time.perf_counter_ns()),
        "strategy_id": "s1",
        "timestamp": FRESH,
        "symbol": "AAPL",
        "action": "BUY",
        "quantity": 10.0,
    }
    d.update(over)
    return {k: v for k, v in d.items() if v is not None}


def frame(payload_obj, key="k", secret=SECRET, ts_ns=None):
    if isinstance(payload_obj, dict) and payload_obj.get("timestamp") == FRESH:
        payload_obj = dict(payload_obj, timestamp=time.time())
    payload = msgspec.msgpack.encode(payload_obj)
    return encode(make_envelope(key, secret, payload, ts_ns or time.time_ns()))


def admit(g, fr):
    return g.admit(fr, time.time_ns())


def test_good_signal_is_accepted_with_deterministic_id():
    g = gate()
    v = admit(g, frame(good(request_id="abc")))
    assert v.reply.status is Status.ACCEPTED and v.signal is not None
    assert v.reply.signal_id and v.reply.request_id == "abc"


@pytest.mark.parametrize(
    "payload, reason",
    [
        (good(quantity=None), Reason.SIZE_SPEC),
        (good(notional=1000.0), Reason.SIZE_SPEC),
        (good(quantity=-5.0), Reason.INVALID_NUMBER),
        (good(quantity=0.0), Reason.INVALID_NUMBER),
        (good(quantity=1e15), Reason.INVALID_NUMBER),
        (good(quantity=float("nan")), Reason.INVALID_NUMBER),
        (good(quantity=float("inf")), Reason.INVALID_NUMBER),
        (good(quantity="ten"), Reason.SCHEMA_INVALID),
        (good(symbol=12), Reason.SCHEMA_INVALID),
        (good(action="YOLO"), Reason.SCHEMA_INVALID),
        (good(extra_field=1), Reason.UNKNOWN_FIELD),
        (good(order_type="LIMIT"), Reason.PRICE_REQUIRED),
        (good(order_type="STOP_LIMIT", limit_price=10.0), Reason.PRICE_REQUIRED),
        (good(limit_price=10.0), Reason.PRICE_NOT_ALLOWED),
        (good(quantity=200_000.0), Reason.MAX_QUANTITY),
        (good(quantity=50_000.0), Reason.MAX_NOTIONAL),
        (good(order_type="LIMIT", limit_price=300.0), Reason.PRICE_COLLAR),
        (good(symbol="ZZZZ"), Reason.UNKNOWN_SYMBOL),
        (good(timestamp=time.time() - 3600), Reason.STALE_TIMESTAMP),
        ([1, 2, 3], Reason.SCHEMA_INVALID),
    ],
)
def test_bad_signals_are_refused_with_a_reason(payload, reason):
    g = gate(symbols=["AAPL"], max_notional_usd=5_000_000.0)
    v = admit(g, frame(payload))
    assert v.reply.status is Status.REJECTED
    assert reason in v.reply.reasons
    assert v.signal is None
    assert g.counts[reason] == 1


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", Reason.MALFORMED_FRAME),
        (b"\xc1\xc1\xc1", Reason.MALFORMED_FRAME),
        (b"garbage", Reason.MALFORMED_FRAME),
        (msgspec.msgpack.encode({"type": "sig", "key_id": "k"}), Reason.MALFORMED_FRAME),
        (b"x" * (10 * 1024 * 1024), Reason.FRAME_TOO_LARGE),
    ],
)
def test_malformed_frames(raw, reason):
    v = admit(gate(), raw)
    assert v.reply.reasons == [reason]


def test_bad_signature_and_unknown_key_and_stale_envelope():
    g = gate()
    assert admit(g, frame(good(), secret=b"wrong")).reply.reasons == [Reason.SIGNATURE_INVALID]
    assert admit(g, frame(good(), key="nobody")).reply.reasons == [Reason.UNKNOWN_KEY]
    old = time.time_ns() - 60 * 10**9
    assert admit(g, frame(good(), ts_ns=old)).reply.reasons == [Reason.STALE_TIMESTAMP]


def test_retry_gets_the_first_answer_and_replay_is_refused():
    g = gate()
    sig = good(request_id="same")
    first = admit(g, frame(sig))
    retry = admit(g, frame(sig))  # re-signed with a new ts, same payload
    assert first.reply.status is Status.ACCEPTED
    assert retry.reply.status is Status.ACCEPTED and retry.reply.duplicate and retry.signal is None
    assert retry.reply.signal_id == first.reply.signal_id
    replay = admit(g, frame(dict(sig, quantity=99.0)))
    assert replay.reply.reasons == [Reason.REPLAY]


def test_forget_lets_a_failed_append_be_retried():
    g = gate()
    sig = good(request_id="again")
    first = admit(g, frame(sig))
    g.forget(first.signal, time.time_ns())
    again = admit(g, frame(sig))
    assert again.signal is not None and not again.reply.duplicate


def test_discover():
    assert gate().admit(encode(Discover()), time.time_ns()).discover


def test_a_late_fallback_entry_is_refused_before_risk_and_the_refusal_is_remembered():
    """Taken past its client's maximum age: STALE_TIMESTAMP (not a risk verdict), nothing reserved,
    and a later copy of the same request (the ZeroMQ frame the client gave up on) gets that refusal."""
    g = gate(duplicate_window_ms=1_000)
    sig = good(request_id="late-1")
    late = g.admit(frame(sig), time.time_ns(), "fallback entry taken 900 ms after its append")
    assert late.signal is None and late.reply.reasons == [Reason.STALE_TIMESTAMP]
    assert "900 ms" in late.reply.detail
    copy = admit(g, frame(sig))
    assert copy.signal is None and copy.reply.duplicate and copy.reply.reasons == [Reason.STALE_TIMESTAMP]
    # nothing was reserved: an identical order under a new request_id passes the duplicate window
    assert admit(g, frame(good(request_id="late-2"))).reply.status is Status.ACCEPTED


def test_an_answered_request_keeps_its_first_answer_when_its_fallback_copy_is_late():
    g = gate()
    sig = good(request_id="twice")
    assert admit(g, frame(sig)).reply.status is Status.ACCEPTED
    again = g.admit(frame(sig), time.time_ns(), "fallback entry taken 900 ms after its append")
    assert again.reply.status is Status.ACCEPTED and again.reply.duplicate and again.signal is None


def test_the_dedupe_memory_holds_nothing_the_garbage_collector_walks():
    """Its verdicts are kept as bytes: after one collection no entry is tracked (a full collection
    would otherwise walk the whole dedupe window, node.gcwatch), and a retry still gets its answer."""
    import gc

    g = gate(max_notional_usd=100_000.0)
    accepted = admit(g, frame(good(request_id="kept")))
    refused = admit(g, frame(good(request_id="too-big", quantity=1_000.0)))  # 200,000 USD: over the limit
    assert accepted.reply.status is Status.ACCEPTED and refused.reply.status is Status.REJECTED
    gc.collect()
    assert not any(gc.is_tracked(entry) for entry in g._memory._entries.values())
    again = admit(g, frame(good(request_id="kept")))
    assert again.reply.status is Status.ACCEPTED and again.reply.duplicate
    assert again.reply.signal_id == accepted.reply.signal_id
    refused_again = admit(g, frame(good(request_id="too-big", quantity=1_000.0)))
    assert refused_again.reply.reasons == refused.reply.reasons and refused_again.reply.duplicate


def test_an_option_notional_rounds_to_zero_by_the_contract_not_the_share():
    put = "SPY251219P00500000"  # premium 2.50 a share: one contract is 250 USD
    limits = msgspec.structs.replace(throughput_limits())
    g = SignalGate(SIGNING, IntakeConfig(min_order_quantity=1.0),
                   PreTradeRisk(limits, ["AAPL", put], {"AAPL": 200.0, put: 2.5}, 1_000_000.0))
    short = admit(g, frame(good(symbol=put, quantity=None, notional=200.0)))  # 0.8 contract (80 shares)
    assert short.reply.reasons == [Reason.ZERO_QUANTITY]
    whole = admit(g, frame(good(symbol=put, quantity=None, notional=250.0, order_type="LIMIT", limit_price=2.5)))
    assert whole.reply.status is Status.ACCEPTED
    shares = admit(g, frame(good(quantity=None, notional=250.0)))  # 1.25 shares of AAPL: not zero
    assert shares.reply.status is Status.ACCEPTED
