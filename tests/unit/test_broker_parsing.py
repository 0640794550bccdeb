"""The pure venue <-> node mappings of the Schwab and IBKR adapters: time in force, OCC options,
order ids from Location, and Schwab's answers fuzzed (whatever comes back, never an exception)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.brokers.ibkr import parsing as ib
from adapters.brokers.schwab import parsing as sw
from node.messages import ExecKind, OrderIntent, OrderType, Side, TimeInForce
from node.reasons import Reason

BASE = OrderIntent(client_order_id="c", signal_id="s", request_id="r", strategy_id="t", symbol="AAPL", side=Side.BUY,
                   order_type=OrderType.LIMIT, quantity=10.0, limit_price=101.5)


@pytest.mark.parametrize("tif,duration", [(TimeInForce.DAY, "DAY"), (TimeInForce.GTC, "GOOD_TILL_CANCEL"),
                                          (TimeInForce.IOC, "IMMEDIATE_OR_CANCEL"), (TimeInForce.FOK, "FILL_OR_KILL")])
def test_time_in_force_reaches_both_brokers(tif, duration):
    it = msgspec.structs.replace(BASE, time_in_force=tif)
    spec, _ = sw.order_spec(it)
    assert spec["duration"] == duration and spec["price"] == "101.50"
    order, _ = ib.order_of(it)
    assert order.tif == tif.value and order.orderRef == "c" and order.lmtPrice == 101.5


def test_occ_option_symbols():
    it = msgspec.structs.replace(BASE, symbol="AAPL250117C00150000", side=Side.SELL)
    spec, _ = sw.order_spec(it)
    leg = spec["orderLegCollection"][0]
    assert leg["instrument"] == {"symbol": "AAPL  250117C00150000", "assetType": "OPTION"}
    assert leg["instruction"] == "SELL_TO_CLOSE"
    c = ib.contract_of("AAPL250117C00150000")
    assert (c.secType, c.symbol, c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier) == (
        "OPT", "AAPL", "20250117", 150.0, "C", "100")
    # a notional on an option is sized in contracts of 100
    spec, _ = sw.order_spec(msgspec.structs.replace(it, quantity=None, notional=30_450.0, limit_price=1.5))
    assert spec["orderLegCollection"][0]["quantity"] == 203


@pytest.mark.parametrize("changes,reason", [({"quantity": 1.5}, Reason.SIZE_SPEC), ({"limit_price": None}, Reason.PRICE_REQUIRED),
                                            ({"quantity": None, "notional": 100.0, "limit_price": None}, Reason.PRICE_REQUIRED)])
def test_unsendable_orders_have_reasons(changes, reason):
    assert sw.order_spec(msgspec.structs.replace(BASE, **changes)) == (None, reason)


@pytest.mark.parametrize("loc,oid", [("https://api.schwabapi.com/trader/v1/accounts/H/orders/1234", "1234"),
                                     ("", ""), (None, ""), ("https://x/orders/abc", ""), ("/orders/77/", "77")])
def test_order_id_from_location(loc, oid):
    assert sw.order_id_from_location(loc) == oid


def test_read_order_maps_status_and_fills():
    obj = {"orderId": 9, "status": "REPLACED", "quantity": 5, "filledQuantity": 2, "orderType": "LIMIT",
           "orderLegCollection": [{"instruction": "BUY", "instrument": {"symbol": "AAPL"}}],
           "orderActivityCollection": [{"activityType": "EXECUTION", "activityId": 3,
                                        "executionLegs": [{"quantity": 2, "price": 10.5}]}]}
    o = sw.read_order(obj)
    assert (o.kind, o.reason, o.order_id) == (ExecKind.CANCELED, Reason.REPLACED, "9")
    assert [(f.exec_id, f.qty, f.price) for f in o.fills] == [("9-3-0", 2.0, 10.5)]


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                         st.sampled_from(["orderId", "status", "orderLegCollection", "instrument", "symbol",
                                          "instruction", "orderActivityCollection", "activityType", "executionLegs",
                                          "quantity", "price", "securitiesAccount", "positions", "currentBalances"]),
                         kids, max_size=6), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_any_schwab_answer_is_read_or_refused_never_raised(obj):
    sw.read_order(obj)
    sw.positions_of(obj)
    sw.balances_of(obj)
