"""PyBroker as a signal source: its backtest's orders go into a running node as signed signals and
come back filled. PyBroker runs offline on synthetic bars held in a DataFrame (no download)."""

from __future__ import annotations

import pytest

from adapters.engines.pybroker.source import (
    ACTION_OF_INTENT,
    PyBrokerSignalSource,
    PyBrokerSourceConfig,
    run_backtest,
    run_id_for,
    signals_from_orders,
    synthetic_bars,
)
from node.client import ExecutionClient
from node.messages import Action, ExecKind, OrderType, Status

CFG = PyBrokerSourceConfig(start_prices={"AAPL": 230.0, "MSFT": 420.0}, bars=60, lookback_bars=5, shares=10)


def test_synthetic_bars_are_deterministic_and_shaped_for_pybroker():
    a = synthetic_bars(CFG.start_prices, CFG.first_day, CFG.bars, CFG.seed)
    b = synthetic_bars(CFG.start_prices, CFG.first_day, CFG.bars, CFG.seed)
    assert a.equals(b)
    assert list(a.columns) == ["symbol", "date", "open", "high", "low", "close", "volume"]
    assert len(a) == 2 * CFG.bars and (a["high"] >= a["close"]).all() and (a["low"] <= a["close"]).all()
    assert not a.equals(synthetic_bars(CFG.start_prices, CFG.first_day, CFG.bars, CFG.seed + 1))


def test_backtest_orders_become_signals_in_bar_order():
    result = run_backtest(CFG)
    orders = result.orders
    assert len(orders) >= 4  # the example strategy both enters and exits
    bars = signals_from_orders(orders, CFG.strategy_id, run_id_for(CFG), 1_700_000_000.0)
    flat = [s for bar in bars for s in bar]
    assert len(flat) == len(orders)
    assert len({s.request_id for s in flat}) == len(flat)
    for (order_id, row), sig in zip(orders.sort_values("date", kind="stable").iterrows(), flat):
        assert sig.request_id.endswith("-" + str(order_id))
        assert sig.action is ACTION_OF_INTENT[row["intent"]] and sig.quantity == row["shares"]
        assert sig.symbol == row["symbol"] and sig.order_type is OrderType.MARKET
    assert {s.action for s in flat} == {Action.BUY_TO_OPEN, Action.SELL_TO_CLOSE}
    # the same run names the same request ids: re-sending it is a retry, never new orders
    again = signals_from_orders(run_backtest(CFG).orders, CFG.strategy_id, run_id_for(CFG), 1_700_000_001.0)
    assert [s.request_id for bar in again for s in bar] == [s.request_id for s in flat]


@pytest.fixture(scope="module")
def node(module_node):
    return module_node


def test_pybroker_signals_are_accepted_and_filled_by_the_node(node):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as client:
        source = PyBrokerSignalSource(client, CFG)
        result = source.run()
        assert len(result.signals) == len(source.test_result.orders) >= 4
        assert [r.status for r in result.replies] == [Status.ACCEPTED] * len(result.signals), result.replies
        assert result.filled() == {s.request_id for s in result.signals}
        fills = [r for r in result.reports if r.kind is ExecKind.FILL]
        assert len(fills) == len(result.signals)  # one fill per signal: nothing doubled
        for sig in result.signals:
            (fill,) = [r for r in fills if r.request_id == sig.request_id]
            assert fill.cum_qty == sig.quantity and fill.symbol == sig.symbol

        # sending the same run again: answered as retries, no second order
        before = node.stats()["broker"]["submitted"]
        replies = [client.send_signal(s) for s in result.signals]
        assert all(r.duplicate and r.status is Status.ACCEPTED for r in replies)
        assert node.stats()["broker"]["submitted"] == before
