"""An option fill's cash and PnL at its contract multiplier, on both sides: the node's (node/pnl.py,
node/reconcile.py, node/modes.py) and the paper venue's account; node/instruments.py is the one home
of the multiplier."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.paper.venue import PaperVenue
from node.config import PaperSymbol, PaperVenueConfig
from node.instruments import Multipliers
from node.messages import ExecKind, OrderIntent, OrderType, Side
from node.modes import SHADOW_SUFFIX, without_shadow
from node.pnl import FeeSchedule, compare_pnl, pnl_by_strategy_symbol
from node.reconcile import (BrokerBook, BrokerPnl, DiscrepancyKind, Fill, NodeBook, Opening, cash_of, diff_books,
                            fill_of_report, opening_of)

OPTION = "AAPL  250117C00150000"
T0 = 1_000_000_000_000_000_000
#: (symbol, multipliers, the multiplier they give it)
KINDS = [(OPTION, Multipliers(), 100.0), ("AAPL250117P00150000", Multipliers(), 100.0), ("AAPL", Multipliers(), 1.0),
         ("ESZ6", Multipliers(configured={"ESZ6": 50.0}), 50.0), (OPTION, Multipliers(option_multiplier=10.0), 10.0)]

prices = st.floats(0.01, 1_000.0)
qtys = st.floats(0.01, 1_000.0)
fees = st.floats(0.0, 10.0)


def round_trip(symbol: str, side: Side, qty: float, p_open: float, p_close: float, f_open: float,
               f_close: float) -> list[Fill]:
    back = Side.SELL if side is Side.BUY else Side.BUY
    return [Fill("e1", "c1", "st", symbol, side, qty, p_open, 1, f_open),
            Fill("e2", "c2", "st", symbol, back, qty, p_close, 2, f_close)]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KINDS), st.sampled_from([Side.BUY, Side.SELL]), qtys, prices, prices, fees, fees)
def test_a_round_trip_costs_its_fees_and_its_price_move_at_the_multiplier(kind, side, qty, p_open, p_close,
                                                                       f_open, f_close):
    """Cash after a round trip = -fees - price move x qty x multiplier (a long's move: open - close),
    and the realised PnL is the same figure."""
    symbol, mult, m = kind
    fills = round_trip(symbol, side, qty, p_open, p_close, f_open, f_close)
    sign = 1.0 if side is Side.BUY else -1.0
    expect = -(f_open + f_close) - sign * (p_open - p_close) * qty * m
    tol = 1e-9 * max(1.0, abs(expect), qty * (p_open + p_close) * m)
    assert math.isclose(cash_of(0.0, fills, mult), expect, abs_tol=tol)
    (line,) = pnl_by_strategy_symbol(fills, mult=mult).values()
    assert line.position == 0.0 and math.isclose(line.realised, expect, abs_tol=tol)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(KINDS), qtys, prices, prices)
def test_unrealised_is_the_position_times_the_move_times_the_multiplier(kind, qty, px, mark):
    symbol, mult, m = kind
    (line,) = pnl_by_strategy_symbol([Fill("e", "c", "st", symbol, Side.SELL, qty, px)], {symbol: mark},
                                     mult=mult).values()
    tol = 1e-9 * qty * (px + mark) * m  # the average cost is qty x px / qty, to the last bits
    assert math.isclose(line.unrealised, -qty * (mark - px) * m, abs_tol=tol)
    assert math.isclose(line.avg_cost, px, rel_tol=1e-12)  # prices stay per share


def test_the_bps_fee_schedule_counts_the_contracts_notional():
    sched = FeeSchedule(per_share_usd=0.65, bps_of_notional=10.0)
    (line,) = pnl_by_strategy_symbol([Fill("e", "c", "st", OPTION, Side.BUY, 2.0, 3.0)], fees=sched).values()
    assert math.isclose(line.fees, 2 * 0.65 + 2 * 3.0 * 100 * 10e-4)


@pytest.mark.parametrize("symbol, m", [(OPTION, 100.0), ("AAPL", 1.0)])
def test_the_paper_venues_cash_and_the_nodes_agree_at_the_multiplier(symbol, m):
    """Both sides of the reconciler: the paper venue's cash after a round trip on 3 contracts equals
    the node's expected cash from the same fills, and moves by price x 3 x multiplier."""
    start = 10_000.0
    v = PaperVenue(PaperVenueConfig(symbols=[PaperSymbol(symbol=symbol, price=2.0, volatility_bps=0.0, top_size=1e6)],
                                    starting_cash_usd=start))
    for coid, side in (("b", Side.BUY), ("s", Side.SELL)):
        v.submit(OrderIntent(client_order_id=coid, signal_id="s", request_id="r" + coid, strategy_id="st",
                             symbol=symbol, side=side, order_type=OrderType.MARKET, quantity=3.0), T0)
    reports = v.advance(T0)
    fills = [fill_of_report(r) for r in reports if r.kind in (ExecKind.PARTIAL_FILL, ExecKind.FILL)]
    assert {f.client_order_id for f in fills} == {"b", "s"}
    moved = math.fsum((f.px if f.side is Side.SELL else -f.px) * f.qty * m for f in fills)
    assert math.isclose(v.cash(), start + moved, rel_tol=1e-12)
    assert math.isclose(v.cash(), cash_of(start, fills), rel_tol=1e-12)
    assert v.balances().equity == v.cash()  # flat: equity is the cash


def test_equity_values_an_open_option_at_its_multiplier():
    v = PaperVenue(PaperVenueConfig(symbols=[PaperSymbol(symbol=OPTION, price=2.0, volatility_bps=0.0, top_size=1e6)],
                                    starting_cash_usd=10_000.0))
    v.submit(OrderIntent(client_order_id="b", signal_id="s", request_id="r", strategy_id="st", symbol=OPTION,
                         side=Side.BUY, order_type=OrderType.MARKET, quantity=1.0), T0)
    v.advance(T0)
    (fill,) = v.fills()
    assert math.isclose(v.cash(), 10_000.0 - fill.last_px * 100)
    assert math.isclose(v.balances().equity, v.cash() + 2.0 * 100)  # the mid, per share, x 100


def _book(fills: list[Fill], cash: float, pnl: dict[str, BrokerPnl] | None = None) -> BrokerBook:
    pos: dict[str, float] = {}
    for f in fills:
        pos[f.symbol] = pos.get(f.symbol, 0.0) + f.signed_qty
    return BrokerBook(broker="b", fills=fills, orders=[], positions=pos, cash=cash, pnl=pnl or {})


def test_the_reconciler_sees_no_cash_drift_for_an_option_fill_and_explains_a_missing_one_at_100x():
    start = 50_000.0
    mine = Fill("e1", "c1", "st", OPTION, Side.BUY, 2.0, 1.5, 1)
    missing = Fill("e2", "c2", "st", OPTION, Side.BUY, 1.0, 1.6, 2)
    broker_cash = start - 2.0 * 1.5 * 100 - 1.0 * 1.6 * 100  # dollars, as brokers report cash
    broker = _book([mine, missing], broker_cash)
    node = NodeBook(fills=[mine], orders=[], cash=cash_of(start, [mine]))
    kinds = {d.kind for d in diff_books(node, broker).discrepancies}
    assert DiscrepancyKind.CASH_DRIFT not in kinds and DiscrepancyKind.FILL_UNKNOWN_TO_LEDGER in kinds
    assert opening_of(broker).cash == pytest.approx(start)
    # the old per-share cash (100x too small) is a drift
    node_old = NodeBook(fills=[mine], orders=[], cash=start - 2.0 * 1.5)
    assert DiscrepancyKind.CASH_DRIFT in {d.kind for d in diff_books(node_old, broker).discrepancies}


def test_an_option_pnl_at_the_brokers_dollars_is_no_drift():
    fills = [Fill("e1", "c1", "st", OPTION, Side.BUY, 2.0, 1.5, 1)]
    broker = {OPTION: BrokerPnl(qty=2.0, mark=1.8, avg_cost=1.5, unrealised=2.0 * 0.3 * 100)}
    assert compare_pnl(fills, Opening(), broker, 0.01) == []
    broker = {OPTION: BrokerPnl(qty=2.0, mark=1.8, avg_cost=1.5, unrealised=2.0 * 0.3)}  # per share: a drift
    assert [d.kind for d in compare_pnl(fills, Opening(), broker, 0.01)] == [DiscrepancyKind.PNL_DRIFT]


def test_shadow_copies_are_taken_out_of_the_brokers_cash_at_the_multiplier():
    shadow = Fill("e1", "c1", "st" + SHADOW_SUFFIX, OPTION, Side.BUY, 1.0, 2.0, 1)
    book = _book([shadow], 1_000.0 - 200.0)
    assert without_shadow(book).cash == pytest.approx(1_000.0)
