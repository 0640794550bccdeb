"""Sizing and shaping of Nautilus engine orders (pure: no kernel, no sockets)."""

from __future__ import annotations

import pytest

from adapters.engines.nautilus.config import NautilusEngineConfig, decode_config, encode_config, rate_string
from adapters.engines.nautilus.parsing import OrderPlan, plan_order, quantity_precision
from node.messages import Action, OrderType, Side, Signal
from node.reasons import Reason


def sig(**kw) -> Signal:
    base = dict(request_id="r", strategy_id="s", timestamp=1.0, symbol="AAPL", action=Action.BUY, quantity=10.0)
    base.update(kw)
    return Signal(**base)


@pytest.mark.parametrize(
    "signal, last_px, fallback, expected",
    [
        (sig(), {}, {}, OrderPlan("AAPL", Side.BUY, OrderType.MARKET, 10.0, None, None)),
        (sig(action=Action.SELL_TO_OPEN), {}, {}, OrderPlan("AAPL", Side.SELL, OrderType.MARKET, 10.0, None, None)),
        (sig(order_type=OrderType.LIMIT, limit_price=101.0), {}, {}, OrderPlan("AAPL", Side.BUY, OrderType.LIMIT, 10.0, 101.0, None)),
        (sig(order_type=OrderType.STOP, stop_price=99.0), {}, {}, OrderPlan("AAPL", Side.BUY, OrderType.STOP, 10.0, None, 99.0)),
        (sig(order_type=OrderType.STOP_LIMIT, stop_price=99.0, limit_price=99.5), {}, {},
         OrderPlan("AAPL", Side.BUY, OrderType.STOP_LIMIT, 10.0, 99.5, 99.0)),
        # notional: the signal's own price first, then the last fill, then the fallback table
        (sig(quantity=None, notional=1_000.0, order_type=OrderType.LIMIT, limit_price=300.0), {"AAPL": 100.0}, {},
         OrderPlan("AAPL", Side.BUY, OrderType.LIMIT, 3.0, 300.0, None)),
        (sig(quantity=None, notional=1_000.0), {"AAPL": 99.0}, {"AAPL": 500.0}, OrderPlan("AAPL", Side.BUY, OrderType.MARKET, 10.0, None, None)),
        (sig(quantity=None, notional=1_000.0), {}, {"AAPL": 500.0}, OrderPlan("AAPL", Side.BUY, OrderType.MARKET, 2.0, None, None)),
        (sig(quantity=None, notional=1_000.0), {"MSFT": 1.0}, {}, Reason.NO_PRICE),
        (sig(quantity=None, notional=50.0), {"AAPL": 100.0}, {}, Reason.SIZE_SPEC),  # below one share
        (sig(order_type=OrderType.LIMIT), {}, {}, Reason.PRICE_REQUIRED),
        (sig(order_type=OrderType.STOP_LIMIT, limit_price=1.0), {}, {}, Reason.PRICE_REQUIRED),
    ],
)
def test_plan_order(signal, last_px, fallback, expected):
    assert plan_order(signal, last_px, fallback) == expected


@pytest.mark.parametrize("qty, prec", [(10.0, 0), (2.5, 1), (0.125, 3), (1e-12, 9)])
def test_quantity_precision(qty, prec):
    assert quantity_precision(qty) == prec


@pytest.mark.parametrize("count, window_ms, text", [(100, 1_000, "100/00:00:01"), (5, 90_000, "5/00:01:30"), (1, 10, "1/00:00:01")])
def test_rate_string(count, window_ms, text):
    assert rate_string(count, window_ms) == text


def test_config_round_trips_as_json():
    cfg = NautilusEngineConfig(symbols=["AAPL"], reference_prices={"AAPL": 230.0}, epoch=7)
    assert decode_config(encode_config(cfg)) == cfg
