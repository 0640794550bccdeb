"""The broker venues take the node's contract multipliers from its risk config, where every other
part of the node takes them (`node.instruments.node_multipliers`): the host builder hands them to
Schwab's and IBKR's venues, and Schwab sizes a notional in contracts by them."""

from __future__ import annotations

import pytest

from actors.hosts import build_broker
from adapters.brokers.schwab import parsing as schwab
from node.config import BrokerConfig, NodeConfig, SchwabConfig
from node.instruments import DEFAULT_MULTIPLIERS, Multipliers
from node.messages import OrderIntent, OrderType, Side
from node.risk.config import RiskLimits

OCC = "AAPL261218C00150000"


@pytest.mark.parametrize("kind", ["schwab", "ibkr"])
def test_the_broker_venues_get_the_nodes_multipliers_from_its_risk_config(kind):
    cfg = NodeConfig(
        risk=RiskLimits(option_multiplier=10.0, contract_multipliers={"ESZ6": 50.0}),
        broker=BrokerConfig(name=kind, kind=kind, schwab=SchwabConfig(
            account_hash="H", redis_url="redis://127.0.0.1:1/0", database_url="postgresql://x@127.0.0.1:1/x")))
    venue = build_broker(cfg).venue  # built, never opened: no broker is reached
    assert (venue.multipliers.of(OCC), venue.multipliers.of("ESZ6"), venue.multipliers.of("AAPL")) == (10.0, 50.0, 1.0)


def _notional(symbol: str) -> OrderIntent:
    return OrderIntent(client_order_id="NAE-x-0", signal_id="s", request_id="r", strategy_id="s1", symbol=symbol,
                       side=Side.BUY, order_type=OrderType.LIMIT, notional=1_000.0, limit_price=2.0)


@pytest.mark.parametrize(("symbol", "mult", "contracts"), [
    (OCC, DEFAULT_MULTIPLIERS, 5),  # 1,000 USD at 2.00 a share, 100 shares a contract
    (OCC, Multipliers(option_multiplier=10.0), 50),  # the node's configured contract size
    ("ESZ6", Multipliers(configured={"ESZ6": 50.0}), 10),
    ("AAPL", Multipliers(option_multiplier=10.0), 500),
])
def test_schwab_sizes_a_notional_in_contracts_at_the_nodes_multiplier(symbol, mult, contracts):
    spec, why = schwab.order_spec(_notional(symbol), mult)
    assert why == "" and spec["orderLegCollection"][0]["quantity"] == contracts
