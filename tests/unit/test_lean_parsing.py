"""The LEAN bridge's pure parts: status -> kind, intents -> commands, the order book's dedupe,
timeouts and restart handling (no sockets)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adapters.engines.lean import protocol as p
from adapters.engines.lean.book import LeanOrderBook
from adapters.engines.lean.parsing import LEAN_RESTARTED, kind_for_status, place_command, reject_reason, snapshot_kind
from node.messages import ExecKind, OrderIntent, OrderType, Side

MS = 1_000_000
S1, S2 = "session-one", "session-two"


def intent(coid: str = "NAE-a-0", side: Side = Side.BUY, otype: OrderType = OrderType.MARKET, qty: float | None = 10.0,
           notional: float | None = None, limit: float | None = None, stop: float | None = None) -> OrderIntent:
    return OrderIntent(client_order_id=coid, signal_id="a", request_id="r", strategy_id="s", symbol="AAPL", side=side,
                       order_type=otype, quantity=qty, notional=notional, limit_price=limit, stop_price=stop)


def event(status: str, event_id: int, coid: str = "NAE-a-0", fill: float = 0.0, px: float = 0.0,
          order_id: int = 1, session: str = S1, qty: float = 10.0, message: str = "") -> p.OrderEvent:
    return p.OrderEvent(session_id=session, order_id=order_id, event_id=event_id, client_order_id=coid, symbol="AAPL",
                        status=status, fill_quantity=fill, fill_price=px, order_quantity=qty, message=message)


def book() -> LeanOrderBook:
    return LeanOrderBook(ack_timeout_ns=100 * MS, cancel_timeout_ns=50 * MS)


@pytest.mark.parametrize(
    "status, kind",
    [
        (p.SUBMITTED, ExecKind.NEW),
        (p.PARTIALLY_FILLED, ExecKind.PARTIAL_FILL),
        (p.FILLED, ExecKind.FILL),
        (p.CANCELED, ExecKind.CANCELED),
        (p.INVALID, ExecKind.REJECTED),
        (p.NEW, None),
        (p.CANCEL_PENDING, None),
        (p.UPDATE_SUBMITTED, None),
        ("None", None),
        (p.UNKNOWN, None),
    ],
)
def test_kind_for_status(status, kind):
    assert kind_for_status(status) == kind


@pytest.mark.parametrize(
    "status, filled, kind",
    [(p.SUBMITTED, 0.0, ExecKind.NEW), (p.CANCEL_PENDING, 3.0, ExecKind.PARTIAL_FILL), (p.UNKNOWN, 0.0, ExecKind.UNKNOWN),
     ("Garbage", 0.0, ExecKind.UNKNOWN), (p.FILLED, 10.0, ExecKind.FILL)],
)
def test_snapshot_kind_never_invents_a_final_state(status, filled, kind):
    assert snapshot_kind(status, filled) == kind


@pytest.mark.parametrize(
    "it, expected",
    [
        (intent(), dict(order_type=p.MARKET, quantity=10.0, notional=0.0, limit_price=0.0, stop_price=0.0)),
        (intent(side=Side.SELL), dict(order_type=p.MARKET, quantity=-10.0)),
        (intent(otype=OrderType.LIMIT, limit=99.5), dict(order_type=p.LIMIT, limit_price=99.5, stop_price=0.0)),
        (intent(otype=OrderType.STOP, stop=90.0), dict(order_type=p.STOP_MARKET, stop_price=90.0, limit_price=0.0)),
        (intent(otype=OrderType.STOP_LIMIT, limit=91.0, stop=90.0),
         dict(order_type=p.STOP_LIMIT, limit_price=91.0, stop_price=90.0)),
        (intent(side=Side.SELL, qty=None, notional=5_000.0), dict(quantity=0.0, notional=-5_000.0)),
    ],
)
def test_place_command(it, expected):
    cmd = place_command(it)
    assert cmd.client_order_id == it.client_order_id and cmd.symbol == "AAPL"
    for name, value in expected.items():
        assert getattr(cmd, name) == value, name


def test_commands_round_trip_as_json_with_a_type_field():
    frame = p.encode(place_command(intent()))
    assert b'"type":"place"' in frame
    assert p.command_decoder.decode(frame) == place_command(intent())
    ev = event(p.FILLED, 3, fill=10.0, px=101.0)
    assert p.lean_decoder.decode(p.encode(ev)) == ev


def test_reject_reason_keeps_the_code_first_and_leans_words():
    assert reject_reason("Brokerage failed:\n  no  shortable shares") == "VENUE_REJECT: Brokerage failed: no shortable shares"
    assert reject_reason("") == "VENUE_REJECT"
    assert len(reject_reason("x" * 1000)) < 230


def test_submitted_partial_filled_sequence():
    b = book()
    b.submitted(intent(), 0)
    new = b.on_event(event(p.SUBMITTED, 1), 1)
    part = b.on_event(event(p.PARTIALLY_FILLED, 2, fill=4.0, px=100.0), 2)
    fill = b.on_event(event(p.FILLED, 3, fill=6.0, px=101.0), 3)
    assert [r.kind for r in (new, part, fill)] == [ExecKind.NEW, ExecKind.PARTIAL_FILL, ExecKind.FILL]
    assert (part.cum_qty, part.leaves_qty, part.last_qty) == (4.0, 6.0, 4.0)
    assert (fill.cum_qty, fill.leaves_qty) == (10.0, 0.0)
    assert fill.avg_px == pytest.approx(100.6)
    assert part.exec_id != fill.exec_id and fill.exec_id == S1 + ":1:3"
    assert b.expire(10_000 * MS) == []  # answered: no timeout


def test_sell_fills_come_in_negative_and_go_out_positive():
    b = book()
    b.submitted(intent(side=Side.SELL), 0)
    rep = b.on_event(event(p.FILLED, 2, fill=-10.0, px=50.0, qty=-10.0), 1)
    assert rep.kind is ExecKind.FILL and rep.last_qty == 10.0 and rep.side is Side.SELL


@pytest.mark.parametrize(
    "second",
    [
        event(p.FILLED, 4, fill=10.0, px=100.0),  # LEAN numbers the replayed fill as a new event
        event(p.FILLED, 3, fill=10.0, px=100.0),  # the very same frame again
        event(p.PARTIALLY_FILLED, 5, fill=1.0, px=100.0),  # anything filling a finished order
    ],
)
def test_duplicate_fill_after_filled_is_dropped(second):
    b = book()
    b.submitted(intent(), 0)
    b.on_event(event(p.SUBMITTED, 1), 1)
    assert b.on_event(event(p.FILLED, 3, fill=10.0, px=100.0), 2).kind is ExecKind.FILL
    assert b.on_event(second, 3) is None
    assert b.duplicate_fills + b.duplicate_events == 1
    assert len(b.fills) == 1


def test_overfill_is_dropped_as_duplicate():
    b = book()
    b.submitted(intent(), 0)
    assert b.on_event(event(p.PARTIALLY_FILLED, 2, fill=6.0, px=100.0), 1) is not None
    assert b.on_event(event(p.PARTIALLY_FILLED, 3, fill=6.0, px=100.0), 2) is None
    assert b.duplicate_fills == 1


def test_invalid_is_rejected_with_leans_message():
    b = book()
    b.submitted(intent(), 0)
    rep = b.on_event(event(p.INVALID, 1, order_id=-1, message="Order Error: insufficient buying power"), 1)
    assert rep.kind is ExecKind.REJECTED
    assert rep.reason == "VENUE_REJECT: Order Error: insufficient buying power"
    assert b.on_event(event(p.CANCELED, 2), 2) is None  # finished: later words change nothing


def test_unanswered_submit_becomes_unknown_never_rejected_and_lean_resolves_it():
    b = book()
    b.submitted(intent(), 0)
    assert b.next_due_ns() == 100 * MS
    assert b.expire(99 * MS) == []
    (rep,) = b.expire(100 * MS)
    assert rep.kind is ExecKind.UNKNOWN and rep.reason == "TIMEOUT"
    assert b.expire(1_000 * MS) == [] and b.next_due_ns() is None
    late = b.on_event(event(p.FILLED, 2, fill=10.0, px=100.0), 2_000 * MS)
    assert late.kind is ExecKind.FILL  # LEAN's word takes it out of UNKNOWN


def test_unanswered_cancel_becomes_unknown():
    b = book()
    b.submitted(intent(otype=OrderType.LIMIT, limit=99.0), 0)
    b.on_event(event(p.SUBMITTED, 1), 1)
    assert b.cancel_sent("NAE-a-0", 10 * MS)
    (rep,) = b.expire(60 * MS)
    assert rep.kind is ExecKind.UNKNOWN
    assert b.on_event(event(p.CANCELED, 2), 70 * MS).kind is ExecKind.CANCELED


def test_not_sent_is_rejected_venue_unavailable():
    rep = book().not_sent(intent(), 5, "no LEAN algorithm connected")
    assert rep.kind is ExecKind.REJECTED and rep.reason.startswith("VENUE_UNAVAILABLE")


def test_restart_status_relinks_new_order_ids_and_marks_vanished_orders_unknown():
    b = book()
    for coid in ("NAE-open-0", "NAE-gone-0"):
        b.submitted(intent(coid, otype=OrderType.LIMIT, limit=99.0), 0)
        b.on_event(event(p.SUBMITTED, 1, coid=coid, order_id=1 if coid == "NAE-open-0" else 2), 1)
    status = p.StatusReport(session_id=S2, query_id=1, orders=[
        p.OrderState(client_order_id="NAE-open-0", order_id=7, symbol="AAPL", status=p.SUBMITTED, quantity=10.0),
    ])
    (rep,) = b.on_status(status, restarted=True, now_ns=5)
    assert rep.client_order_id == "NAE-gone-0" and rep.kind is ExecKind.UNKNOWN and rep.reason == LEAN_RESTARTED
    # an event from the new session naming only LEAN's new order id reaches the right order
    ev = p.OrderEvent(session_id=S2, order_id=7, event_id=1, client_order_id="", symbol="AAPL", status=p.FILLED,
                      fill_quantity=10.0, fill_price=98.0, order_quantity=10.0)
    fill = b.on_event(ev, 6)
    assert fill.client_order_id == "NAE-open-0" and fill.kind is ExecKind.FILL


def test_status_unknown_entry_from_the_object_store_is_unknown():
    b = book()
    b.submitted(intent(), 0)
    b.on_event(event(p.SUBMITTED, 1), 1)
    status = p.StatusReport(session_id=S2, query_id=1, orders=[
        p.OrderState(client_order_id="NAE-a-0", order_id=-1, symbol="", status=p.UNKNOWN, quantity=0.0),
    ])
    (rep,) = b.on_status(status, restarted=True, now_ns=2)
    assert rep.kind is ExecKind.UNKNOWN
    assert {s.client_order_id: s.kind for s in b.snapshot()} == {"NAE-a-0": ExecKind.UNKNOWN}


def test_event_for_an_order_the_bridge_never_sent_is_an_orphan():
    b = book()
    assert b.on_event(event(p.FILLED, 1, coid="NAE-manual-0", fill=1.0, px=1.0), 1) is None
    assert b.orphan_events == 1


# ---------------------------------------------------------------- the C# mirror spells the protocol the same way

_CS = Path(__file__).resolve().parents[2] / "adapters" / "engines" / "lean" / "NaeBridgeAlgorithm.cs"
_MIRROR = {
    "PlaceOrderCommand": p.PlaceOrder,
    "CancelOrderCommand": p.CancelOrder,
    "StatusQueryCommand": p.StatusQuery,
    "HelloMessage": p.Hello,
    "HeartbeatMessage": p.Heartbeat,
    "OrderEventMessage": p.OrderEvent,
    "OrderStateEntry": p.OrderState,
    "StatusReportMessage": p.StatusReport,
}


def _cs_fields() -> dict[str, list[str]]:
    text = _CS.read_text()
    out = {}
    for match in re.finditer(r"public class (\w+)\s*\{(.*?)\n    \}", text, re.S):
        out[match.group(1)] = re.findall(r'\[JsonProperty\("(\w+)"\)\]', match.group(2))
    return out


@pytest.mark.parametrize("cs_class, struct", list(_MIRROR.items()))
def test_csharp_mirror_has_exactly_the_protocol_fields(cs_class, struct):
    fields = _cs_fields()[cs_class]
    expected = list(struct.__struct_fields__)
    if cs_class.endswith("Message"):  # events carry their tag as a field in C#
        expected = ["type"] + expected
        assert re.search(r'class ' + cs_class + r'\s*\{\s*\[JsonProperty\("type"\)\] public string Type = "'
                         + struct.__struct_config__.tag + '"', _CS.read_text())
    assert fields == expected


def test_csharp_dispatches_every_command_tag_and_uses_the_same_store_key():
    text = _CS.read_text()
    for struct in (p.PlaceOrder, p.CancelOrder, p.StatusQuery):
        assert 'type == "' + struct.__struct_config__.tag + '"' in text
    from adapters.engines.lean.fake_lean import STORE_KEY

    assert 'StoreKey = "' + STORE_KEY + '"' in text
    assert 'UnknownStatus = "' + p.UNKNOWN + '"' in text
    for lean_type in (p.MARKET, p.LIMIT, p.STOP_MARKET, p.STOP_LIMIT):
        assert 'case "' + lean_type + '":' in text
