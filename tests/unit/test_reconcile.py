"""The pure diff of two books (node.reconcile) and PnL (node.pnl): properties over random books."""

from __future__ import annotations

from collections import Counter

import msgspec

import pytest
from hypothesis import given, settings, strategies as st

from node.messages import ExecKind, Side
from node.pnl import FeeSchedule, pnl_by_strategy_symbol, totals_by_strategy
from node.reconcile import (
    BrokerBook,
    DiffConfig,
    DiscrepancyKind as K,
    Fill,
    NodeBook,
    Order,
    diff_books,
    orders_from_fills,
    positions_of,
    settle_logged,
    to_book,
)

SYMBOLS = ["AAPL", "MSFT", "SPY", "QQQ"]
STRATEGIES = ["s1", "s2"]


@st.composite
def worlds(draw, min_orders: int = 1):
    """A consistent world: orders with 1-4 fills each (some still open), as both sides see it."""
    n = draw(st.integers(min_orders, 12))
    fills, totals = [], {}
    ts = 1_000
    for i in range(n):
        coid = "NAE-%04d-0" % i
        sym = draw(st.sampled_from(SYMBOLS))
        strat = draw(st.sampled_from(STRATEGIES))
        side = draw(st.sampled_from([Side.BUY, Side.SELL]))
        k = draw(st.integers(1, 4))
        filled = 0.0
        for j in range(k):
            q = float(draw(st.integers(1, 500)))
            px = draw(st.floats(1.0, 1_000.0, allow_nan=False)).__round__(4)
            ts += 1
            fee = float(draw(st.integers(0, 3)))
            fills.append(Fill("E-%d-%d" % (i, j), coid, strat, sym, side, q, px, ts, fee, "V-%d" % i))
            filled += q
        totals[coid] = filled + float(draw(st.sampled_from([0, 0, 10])))
    return fills, totals


def _books(fills, totals, node_fills=None, positions_delta=None, cash=True):
    broker_orders = orders_from_fills(fills, totals)
    node_fills = fills if node_fills is None else node_fills
    known = {f.client_order_id for f in node_fills}
    node_orders = orders_from_fills(node_fills, totals)
    # an order the node knows whose every fill was dropped: NEW with nothing filled
    node_orders += [Order(o.client_order_id, ExecKind.NEW, 0.0, o.cum_qty + o.leaves_qty, o.strategy_id, o.symbol,
                          o.side) for o in broker_orders if o.client_order_id not in known and o.client_order_id in totals]
    pos = positions_of(fills)
    for sym, d in (positions_delta or {}).items():
        pos[sym] = pos.get(sym, 0.0) + d
    bcash = 1e6 - sum(f.signed_qty * f.px + f.fee for f in fills) if cash else None
    ncash = 1e6 - sum(f.signed_qty * f.px + f.fee for f in node_fills) if cash else None
    node = NodeBook(fills=node_fills, orders=node_orders, cash=ncash)
    broker = BrokerBook(broker="paper", fills=fills, orders=broker_orders, positions=pos, cash=bcash)
    return node, broker


def _kinds(diff):
    return Counter(d.kind for d in diff.discrepancies)


@settings(max_examples=100, deadline=None)
@given(worlds())
def test_a_book_against_itself_is_empty(world):
    node, broker = _books(*world)
    assert diff_books(node, broker).discrepancies == []


@settings(max_examples=100, deadline=None)
@given(worlds(), st.data())
def test_a_dropped_fill_is_exactly_one_missing_fill(world, data):
    fills, totals = world
    drop = data.draw(st.sampled_from(fills))
    node, broker = _books(fills, totals, node_fills=[f for f in fills if f is not drop])
    diff = diff_books(node, broker)
    assert [(d.kind, d.exec_id) for d in diff.discrepancies] == [(K.MISSING_FILL, drop.exec_id)]
    d = diff.discrepancies[0]
    assert d.broker_qty == drop.signed_qty and d.broker_px == drop.px and d.node_qty is None


@settings(max_examples=100, deadline=None)
@given(worlds(), st.data())
def test_booking_what_the_diff_finds_makes_the_books_agree_and_twice_changes_nothing(world, data):
    fills, totals = world
    dropped = set(data.draw(st.lists(st.sampled_from([f.exec_id for f in fills]), unique=True)))
    foreign = data.draw(st.sampled_from(sorted({f.client_order_id for f in fills})))
    node_fills = [f for f in fills if f.exec_id not in dropped and f.client_order_id != foreign]
    node, broker = _books(fills, totals, node_fills=node_fills)
    node = NodeBook(fills=node.fills, orders=[o for o in node.orders if o.client_order_id != foreign], cash=node.cash)
    diff = diff_books(node, broker)
    assert set(_kinds(diff)) <= {K.MISSING_FILL, K.FILL_UNKNOWN_TO_LEDGER, K.ORDER_UNKNOWN_TO_NODE}
    assert _kinds(diff)[K.ORDER_UNKNOWN_TO_NODE] == 1
    reports = to_book(diff, broker)
    assert len({r.exec_id for r in reports if r.exec_id}) == len([r for r in reports if r.exec_id])
    booked = _apply(node, reports + reports)  # booked twice: dedupe on exec_id keeps it once
    assert diff_books(booked, broker).discrepancies == []
    assert all(r.strategy_id for r in reports)


@settings(max_examples=100, deadline=None)
@given(worlds(), st.data())
def test_what_the_events_stream_holds_is_in_flight_and_the_rest_still_a_discrepancy(world, data):
    """The ledger behind its log: fills and orders the stream holds leave the discrepancies for
    `in_flight`; what it does not hold stays, and a drift is never settled by the log."""
    fills, totals = world
    dropped = set(data.draw(st.lists(st.sampled_from([f.exec_id for f in fills]), unique=True, min_size=1)))
    foreign = data.draw(st.sampled_from(sorted({f.client_order_id for f in fills})))
    node_fills = [f for f in fills if f.exec_id not in dropped and f.client_order_id != foreign]
    node, broker = _books(fills, totals, node_fills=node_fills, positions_delta={"AAPL": 7.0})
    node = NodeBook(fills=node.fills, orders=[o for o in node.orders if o.client_order_id != foreign], cash=None)
    diff = diff_books(node, broker)
    missing = {d.exec_id for d in diff.discrepancies if d.kind in (K.MISSING_FILL, K.FILL_UNKNOWN_TO_LEDGER)}
    logged = set(data.draw(st.lists(st.sampled_from(sorted(missing)), unique=True))) if missing else set()
    orders = {foreign} if data.draw(st.booleans()) else set()
    settled = settle_logged(diff, logged | {"E-not-a-difference"}, orders | {"NAE-not-a-difference"})
    left = {(d.kind, d.exec_id, d.client_order_id) for d in settled.discrepancies}
    assert left == {(d.kind, d.exec_id, d.client_order_id) for d in diff.discrepancies
                    if not (d.exec_id in logged and d.kind in (K.MISSING_FILL, K.FILL_UNKNOWN_TO_LEDGER))
                    and not (d.kind is K.ORDER_UNKNOWN_TO_NODE and d.client_order_id in orders)}
    assert settled.in_flight == diff.in_flight + len(diff.discrepancies) - len(settled.discrepancies)
    assert _kinds(settled)[K.POSITION_DRIFT] == 1  # the edited position: no log explains it
    if logged == missing and orders:
        assert set(_kinds(settled)) == {K.POSITION_DRIFT}


def _apply(node: NodeBook, reports) -> NodeBook:
    """What the ledger does with reports: fills deduped on exec_id, orders to their latest state."""
    fills = {f.exec_id: f for f in node.fills}
    orders = {o.client_order_id: o for o in node.orders}
    for r in reports:
        if r.exec_id and r.exec_id not in fills:
            fills[r.exec_id] = Fill(r.exec_id, r.client_order_id, r.strategy_id, r.symbol, r.side, r.last_qty,
                                    r.last_px, r.ts_ns)
        o = orders.get(r.client_order_id)
        cum = max(r.cum_qty, o.cum_qty if o else 0.0)
        orders[r.client_order_id] = Order(r.client_order_id, r.kind if cum >= (o.cum_qty if o else 0.0) else o.state,
                                          cum, r.leaves_qty, r.strategy_id, r.symbol, r.side)
    # cash follows the fills (fees of booked fills come from the broker's own fills)
    return NodeBook(fills=list(fills.values()), orders=list(orders.values()), cash=None)


@settings(max_examples=100, deadline=None)
@given(worlds(), st.sampled_from(SYMBOLS), st.integers(-500, 500).filter(lambda x: x != 0))
def test_a_position_edited_at_the_venue_is_one_position_drift(world, symbol, delta):
    node, broker = _books(*world, positions_delta={symbol: float(delta)})
    diff = diff_books(node, broker)
    assert [(d.kind, d.symbol) for d in diff.discrepancies] == [(K.POSITION_DRIFT, symbol)]
    d = diff.discrepancies[0]
    assert d.broker_qty - d.node_qty == pytest.approx(delta)


def test_fill_unknown_to_broker_quantity_and_price_mismatch_and_cash_drift():
    a = Fill("E1", "O1", "s1", "AAPL", Side.BUY, 10.0, 100.0, 5)
    b = Fill("E2", "O2", "s1", "MSFT", Side.SELL, 5.0, 50.0, 6)
    c = Fill("E3", "O3", "s2", "SPY", Side.BUY, 1.0, 400.0, 7)
    node = NodeBook(fills=[a, b, c], orders=orders_from_fills([a, b, c]), cash=0.0)
    b2 = Fill("E2", "O2", "s1", "MSFT", Side.SELL, 5.0, 50.5, 6)
    a2 = Fill("E1", "O1", "s1", "AAPL", Side.BUY, 12.0, 100.0, 5)
    broker_fills = [a2, b2]
    broker = BrokerBook(broker="paper", fills=broker_fills, orders=orders_from_fills(broker_fills),
                        positions=positions_of(broker_fills), cash=-(12 * 100.0) + 5 * 50.5 - 1_000.0)
    got = {(d.kind, d.exec_id or d.client_order_id or d.symbol) for d in diff_books(node, broker).discrepancies}
    assert got == {
        (K.QUANTITY_MISMATCH, "E1"), (K.PRICE_MISMATCH, "E2"), (K.FILL_UNKNOWN_TO_BROKER, "E3"),
        (K.CASH_DRIFT, "$CASH"),
    }


def test_orders_open_at_one_side_only_and_unknown_states():
    node = NodeBook(fills=[], orders=[Order("O1", ExecKind.NEW, 0.0, 10.0, "s1", "AAPL"),
                                      Order("O2", ExecKind.UNKNOWN, 0.0, 10.0, "s1", "AAPL"),
                                      Order("O3", ExecKind.NEW, 0.0, 10.0, "s1", "AAPL")])
    broker = BrokerBook(broker="paper", fills=[], orders=[Order("O2", ExecKind.NEW, 0.0, 10.0),
                                                           Order("O3", ExecKind.CANCELED, 0.0, 0.0)], positions={})
    got = [(d.kind, d.client_order_id) for d in diff_books(node, broker).discrepancies]
    assert sorted(got) == [(K.ORDER_UNKNOWN_TO_BROKER, "O1"), (K.STATUS_MISMATCH, "O2"), (K.STATUS_MISMATCH, "O3")]


def test_fills_in_flight_are_not_judged_and_old_ledger_fills_outside_the_window_are_not_compared():
    old = Fill("E0", "O0", "s1", "AAPL", Side.BUY, 5.0, 10.0, 1_000)
    fresh = Fill("E1", "O1", "s1", "AAPL", Side.BUY, 1.0, 10.0, 9_000_000_000)
    node = NodeBook(fills=[old], orders=orders_from_fills([old]))
    young = Order("O2", ExecKind.NEW, 0.0, 3.0, "s1", "AAPL", ts_ns=9_500_000_000)
    broker = BrokerBook(broker="paper", fills=[fresh], orders=orders_from_fills([old, fresh]) + [young],
                        positions={"AAPL": 6.0}, fills_since_ns=5_000, as_of_ns=10_000_000_000)
    diff = diff_books(node, broker, DiffConfig(settle_ns=2_000_000_000))
    assert diff.discrepancies == [] and diff.in_flight == 1
    later = BrokerBook(broker="paper", fills=[fresh], orders=broker.orders, positions={"AAPL": 6.0},
                       fills_since_ns=5_000, as_of_ns=20_000_000_000)
    kinds = sorted((d.kind, d.exec_id or d.client_order_id) for d in diff_books(node, later).discrepancies)
    assert kinds == [(K.FILL_UNKNOWN_TO_LEDGER, "E1"), (K.ORDER_UNKNOWN_TO_NODE, "O1"), (K.ORDER_UNKNOWN_TO_NODE, "O2")]


# ---------------------------------------------------------------- PnL


def test_pnl_average_cost_with_fees_and_a_cross_through_zero():
    fills = [
        Fill("1", "A", "s1", "AAPL", Side.BUY, 10.0, 100.0, 1, fee=1.0),
        Fill("2", "A", "s1", "AAPL", Side.BUY, 10.0, 110.0, 2, fee=1.0),  # avg 105
        Fill("3", "B", "s1", "AAPL", Side.SELL, 15.0, 120.0, 3, fee=1.5),  # realise 15 * 15 = 225
        Fill("4", "C", "s1", "AAPL", Side.SELL, 10.0, 100.0, 4, fee=1.0),  # close 5 at -5 each, short 5 at 100
    ]
    line = pnl_by_strategy_symbol(fills, marks={"AAPL": 90.0})[("s1", "AAPL")]
    assert line.position == -5.0 and line.avg_cost == 100.0
    assert line.fees == pytest.approx(4.5)
    assert line.realised == pytest.approx(225.0 - 25.0 - 4.5)
    assert line.unrealised == pytest.approx(-5.0 * (90.0 - 100.0))


def test_fee_schedule_applies_when_the_fill_has_none():
    fills = [Fill("1", "A", "s1", "AAPL", Side.BUY, 100.0, 10.0, 1)]
    sched = FeeSchedule(per_share_usd=0.005, bps_of_notional=1.0, min_per_fill_usd=1.0)
    line = pnl_by_strategy_symbol(fills, fees=sched)[("s1", "AAPL")]
    assert line.fees == pytest.approx(1.0)  # 0.5 + 0.1 < the minimum
    assert totals_by_strategy({("s1", "AAPL"): line})["s1"]["realised"] == pytest.approx(-1.0)


@settings(max_examples=100, deadline=None)
@given(worlds(), st.floats(1.0, 1_000.0))
def test_pnl_total_equals_the_cash_flows_plus_the_position_at_the_mark(world, mark):
    fills, _ = world
    marks = {s: mark for s in SYMBOLS}
    lines = pnl_by_strategy_symbol(fills, marks)
    for (strategy, symbol), line in lines.items():
        mine = [f for f in fills if f.strategy_id == strategy and f.symbol == symbol]
        flows = -sum(f.signed_qty * f.px + f.fee for f in mine)
        position = sum(f.signed_qty for f in mine)
        assert line.position == pytest.approx(position, abs=1e-6)
        assert line.total == pytest.approx(flows + position * mark, rel=1e-9, abs=1e-4)


_floats = st.floats(allow_nan=True, allow_infinity=True)
_fills = st.builds(Fill, st.sampled_from(["E1", "E2", "E3"]), st.sampled_from(["O1", "O2"]), st.sampled_from(["", "s1"]),
                   st.sampled_from(["", "AAPL", "MSFT"]), st.sampled_from(list(Side)), _floats, _floats,
                   st.integers(-2**63, 2**63 - 1), _floats)
_orders = st.builds(Order, st.sampled_from(["O1", "O2", "O3"]), st.sampled_from(list(ExecKind)), _floats, _floats)


@settings(max_examples=300, deadline=None)
@given(st.lists(_fills), st.lists(_orders), st.lists(_fills), st.lists(_orders),
       st.dictionaries(st.sampled_from(["AAPL", "MSFT", ""]), _floats), st.none() | _floats, st.none() | _floats)
def test_any_pair_of_books_is_diffed_without_raising(nf, no, bf, bo, pos, ncash, bcash):
    """Whatever a broker answers (duplicates, empty ids, NaN, infinities), the diff answers with
    discrepancies, and what it would book names a strategy; it never raises."""
    node = NodeBook(fills=nf, orders=no, cash=ncash)
    broker = BrokerBook(broker="x", fills=bf, orders=bo, positions=pos, cash=bcash, as_of_ns=10**18)
    diff = diff_books(node, broker)
    assert all(r.strategy_id for r in to_book(diff, broker))


def test_a_known_order_the_broker_moved_within_the_settle_time_is_judged_next_run():
    node = NodeBook(fills=[], orders=[Order("O3", ExecKind.NEW, 0.0, 10.0, "s1", "AAPL")])
    canceled = Order("O3", ExecKind.CANCELED, 0.0, 0.0, "s1", "AAPL", ts_ns=9_500_000_000)
    now = BrokerBook(broker="paper", fills=[], orders=[canceled], positions={}, as_of_ns=10_000_000_000)
    assert diff_books(node, now, DiffConfig(settle_ns=2_000_000_000)).discrepancies == []
    later = msgspec.structs.replace(now, as_of_ns=20_000_000_000)
    assert [d.kind for d in diff_books(node, later, DiffConfig(settle_ns=2_000_000_000)).discrepancies] == [
        K.STATUS_MISMATCH]


def test_several_accounts_are_one_book_positions_and_cash_summed():
    from actors.reconciler import merge_books

    a = Fill("E1", "O1", "s1", "AAPL", Side.BUY, 10.0, 100.0, 5)
    b = Fill("E2", "O2", "s1", "AAPL", Side.SELL, 4.0, 100.0, 6)
    one = BrokerBook(broker="a", fills=[a], orders=orders_from_fills([a]), positions={"AAPL": 10.0}, cash=-1_000.0,
                     as_of_ns=20)
    two = BrokerBook(broker="b", fills=[b], orders=orders_from_fills([b]), positions={"AAPL": -4.0}, cash=400.0,
                     as_of_ns=10)
    merged = merge_books([one, two])
    assert merged.positions == {"AAPL": 6.0} and merged.cash == -600.0 and merged.as_of_ns == 10
    node = NodeBook(fills=[a, b], orders=orders_from_fills([a, b]), cash=-600.0)
    assert diff_books(node, merged).discrepancies == []
    no_cash = merge_books([one, msgspec.structs.replace(two, cash=None)])
    assert no_cash.cash is None
