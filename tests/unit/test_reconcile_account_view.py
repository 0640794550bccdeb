"""The node against a broker's account view (node.reconcile.opening_of / cash_of, node.pnl.compare_pnl)
and the two brokers' account answers as the reconciler reads them (Schwab's positions and balances,
TWS's account values and portfolio): properties over random fills, against an independent
broker-style ledger (IBKR keeps commissions in the average cost; the node in realised PnL)."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from ib_async import AccountValue, PortfolioItem, Position, Stock

import pytest
from adapters.brokers.ibkr import parsing as ibkr
from adapters.brokers.schwab import parsing as schwab
from node.messages import Side
from node.pnl import compare_pnl
from node.reconcile import (
    BrokerBook,
    BrokerPnl,
    DiscrepancyKind as K,
    Fill,
    NodeBook,
    Opening,
    cash_of,
    diff_books,
    is_finite_pnl,
    opening_of,
    orders_from_fills,
    positions_of,
)

SYMBOLS = ["AAPL", "MSFT", "SPY"]


@st.composite
def fills(draw, prefix: str = "E"):
    out = []
    for i in range(draw(st.integers(0, 25))):
        out.append(Fill("%s-%d" % (prefix, i), "NAE-%s-%d" % (prefix, i), "s1", draw(st.sampled_from(SYMBOLS)),
                        draw(st.sampled_from([Side.BUY, Side.SELL])), float(draw(st.integers(1, 300))),
                        round(draw(st.floats(1.0, 500.0)), 2), 1_000 + i, float(draw(st.integers(0, 2)))))
    return out


def broker_view(fs: list[Fill], marks: dict[str, float], opening: dict[str, tuple[float, float]] | None = None,
                ) -> dict[str, BrokerPnl]:
    """An independent IBKR-style account view: commissions in the average cost of what a fill
    opens, a close realises (price - cost) less its commission."""
    book = {s: [q, c, 0.0] for s, (q, c) in (opening or {}).items()}
    for f in fs:
        b = book.setdefault(f.symbol, [0.0, 0.0, 0.0])
        q = f.signed_qty
        if b[0] * q >= 0:
            b[1] = (b[1] * b[0] + f.px * q + f.fee) / (b[0] + q)
            b[0] += q
            continue
        closed = min(abs(q), abs(b[0]))
        b[2] += (f.px - b[1]) * closed * (1 if b[0] > 0 else -1) - f.fee
        rest = b[0] + q
        if abs(rest) < 1e-9:
            b[0] = b[1] = 0.0
        elif rest * b[0] < 0:  # crossed: what is left opens at the price, the fee already realised
            b[0], b[1] = rest, f.px
        else:
            b[0] = rest
    return {s: BrokerPnl(qty=q, mark=marks[s], avg_cost=c, unrealised=(marks[s] - c) * q, realised=r)
            for s, (q, c, r) in book.items() if abs(q) > 1e-9}


MARKS = st.fixed_dictionaries({s: st.floats(1.0, 500.0).map(lambda x: round(x, 2)) for s in SYMBOLS})


@settings(max_examples=150, deadline=None)
@given(fills(), MARKS)
def test_pnl_agrees_with_a_broker_that_keeps_commissions_in_its_cost(fs, marks):
    assert compare_pnl(fs, Opening(), broker_view(fs, marks), tolerance_usd=1e-6 * (1 + len(fs)) * 1e3) == []


@settings(max_examples=100, deadline=None)
@given(fills(), MARKS, st.sampled_from(SYMBOLS), st.floats(0.5, 50.0))
def test_a_cost_moved_at_the_broker_is_one_pnl_drift_with_both_values(fs, marks, sym, delta):
    view = broker_view(fs, marks)
    if sym not in view:
        return
    p = view[sym]
    view[sym] = BrokerPnl(qty=p.qty, mark=p.mark, avg_cost=p.avg_cost + delta,
                          unrealised=(p.mark - p.avg_cost - delta) * p.qty, realised=p.realised)
    found = compare_pnl(fs, Opening(), view, tolerance_usd=0.01)
    if abs(delta * p.qty) <= 0.02:
        return
    assert [(d.kind, d.symbol) for d in found] == [(K.PNL_DRIFT, sym)]
    assert found[0].node_pnl - found[0].broker_pnl == pytest.approx(delta * p.qty, rel=1e-6, abs=1e-6)
    assert compare_pnl(fs, Opening(), view, 0.01, skip={sym}) == []  # another difference explains it


@settings(max_examples=100, deadline=None)
@given(fills(), MARKS, st.floats(1.0, 400.0).map(lambda x: round(x, 2)), st.integers(1, 100))
def test_an_opening_position_counts_at_the_brokers_cost(fs, marks, cost, qty):
    opening = Opening(positions={"SPY": float(qty)}, costs={"SPY": cost})
    view = broker_view(fs, marks, {"SPY": (float(qty), cost)})
    assert compare_pnl(fs, opening, view, tolerance_usd=1e-6 * (1 + len(fs)) * 1e3) == []
    # an opening position whose cost the broker never gave is not judged
    assert all(d.symbol != "SPY" for d in compare_pnl(fs, Opening(positions={"SPY": float(qty)}), view, 1e-9))


@settings(max_examples=100, deadline=None)
@given(fills("B"), fills("N"), st.floats(-1e5, 1e5))
def test_the_opening_book_plus_the_fills_is_the_broker_account(before, window, start_cash):
    """The broker's book after fills before its window and fills in it: the opening taken from it,
    plus the window's fills booked by the node, is the same account: positions and cash agree."""
    held = positions_of(before + window)
    cash = start_cash - sum(f.signed_qty * f.px + f.fee for f in before + window)
    broker = BrokerBook(broker="x", fills=window, orders=orders_from_fills(window), positions=held, cash=cash)
    opening = opening_of(broker)
    node = NodeBook(fills=window, orders=orders_from_fills(window), opening_positions=opening.positions,
                    cash=cash_of(opening.cash, window))
    diff = diff_books(node, broker)
    assert diff.discrepancies == []
    # and a cash movement at the broker with no fill is one CASH_DRIFT with both values
    moved = BrokerBook(broker="x", fills=window, orders=broker.orders, positions=held, cash=cash - 25.0)
    found = diff_books(node, moved).discrepancies
    assert [d.kind for d in found] == [K.CASH_DRIFT]
    assert found[0].broker_qty - found[0].node_qty == pytest.approx(-25.0)


def test_schwab_account_answer_as_the_reconciler_reads_it():
    account = {"securitiesAccount": {"positions": [
        {"instrument": {"symbol": "AAPL", "assetType": "EQUITY"}, "longQuantity": 30.0, "shortQuantity": 0.0,
         "averagePrice": 101.5, "marketValue": 3090.0, "longOpenProfitLoss": 45.0},
        {"instrument": {"symbol": "MSFT", "assetType": "EQUITY"}, "longQuantity": 0.0, "shortQuantity": 12.0,
         "averagePrice": 400.0, "marketValue": -4824.0, "shortOpenProfitLoss": -24.0},
        {"instrument": {"symbol": "AAPL  250117C00150000", "assetType": "OPTION"}, "longQuantity": 2.0,
         "averagePrice": 3.0, "marketValue": 700.0, "longOpenProfitLoss": 100.0},
        {"instrument": {"symbol": "BAD"}, "longQuantity": "x"},
    ], "currentBalances": {"cashBalance": 12345.5}}}
    pnl = schwab.pnl_of(account)
    assert pnl == {"AAPL": BrokerPnl(qty=30.0, mark=103.0, avg_cost=101.5, unrealised=45.0),
                   "MSFT": BrokerPnl(qty=-12.0, mark=402.0, avg_cost=400.0, unrealised=-24.0),
                   "AAPL250117C00150000": BrokerPnl(qty=2.0, mark=3.5, avg_cost=3.0, unrealised=100.0)}
    book, bad = schwab.account_book([], account, {}, 0, 0)
    assert book.cash == 12345.5 and book.pnl == pnl and not book.fees_reported and bad == 0
    assert schwab.pnl_of({"nope": 1}) == {} and schwab.pnl_of(None) == {}


def test_tws_account_values_and_portfolio_as_the_reconciler_reads_them():
    values = [AccountValue("DU1", "TotalCashValue", "99000.25", "USD", ""),
              AccountValue("DU1", "TotalCashValue", "80000", "EUR", ""),
              AccountValue("DU1", "NetLiquidation", "1", "USD", "")]
    assert ibkr.cash_of(values) == 99000.25
    assert ibkr.cash_of([AccountValue("DU1", "TotalCashValue", "n/a", "USD", "")]) is None
    assert ibkr.cash_of([]) is None
    aapl = Stock("AAPL", "SMART", "USD")
    aapl.secType = "STK"
    item = PortfolioItem(aapl, 30.0, 103.0, 3090.0, 100.1, 87.0, -1.0, "DU1")
    assert ibkr.pnl_of([item]) == {"AAPL": BrokerPnl(qty=30.0, mark=103.0, avg_cost=100.1, unrealised=87.0,
                                                     realised=-1.0)}
    msft = Stock("MSFT", "SMART", "USD")
    msft.secType = "STK"
    stale = PortfolioItem(msft, 5.0, 400.0, 2000.0, 390.0, 50.0, 0.0, "DU1")  # from an earlier download
    book = ibkr.account_book([], [Position("DU1", aapl, 30.0, 100.1)], {}, {}, 0, 0, values, [item, stale])
    assert book.cash == 99000.25 and book.fees_reported and list(book.pnl) == ["AAPL"]


JSON = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
                    max_leaves=25)
POSITION = st.fixed_dictionaries({"instrument": st.fixed_dictionaries({"symbol": st.sampled_from(SYMBOLS) | JSON})},
                                 optional={k: JSON | st.floats() for k in (
                                     "longQuantity", "shortQuantity", "averagePrice", "marketValue",
                                     "longOpenProfitLoss", "shortOpenProfitLoss")})


@settings(max_examples=300, deadline=None)
@given(JSON | st.fixed_dictionaries({"securitiesAccount": st.fixed_dictionaries(
    {"positions": st.lists(POSITION, max_size=4)}, optional={"currentBalances": JSON})}))
def test_any_schwab_account_answer_reads_to_finite_values_or_nothing(answer):
    """A trust boundary: whatever Schwab answers, the valuation is finite lines or none, never a raise."""
    pnl = schwab.pnl_of(answer)
    assert all(isinstance(s, str) for s in pnl)
    assert all(is_finite_pnl(p) for p in pnl.values())
    schwab.balances_of(answer)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["TotalCashValue", "CashBalance"]), st.sampled_from(["USD", "BASE", "EUR"]),
                          st.text(max_size=10) | st.floats().map(str)), max_size=5),
       st.floats() | st.sampled_from([1.7976931348623157e308]))
def test_any_tws_account_values_and_portfolio_read_to_finite_values_or_nothing(values, x):
    cash = ibkr.cash_of([AccountValue("DU1", t, v, c, "") for t, c, v in values])
    assert cash is None or cash == cash and abs(cash) != float("inf")
    aapl = Stock("AAPL", "SMART", "USD")
    aapl.secType = "STK"
    pnl = ibkr.pnl_of([PortfolioItem(aapl, 1.0, x, x, x, x, x, "DU1")])
    assert pnl == {} or (abs(x) < 1e300 and pnl["AAPL"].mark == x)
