"""Pre-trade risk inside the running node: kill switch, pause, breakers that survive a validator
restart, and position limits that see the fills."""

from __future__ import annotations

import msgspec
import pytest

from node.client import ExecutionClient
from node.reasons import Reason
from node.risk.config import throughput_limits
from node.runtime import NodeRuntime, quiet
from tests.waits import wait_for


@pytest.fixture(scope="module")
def node(ray_session, make_config):
    limits = msgspec.structs.replace(throughput_limits(), max_symbol_long_usd=50_000.0, max_incremental_var_usd2=1e8)
    runtime = NodeRuntime(make_config(risk=limits), quiet)
    runtime.start()
    yield runtime
    runtime.stop()


@pytest.fixture()
def client(node):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=5.0) as c:
        yield c


def held(node, strategy: str, symbol: str) -> float:
    """The filled position the validator's risk books for `strategy` in `symbol`."""
    return node.call("validator", "positions").get(strategy, {}).get(symbol, 0.0)


def buy(client, strategy="risk", symbol="MSFT", qty=1.0):
    return client.send_signal({"strategy_id": strategy, "symbol": symbol, "action": "BUY", "quantity": qty})


def test_kill_switch_node_wide_and_per_strategy(node, client):
    node.call("validator", "kill")
    assert buy(client).reasons == [Reason.KILL_SWITCH]
    node.call("validator", "unkill")
    assert buy(client).status == "ACCEPTED"
    node.call("validator", "kill", "bad-strategy")
    assert Reason.STRATEGY_KILLED in buy(client, strategy="bad-strategy").reasons
    assert buy(client, strategy="good-strategy").status == "ACCEPTED"
    node.call("validator", "unkill", "bad-strategy")
    assert buy(client, strategy="bad-strategy").status == "ACCEPTED"


def test_pause_and_resume_a_strategy(node, client):
    node.call("validator", "pause", "paused")
    assert buy(client, strategy="paused").reasons == [Reason.STRATEGY_PAUSED]
    node.call("validator", "resume", "paused")
    assert buy(client, strategy="paused").status == "ACCEPTED"


def test_reducing_state_lets_only_reducing_orders_through(node, client):
    assert buy(client, strategy="reduce", symbol="NVDA", qty=10).status == "ACCEPTED"
    wait_for(lambda: held(node, "reduce", "NVDA") == 10)  # the fill reached the validator's position book
    node.call("validator", "set_state", "REDUCING")
    try:
        assert Reason.REDUCE_ONLY in buy(client, strategy="reduce", symbol="NVDA", qty=1).reasons
        sell = client.send_signal({"strategy_id": "reduce", "symbol": "NVDA", "action": "SELL", "quantity": 5.0})
        assert sell.status == "ACCEPTED"
    finally:
        node.call("validator", "set_state", "ACTIVE")


def test_breaker_state_survives_a_validator_restart(node, client):
    node.call("validator", "trip_breaker", "execution")
    assert Reason.BREAKER_EXECUTION in buy(client).reasons
    node.call("validator", "save_breakers")
    node.call_supervisor("restart", "validator", "test")
    assert Reason.BREAKER_EXECUTION in buy(client).reasons  # same port, restored state
    node.call("validator", "reset_breaker", "execution")
    assert buy(client).status == "ACCEPTED"


def test_position_limit_counts_fills(node, client):
    # AAPL starts at 230: 150 shares ~ 34.5k USD, under the 50k per-symbol long limit
    assert buy(client, strategy="pos", symbol="AAPL", qty=150).status == "ACCEPTED"
    wait_for(lambda: held(node, "pos", "AAPL") == 150)
    reply = buy(client, strategy="pos", symbol="AAPL", qty=100)  # would make ~57.5k
    assert Reason.MAX_POSITION in reply.reasons, reply
    assert buy(client, strategy="pos", symbol="AAPL", qty=10).status == "ACCEPTED"


def test_covariance_reloads_without_a_restart(node, client):
    """A tight variance cap passes with a tiny covariance and refuses once a large one is loaded."""
    symbols = ["QQQ"]
    node.call("validator", "load_covariance", symbols, [[1e-8]])
    assert buy(client, strategy="cov", symbol="QQQ", qty=10).status == "ACCEPTED"
    node.call("validator", "load_covariance", symbols, [[1e6]])
    assert Reason.PORTFOLIO_VARIANCE in buy(client, strategy="cov", symbol="QQQ", qty=10).reasons
    node.call("validator", "load_covariance", symbols, [[1e-8]])
