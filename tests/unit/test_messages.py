"""Messages: one definition, msgpack and JSON forms agree."""

import datetime as dt

import msgspec

from node.messages import (
    ExecKind,
    ExecutionReport,
    Reply,
    Signal,
    SignalAccepted,
    Status,
    SubmitOrder,
    accepted_decoder,
    broker_command_decoder,
    broker_event_decoder,
    encode,
    signal_decoder,
    signal_from_json,
    to_json,
)
from adapters.engines.native import intent_for

SIG = Signal(
    request_id="r1", strategy_id="s1", timestamp=1.7e9, symbol="AAPL", action="BUY_TO_OPEN",
    quantity=10.0, order_type="LIMIT", limit_price=230.5,
)


def test_signal_round_trips_in_msgpack_and_json():
    assert signal_decoder.decode(encode(SIG)) == SIG
    assert signal_from_json(to_json(SIG)) == SIG
    assert SIG.side == "BUY"


def test_signal_accepts_the_nae_json_payload_with_iso_timestamp():
    body = (
        b'{"request_id":"x","strategy_id":"s","timestamp":"2026-11-25T10:00:00Z","symbol":"MSFT",'
        b'"action":"SELL_TO_CLOSE","notional":5000,"risk_meta":{"max_slippage":0.01,"max_exposure":1e6,'
        b'"max_position_pct":0.1},"correlation_group":"tech","model_id":"m","confidence":0.7,"expected_pnl":12.5}'
    )
    sig = signal_from_json(body)
    assert sig.timestamp == dt.datetime(2026, 11, 25, 10, tzinfo=dt.timezone.utc)
    assert sig.side == "SELL" and sig.risk_meta.max_slippage == 0.01


def test_internal_messages_round_trip():
    acc = SignalAccepted("sid", 123, SIG)
    assert accepted_decoder.decode(encode(acc)) == acc
    cmd = SubmitOrder(3, "native", intent_for(acc))
    assert broker_command_decoder.decode(encode(cmd)) == cmd
    rep = ExecutionReport(kind=ExecKind.FILL, client_order_id="c", exec_id="e", cum_qty=1.0)
    assert broker_event_decoder.decode(encode(rep)) == rep


def test_json_form_is_an_object_with_field_names():
    rep = ExecutionReport(kind=ExecKind.PARTIAL_FILL, client_order_id="c", last_qty=5.0)
    obj = msgspec.json.decode(to_json(rep))
    assert obj["kind"] == "PARTIAL_FILL" and obj["last_qty"] == 5.0
    reply = msgspec.json.decode(to_json(Reply(status=Status.REJECTED, request_id="r", reasons=["MAX_QUANTITY"])))
    assert reply == {"status": "REJECTED", "request_id": "r", "signal_id": "", "reasons": ["MAX_QUANTITY"], "detail": "", "duplicate": False, "ts_ns": 0}
