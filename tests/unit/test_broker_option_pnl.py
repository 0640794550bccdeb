"""Options in the brokers' account views (issue 13): an option position is keyed by the node's OCC
symbol (Schwab's padded symbol and TWS's padded localSymbol unpadded), its prices per share (TWS's
averageCost per contract over the multiplier; Schwab's marketValue in dollars over quantity x
multiplier), so `compare_pnl` sets it beside the node's PnL at the multiplier on both sides.
Each broker's answer is a trust boundary: fuzzed with hypothesis."""

from __future__ import annotations

import datetime as dt
import math

from hypothesis import given, settings, strategies as st
from ib_async import Contract, Option, Order, OrderStatus, PortfolioItem, Position, Stock, Trade

import pytest
from adapters.brokers.ibkr import parsing as ibkr
from adapters.brokers.schwab import parsing as schwab
from node.instruments import OCC_SYMBOL, Multipliers
from node.messages import OrderType, Side, TimeInForce
from node.pnl import compare_pnl
from node.reconcile import BrokerPnl, DiscrepancyKind as K, Fill, Opening, is_finite_pnl

OCC = "AAPL250117C00150000"
PADDED = "AAPL  250117C00150000"


def tws_option(local: str = PADDED, multiplier: str = "100") -> Option:
    c = Option("AAPL", "20250117", 150.0, "C", "SMART", multiplier, "USD")
    c.secType, c.localSymbol = "OPT", local
    return c


def bought_two_at(px: float, fee: float = 0.0) -> list[Fill]:
    return [Fill("e1", "NAE-1", "s1", OCC, Side.BUY, 2.0, px, 1, fee)]


# ---------------------------------------------------------------- IBKR


def test_tws_option_portfolio_line_is_per_share_under_the_nodes_symbol_and_no_drift():
    # bought 2 at 3.04 with 2.00 commission: TWS's averageCost per contract, commission in it
    item = PortfolioItem(tws_option(), 2.0, 3.5, 700.0, 305.0, 90.0, 0.0, "DU1")
    pnl = ibkr.pnl_of([item])
    assert pnl == {OCC: BrokerPnl(qty=2.0, mark=3.5, avg_cost=3.05, unrealised=90.0, realised=0.0)}
    assert compare_pnl(bought_two_at(3.04, 2.0), Opening(), pnl, 0.01) == []  # 92 unrealised - 2 fees
    # the node at the wrong multiplier (a contract as one share) is a drift
    wrong = Multipliers(option_multiplier=1.0)
    assert [d.kind for d in compare_pnl(bought_two_at(3.04, 2.0), Opening(), pnl, 0.01, mult=wrong)] == [K.PNL_DRIFT]


def test_tws_option_book_positions_fills_and_pnl_under_one_symbol():
    c = tws_option()
    item = PortfolioItem(c, 2.0, 3.5, 700.0, 305.0, 90.0, 0.0, "DU1")
    book = ibkr.account_book([], [Position("DU1", c, 2.0, 305.0)], {}, {}, 0, 0, [], [item])
    assert book.positions == {OCC: 2.0} and list(book.pnl) == [OCC]


def test_tws_option_multiplier_is_the_contracts_own_else_the_nodes():
    # a mini option (10): the cost per contract over 10
    item = PortfolioItem(tws_option(multiplier="10"), 2.0, 3.5, 70.0, 30.5, 9.0, 0.0, "DU1")
    assert ibkr.pnl_of([item])[OCC].avg_cost == pytest.approx(3.05)
    blank = PortfolioItem(tws_option(multiplier=""), 2.0, 3.5, 700.0, 305.0, 90.0, 0.0, "DU1")
    assert ibkr.pnl_of([blank])[OCC].avg_cost == pytest.approx(3.05)
    assert ibkr.pnl_of([blank], Multipliers(option_multiplier=50.0))[OCC].avg_cost == pytest.approx(6.1)


def test_tws_symbol_of_a_contract():
    assert ibkr.symbol_of(tws_option()) == OCC
    assert ibkr.symbol_of(tws_option(local="")) == OCC  # built from its fields
    put = Option("SPY", "20261218", 612.5, "PUT", "SMART", "100", "USD")
    put.secType = "OPT"
    assert ibkr.symbol_of(put) == "SPY261218P00612500"
    aapl = Stock("AAPL", "SMART", "USD")
    aapl.secType = "STK"
    assert ibkr.symbol_of(aapl) == "AAPL"
    odd = Option("AAPL", "202501", 150.0, "C", "SMART")  # a month, no day: not an OCC symbol
    odd.secType = "OPT"
    assert ibkr.symbol_of(odd) == "AAPL"


ROOTS = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=5)
STRIKES = st.integers(1, 99_999_999)
DATES = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2099, 12, 31))


@settings(max_examples=300, deadline=None)
@given(ROOTS, DATES, st.sampled_from("CP"), STRIKES, st.booleans())
def test_tws_option_symbol_round_trips_through_the_contract(root, day, right, strike, local):
    symbol = "%s%s%s%08d" % (root, day.strftime("%y%m%d"), right, strike)
    c = ibkr.contract_of(symbol)
    c.secType = "OPT"
    c.localSymbol = "%-6s%s%s%08d" % (root, day.strftime("%y%m%d"), right, strike) if local else ""
    assert ibkr.symbol_of(c) == symbol


FIELD = st.text(max_size=12) | st.floats().map(str) | st.integers().map(str)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["OPT", "STK", "FUT", ""]), FIELD, FIELD, FIELD, FIELD, FIELD,
       st.lists(st.floats() | st.sampled_from([1.7976931348623157e308]), min_size=5, max_size=5))
def test_any_tws_portfolio_line_reads_to_finite_values_or_nothing(sec, local, expiry, right, strike, multiplier, xs):
    c = Contract(secType=sec, symbol="AAPL", localSymbol=local, lastTradeDateOrContractMonth=expiry, right=right,
                 multiplier=multiplier)
    try:
        c.strike = float(strike)
    except ValueError:
        c.strike = 0.0
    pnl = ibkr.pnl_of([PortfolioItem(c, xs[0], xs[1], 0.0, xs[2], xs[3], xs[4], "DU1")])
    assert all(isinstance(s, str) and s for s in pnl)
    assert all(is_finite_pnl(p) and all(abs(x) < 1e300 for x in (p.mark, p.unrealised, p.realised))
               for p in pnl.values())
    assert isinstance(ibkr.symbol_of(c), str)


def test_tws_open_order_as_the_nodes_intent():
    order = Order(action="SELL", totalQuantity=3.0, orderType="LMT", lmtPrice=2.5, tif="GTC", orderRef="NAE-x-1")
    trade = Trade(tws_option(), order, OrderStatus(status="Submitted"), [], [])
    it = ibkr.intent_of(trade)
    assert (it.client_order_id, it.symbol, it.side, it.order_type, it.quantity, it.limit_price, it.time_in_force) == (
        "NAE-x-1", OCC, Side.SELL, OrderType.LIMIT, 3.0, 2.5, TimeInForce.GTC)
    assert ibkr.intent_of(Trade(tws_option(), Order(action="BUY", totalQuantity=1.0), OrderStatus(), [], [])) is None
    stop = Order(action="BUY", totalQuantity=1.0, orderType="STP", auxPrice=9.0, orderRef="r", tif="OPG")
    it = ibkr.intent_of(Trade(Stock("AAPL", "SMART", "USD"), stop, OrderStatus(), [], []))
    assert (it.order_type, it.stop_price, it.limit_price, it.time_in_force) == (OrderType.STOP, 9.0, None,
                                                                               TimeInForce.DAY)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=8), st.floats() | st.sampled_from([1.7976931348623157e308]), st.text(max_size=8),
       st.floats() | st.sampled_from([1.7976931348623157e308]), st.floats(), st.text(max_size=5),
       st.text(max_size=5))
def test_any_tws_open_order_reads_to_an_intent_or_nothing(ref, qty, otype, lmt, aux, tif, action):
    order = Order(action=action, totalQuantity=qty, orderType=otype, lmtPrice=lmt, auxPrice=aux, tif=tif, orderRef=ref)
    it = ibkr.intent_of(Trade(Stock("AAPL", "SMART", "USD"), order, OrderStatus(), [], []))
    if it is not None:
        assert it.client_order_id == ref and math.isfinite(it.quantity) and it.quantity > 0
        assert all(p is None or (math.isfinite(p) and p > 0) for p in (it.limit_price, it.stop_price))


# ---------------------------------------------------------------- Schwab


def schwab_option(**fields) -> dict:
    instrument = {"symbol": PADDED, "assetType": "OPTION", **fields.pop("instrument", {})}
    return {"securitiesAccount": {"positions": [{"instrument": instrument, "longQuantity": 2.0, "shortQuantity": 0.0,
                                                 "averagePrice": 3.0, "marketValue": 700.0,
                                                 "longOpenProfitLoss": 100.0, **fields}]}}


def test_schwab_option_position_is_per_share_under_the_nodes_symbol_and_no_drift():
    pnl = schwab.pnl_of(schwab_option())
    assert pnl == {OCC: BrokerPnl(qty=2.0, mark=3.5, avg_cost=3.0, unrealised=100.0)}
    assert compare_pnl(bought_two_at(3.0), Opening(), pnl, 0.01) == []
    assert [d.kind for d in compare_pnl(bought_two_at(3.1), Opening(), pnl, 0.01)] == [K.PNL_DRIFT]
    assert schwab.positions_of(schwab_option()) == {OCC: 2.0}


def test_schwab_option_short_and_its_own_multiplier():
    short = schwab_option(longQuantity=0.0, shortQuantity=1.0, marketValue=-350.0, longOpenProfitLoss=None,
                          shortOpenProfitLoss=-50.0)
    assert schwab.pnl_of(short)[OCC] == BrokerPnl(qty=-1.0, mark=3.5, avg_cost=3.0, unrealised=-50.0)
    mini = schwab_option(instrument={"optionMultiplier": 10}, marketValue=70.0)
    assert schwab.pnl_of(mini)[OCC].mark == pytest.approx(3.5)
    bad = schwab_option(instrument={"optionMultiplier": "x"})
    assert schwab.pnl_of(bad)[OCC].mark == pytest.approx(3.5)  # the node's 100
    assert schwab.pnl_of(schwab_option(), Multipliers(option_multiplier=50.0))[OCC].mark == pytest.approx(7.0)


JSON = st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries(
    {"instrument": st.fixed_dictionaries({"symbol": st.sampled_from([PADDED, OCC, "AAPL"]) | st.text(max_size=22)},
                                         optional={"optionMultiplier": JSON, "assetType": JSON})},
    optional={k: JSON for k in ("longQuantity", "shortQuantity", "averagePrice", "marketValue", "longOpenProfitLoss",
                                "shortOpenProfitLoss")}), max_size=4))
def test_any_schwab_option_position_reads_to_finite_values_or_nothing(positions):
    pnl = schwab.pnl_of({"securitiesAccount": {"positions": positions}})
    assert all(" " not in s for s in pnl if OCC_SYMBOL.match(s))  # the node's spelling
    assert all(is_finite_pnl(p) for p in pnl.values())
