"""Hostile input at the gate (issue 10): every bad frame answered with a reason, nothing half-admitted."""

import math
import time

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from node.config import IntakeConfig, SigningConfig
from node.intake import SignalGate
from node.messages import ExecKind, SignedSignal, Status, encode, event_topic, topic_prefixes
from node.reasons import Reason
from node.risk import PreTradeRisk
from node.risk.config import RiskLimits, throughput_limits
from node.signing import make_envelope

SECRET = b"s3cret"
NOW_S = 1_800_000_000.0


def gate(signing: dict | None = None, intake: dict | None = None, risk: RiskLimits | None = None) -> SignalGate:
    signing_cfg = SigningConfig(keys={"k": SECRET.decode(), "intruder": "other"}, **(signing or {}))
    limits = risk or throughput_limits()
    prices = {"AAPL": 200.0, "MSFT": 400.0}
    return SignalGate(signing_cfg, IntakeConfig(**(intake or {})), PreTradeRisk(limits, list(prices), prices, 1e9))


def good(**over):
    d = {"request_id": "r-" + str(time.perf_counter_ns()), "strategy_id": "optimus.momentum",
         "timestamp": NOW_S, "symbol": "AAPL", "action": "BUY", "quantity": 10.0}
    d.update(over)
    return {k: v for k, v in d.items() if v is not None}


def frame(payload_obj, key="k", secret=SECRET, ts_ns=None, fmt="msgpack"):
    payload = payload_obj if isinstance(payload_obj, bytes) else (
        msgspec.json.encode(payload_obj) if fmt == "json" else msgspec.msgpack.encode(payload_obj))
    env = make_envelope(key, secret, payload, ts_ns or int(NOW_S * 1e9))
    return encode(msgspec.structs.replace(env, fmt=fmt))


def admit(g, fr, now_s=NOW_S):
    return g.admit(fr, int(now_s * 1e9))


def assert_next_valid_accepted(g, now_s=NOW_S):
    v = admit(g, frame(good(timestamp=now_s), ts_ns=int(now_s * 1e9)), now_s)
    assert v.reply.status is Status.ACCEPTED, v.reply


# ---------------------------------------------------------------- item 1: the gate is total


def test_envelope_with_a_field_nested_30000_deep_is_refused_not_raised():
    env = {"type": "sig", "key_id": "k", "ts_ns": 1, "payload": b"", "x": []}
    raw = msgspec.msgpack.encode(env)[:-1] + b"\x91" * 30_000 + b"\x90"
    g = gate()
    v = admit(g, raw)
    assert v.reply.status is Status.REJECTED and v.reply.reasons == [Reason.MALFORMED_FRAME]
    assert_next_valid_accepted(g)


@pytest.mark.parametrize("key, secret", [("k", SECRET), ("nobody", b"x")])
def test_json_body_nested_30000_deep_is_refused_with_any_key(key, secret):
    g = gate()
    v = admit(g, frame(b"[" * 30_000 + b"]" * 30_000, key=key, secret=secret, fmt="json"))
    assert v.reply.status is Status.REJECTED and v.reply.reasons
    assert_next_valid_accepted(g)


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00", "0001-01-01T00:00:00+14:00"])
def test_unrepresentable_timestamps_are_refused_with_a_reason(stamp):
    g = gate()
    v = admit(g, frame(good(timestamp=stamp), fmt="json"))
    assert v.reply.status is Status.REJECTED
    assert v.reply.reasons[0] in (Reason.TIMESTAMP_INVALID, Reason.STALE_TIMESTAMP)
    assert_next_valid_accepted(g)


def test_an_exception_inside_risk_is_a_reply_and_leaves_nothing_reserved():
    g = gate()

    def boom(signal, now_ns):
        raise ZeroDivisionError("kernel")

    real = g.risk.check_commit
    g.risk.check_commit = boom  # an unforeseen fault deep in the judgement
    payload = good(request_id="same")
    v = admit(g, frame(payload))
    assert v.reply.status is Status.REJECTED and v.reply.reasons == [Reason.INTERNAL]
    assert g.counts["internal_errors"] == 1
    g.risk.check_commit = real
    v = admit(g, frame(payload))  # nothing was remembered: the retry is judged afresh
    assert v.reply.status is Status.ACCEPTED and not v.reply.duplicate


# ---------------------------------------------------------------- item 2: control characters in ids


@pytest.mark.parametrize("field", ["strategy_id", "request_id", "model_id", "correlation_group"])
@pytest.mark.parametrize("char", ["\x00", "\x07", "\n", "\x7f", "\x85"])
def test_control_characters_in_ids_are_refused(field, char):
    g = gate()
    v = admit(g, frame(good(**{field: "a" + char + "b"})))
    assert v.reply.status is Status.REJECTED and v.reply.reasons == [Reason.INVALID_ID]
    assert "\x00" not in v.reply.request_id
    assert_next_valid_accepted(g)


# ---------------------------------------------------------------- item 3: timestamps on both sides


@pytest.mark.parametrize("stamp, reason", [
    (NOW_S + 3600, Reason.FUTURE_TIMESTAMP),
    ("9999-12-31T23:59:59Z", Reason.FUTURE_TIMESTAMP),
    (math.inf, Reason.TIMESTAMP_INVALID),
    (math.nan, Reason.TIMESTAMP_INVALID),
    (-math.inf, Reason.TIMESTAMP_INVALID),
])
def test_future_and_non_finite_timestamps_are_refused(stamp, reason):
    g = gate()
    fmt = "json" if isinstance(stamp, str) else "msgpack"
    v = admit(g, frame(good(timestamp=stamp), fmt=fmt))
    assert v.reply.status is Status.REJECTED and v.reply.reasons == [reason]


def test_one_future_signal_never_moves_the_watermark():
    g = gate(signing={"dedupe_max_entries": 3})
    admit(g, frame(good(timestamp=NOW_S + 3600)))  # refused, never remembered
    for k in range(10):  # the memory rolls over many times
        now = NOW_S + k
        v = admit(g, frame(good(timestamp=now), ts_ns=int(now * 1e9)), now)
        assert v.reply.status is Status.ACCEPTED, v.reply
        g.expire(int(now * 1e9))
    assert_next_valid_accepted(g, NOW_S + 10)


# ---------------------------------------------------------------- item 4: zero quantity, breakers


@pytest.mark.parametrize("over", [dict(quantity=None, notional=0.01), dict(quantity=0.00001),
                                  dict(quantity=None, notional=0.01, order_type="LIMIT", limit_price=150.0)])
def test_an_order_that_rounds_to_zero_shares_is_refused_at_the_gate(over):
    g = gate()
    v = admit(g, frame(good(**over)))
    assert v.reply.status is Status.REJECTED and v.reply.reasons == [Reason.ZERO_QUANTITY]


def test_one_strategys_venue_rejects_open_its_breaker_not_the_nodes():
    risk = PreTradeRisk(RiskLimits(), ["AAPL"], {"AAPL": 200.0}, 1e6)
    for k in range(12):
        risk.on_broker_reject("optimus.bad", 1_000 + k)
    states = risk.breaker_states()
    assert states["strategy:optimus.bad"]["state"] == "OPEN"
    assert states["execution"]["state"] == "CLOSED"


# ---------------------------------------------------------------- items 5, 6: universe and key binding


def test_a_key_trades_only_its_strategies():
    g = gate(signing={"key_strategies": {"k": ["optimus.*"], "intruder": ["lab.x"]}})
    v = admit(g, frame(good(), key="intruder", secret=b"other"))
    assert v.reply.reasons == [Reason.KEY_NOT_ALLOWED]
    assert admit(g, frame(good(strategy_id="lab.x"), key="intruder", secret=b"other")).reply.status is Status.ACCEPTED
    assert admit(g, frame(good(strategy_id="lab.y"), key="intruder", secret=b"other")).reply.reasons == [
        Reason.KEY_NOT_ALLOWED]
    assert_next_valid_accepted(g)


def test_new_strategies_and_symbols_are_bounded_and_refused_ones_take_no_slot():
    g = gate(intake={"max_strategies": 3, "max_symbols": 2, "max_correlation_groups": 2})
    for name in ("s0", "s1", "optimus.momentum"):
        assert admit(g, frame(good(strategy_id=name))).reply.status is Status.ACCEPTED
    book = g.risk.book
    before = (book.n_cols, book.n_symbols)
    for k in range(3, 200):
        v = admit(g, frame(good(strategy_id="s" + str(k))))
        assert v.reply.reasons == [Reason.UNKNOWN_STRATEGY]
    assert admit(g, frame(good(symbol="MSFT"))).reply.status is Status.ACCEPTED
    for k in range(100):
        assert admit(g, frame(good(symbol="Z" + str(k)))).reply.reasons == [Reason.UNKNOWN_SYMBOL]
    for k in range(100):
        v = admit(g, frame(good(correlation_group="g" + str(k))))
        assert v.reply.status is (Status.ACCEPTED if k < 2 else Status.REJECTED)
    assert (book.n_cols, book.n_symbols) == before and len(book.group_ids) == 2
    assert_next_valid_accepted(g)


def test_the_strategy_allow_list_refuses_others():
    g = gate(intake={"strategies": ["optimus.*", "lab.x"]})
    assert admit(g, frame(good(strategy_id="lab.y"))).reply.reasons == [Reason.UNKNOWN_STRATEGY]
    assert admit(g, frame(good(strategy_id="lab.x"))).reply.status is Status.ACCEPTED


def test_a_key_over_its_rate_is_refused_and_others_are_not():
    g = gate(intake={"key_rate_per_sec": 1.0, "key_burst": 5.0})
    replies = [admit(g, frame(good())).reply for _ in range(8)]
    assert [r.status for r in replies[:5]] == [Status.ACCEPTED] * 5
    assert all(r.reasons == [Reason.RATE_LIMITED] for r in replies[5:])
    other = admit(g, frame(good(), key="intruder", secret=b"other")).reply
    assert other.status is Status.ACCEPTED


# ---------------------------------------------------------------- item 7: exact topics


def test_a_subscriber_of_s_never_matches_the_topic_of_s_slash_evil():
    for kind in ExecKind:
        topic = event_topic(kind, "optimus.momentum/evil")
        assert not any(topic.startswith(p) for p in topic_prefixes("optimus.momentum"))
        assert any(event_topic(kind, "optimus.momentum").startswith(p) for p in topic_prefixes("optimus.momentum"))
        assert any(topic.startswith(p) for p in topic_prefixes(""))


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40), st.sampled_from(list(ExecKind)))
def test_topics_match_exactly_one_strategy(a, b, kind):
    matched = any(event_topic(kind, b).startswith(p) for p in topic_prefixes(a))
    assert matched == (a == b)


# ---------------------------------------------------------------- item 8: retries get the first answer


def test_a_resigned_retry_with_a_new_timestamp_gets_the_first_answer():
    g = gate()
    payload = good(request_id="retry-1")
    first = admit(g, frame(payload)).reply
    assert first.status is Status.ACCEPTED
    later = NOW_S + 1.5
    again = admit(g, frame(dict(payload, timestamp=later), ts_ns=int(later * 1e9)), later).reply
    assert again.status is Status.ACCEPTED and again.duplicate and again.signal_id == first.signal_id


def test_a_json_retry_of_a_msgpack_signal_gets_the_first_answer():
    g = gate()
    payload = good(request_id="retry-2")
    first = admit(g, frame(payload)).reply
    again = admit(g, frame(payload, fmt="json")).reply
    assert again.duplicate and again.signal_id == first.signal_id and again.status is Status.ACCEPTED


def test_other_content_under_the_same_request_id_is_still_a_replay():
    g = gate()
    admit(g, frame(good(request_id="retry-3")))
    assert admit(g, frame(good(request_id="retry-3", quantity=11.0))).reply.reasons == [Reason.REPLAY]


def test_the_same_signed_bytes_twice_get_the_first_answer():
    g = gate()
    fr = frame(good(request_id="retry-4"))
    first = admit(g, fr).reply
    again = admit(g, fr).reply
    assert again.duplicate and again.signal_id == first.signal_id


def test_the_envelope_type_round_trips():  # guards the helper above: fmt must reach the gate
    env = msgspec.msgpack.decode(frame(good(), fmt="json"), type=SignedSignal)
    assert env.fmt == "json"


def test_the_clients_dict_api_resending_a_signal_it_stamped_gets_the_first_answer():
    from node.client import prepare

    g = gate()
    signal = {"request_id": "dict-1", "strategy_id": "optimus.momentum", "symbol": "AAPL", "action": "BUY",
              "quantity": 10.0}
    replies = []
    for _ in range(2):  # each attempt is stamped anew by the client
        _, payload = prepare(signal)
        now = time.time()
        replies.append(g.admit(frame(payload, ts_ns=int(now * 1e9)), int(now * 1e9)).reply)
        time.sleep(0.002)
    assert replies[0].status is Status.ACCEPTED
    assert replies[1].status is Status.ACCEPTED and replies[1].duplicate
    assert replies[1].signal_id == replies[0].signal_id
