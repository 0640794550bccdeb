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


def test_schwab_account_book_names_the_nodes_orders_and_the_others():
    ours = {"order": 9, "status": "FILLED", "quantity": 5, "filledQuantity": 5, "orderType": "MARKET",
            "enteredTime": "2026-11-30T14:30:00+0000",
            "orderLegCollection": [{"instruction": "BUY", "instrument": {"symbol": "AAPL"}}],
            "orderActivityCollection": [{"activityType": "EXECUTION", "activityId": 3, "executionLegs": [
                {"quantity": 5, "price": 10.0, "time": "2026-11-30T14:30:01+0000"}]}]}
    ours["orderId"] = ours.pop("order")
    theirs = dict(ours, orderId=10, status="WORKING", filledQuantity=0, remainingQuantity=5,
                  orderActivityCollection=[])
    account = {"securitiesAccount": {"positions": [{"instrument": {"symbol": "AAPL"}, "longQuantity": 5}],
                                     "currentBalances": {"cashBalance": 950.0}}}
    book, unreadable = sw.account_book([ours, theirs, {"garbage": 1}], account, {"9": ("NAE-a-0", "s1")},
                                       fills_since_ns=1, as_of_ns=2)
    assert unreadable == 1 and book.positions == {"AAPL": 5.0} and book.cash == 950.0
    assert [(o.client_order_id, o.state, o.cum_qty, o.leaves_qty, o.strategy_id) for o in book.orders] == [
        ("NAE-a-0", ExecKind.FILL, 5.0, 0.0, "s1"), ("SCHWAB-10", ExecKind.NEW, 0.0, 5.0, "")]
    f = book.fills[0]
    assert (f.exec_id, f.client_order_id, f.strategy_id, f.qty, f.px) == ("9-3-0", "NAE-a-0", "s1", 5.0, 10.0)
    assert f.ts_ns == sw.iso_ns("2026-11-30T14:30:01+0000") > 0 and (book.fills_since_ns, book.as_of_ns) == (1, 2)


@settings(max_examples=200, deadline=None)
@given(st.lists(_json, max_size=4), _json)
def test_any_schwab_account_answer_is_a_book_never_raised(orders, account):
    book, unreadable = sw.account_book(orders, account, {}, 0, 0)
    assert unreadable + len(book.orders) == len(orders)


def _activity(*entries) -> dict:
    return {"service": "ACCT_ACTIVITY", "timestamp": 1, "command": "SUBS", "content": list(entries)}


def test_account_activity_names_the_orders_it_is_about():
    import json

    created = {"seq": 1, "key": "k", "ACCOUNT": "1", "MESSAGE_TYPE": "OrderCreated",
               "MESSAGE_DATA": json.dumps({"SchwabOrderID": "1001", "BaseEvent": {"EventType": "OrderCreated"}})}
    numbered = {"1": "1", "2": "ExecutionCreated", "3": {"SchwabOrderID": 1002}}  # not relabelled; id an int
    subscribed = {"MESSAGE_TYPE": "SUBSCRIBED", "MESSAGE_DATA": ""}
    error = {"MESSAGE_TYPE": "ERROR", "MESSAGE_DATA": "Account activity is not available"}
    assert sw.activity_order_ids(_activity(created, numbered, subscribed)) == (["1001", "1002"], 0)
    assert sw.activity_order_ids(_activity(error, {"3": {"SchwabOrderID": "-5"}}, 7)) == ([], 3)
    assert sw.activity_order_ids({"content": "x"}) == ([], 1) and sw.activity_order_ids(None) == ([], 1)


@given(_json)
@settings(max_examples=300)
def test_any_account_activity_is_order_ids_or_counted_never_raised(obj):
    for data in (obj, _activity(obj), _activity({"MESSAGE_TYPE": "X", "MESSAGE_DATA": obj}),
                 _activity({"2": "X", "3": msgspec.json.encode(obj).decode()})):
        ids, bad = sw.activity_order_ids(data)
        assert bad >= 0 and all(i.isascii() and i.isdigit() and len(i) <= 20 for i in ids)
