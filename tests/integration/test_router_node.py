"""The strategy router on a whole node: two engine groups, each with its own broker, engines and
epoch. Signals land at their group's broker only; an unrouted signal is refused NO_ROUTE; killing
one group's leader fails that group over and leaves the other alone."""

from __future__ import annotations

import os
import signal
import time

import pytest

from node.client import ExecutionClient
from node.config import BrokerConfig, EngineConfig, EngineGroupConfig, RouteConfig
from node.messages import Signal
from node.orders import client_order_id_for, signal_id_for
from node.runtime import NodeRuntime, quiet


@pytest.fixture(scope="module")
def node(ray_session, make_config):
    cfg = make_config(
        brokers=[BrokerConfig(name="pa"), BrokerConfig(name="pb")],
        groups=[
            EngineGroupConfig(name="eq", engines=[EngineConfig(name="a"), EngineConfig(name="b")], brokers=["pa", "pb"]),
            EngineGroupConfig(name="etf", engines=[EngineConfig(name="c"), EngineConfig(name="d")], brokers=["pb"]),
        ],
        routes=[RouteConfig(group="etf", symbols=["SPY", "QQQ"]), RouteConfig(group="etf", strategies=["idx-*"]),
                RouteConfig(group="eq", strategies=["eq-*"])],
        reject_unrouted=True,
        heartbeat_misses=10,  # about routing, not detection speed: no false failover on a loaded machine
    )
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    yield runtime
    runtime.stop()


def send(node, strategy: str, symbol: str, n: int = 1) -> list:
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    run = str(time.time_ns())
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        return [c.send_signal(Signal(request_id="rt-" + run + "-" + str(i), strategy_id=strategy, timestamp=time.time(),
                                     symbol=symbol, action="BUY", quantity=1.0)) for i in range(n)]


def orders_at(node, broker: str) -> set[str]:
    return {o.client_order_id for o in node.call("broker:" + broker, "orders")}


def wait_for(pred, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_signals_go_to_their_group_broker_and_nowhere_else(node):
    eq = send(node, "eq-momo", "AAPL", 20)  # eq-* -> eq
    by_symbol = send(node, "eq-momo", "SPY", 20)  # the SPY route comes first -> etf
    by_prefix = send(node, "idx-1", "MSFT", 20)  # idx-* -> etf
    assert all(r.status == "ACCEPTED" for r in eq + by_symbol + by_prefix)
    ids = lambda replies: {client_order_id_for(signal_id_for(r.request_id)) for r in replies}  # noqa: E731
    wait_for(lambda: ids(eq) <= orders_at(node, "pa") and ids(by_symbol + by_prefix) <= orders_at(node, "pb"))
    assert not orders_at(node, "pa") & orders_at(node, "pb")
    stats = node.stats()
    assert stats["engine:a"]["group"] == "eq" and stats["engine:c"]["group"] == "etf"
    assert stats["broker:pa"]["refused_duplicate"] == stats["broker:pb"]["refused_duplicate"] == 0


def test_a_signal_no_route_names_is_refused_with_no_route(node):
    (reply,) = send(node, "other", "AAPL")
    assert reply.status == "REJECTED" and reply.reasons == ["NO_ROUTE"], reply


def test_killing_one_groups_leader_fails_over_that_group_only(node):
    before = node.stats()["supervisor"]["groups"]
    os.kill(node.call_supervisor("pid", "engine:c"), signal.SIGKILL)
    wait_for(lambda: node.stats()["supervisor"]["groups"]["etf"]["leader"] == "d")
    groups = node.stats()["supervisor"]["groups"]
    assert groups["etf"]["epoch"] == before["etf"]["epoch"] + 1
    assert groups["eq"] == before["eq"], ("the other group is untouched", node.stats()["supervisor"]["failovers"])
    # Ray restarts the killed engine as it was first wired (leader, epoch 1): told to step down, it
    # says what it is (one leader per group in every status an operator reads)
    wait_for(lambda: node.stats()["engine:c"].get("role") == "standby", timeout_s=60.0)
    after = send(node, "idx-2", "QQQ", 10) + send(node, "eq-2", "NVDA", 10)
    assert all(r.status == "ACCEPTED" for r in after)
    ids = {client_order_id_for(signal_id_for(r.request_id)) for r in after}
    wait_for(lambda: ids <= orders_at(node, "pa") | orders_at(node, "pb"))
    epochs = node.stats()["broker:pb"]["epochs"]
    assert epochs == {"etf": groups["etf"]["epoch"]}, epochs


def test_manual_broker_failover_moves_one_group_and_each_group_is_fenced_on_its_own(node):
    stats = node.stats()
    before = stats["supervisor"]["groups"]
    assert not stats["supervisor"]["broker_failovers"], stats["supervisor"]["broker_failovers"]
    event = node.call_supervisor("broker_failover", "eq")
    assert (event["from"], event["to"], event["same_account"]) == ("pa", "pb", False), event
    groups = node.stats()["supervisor"]["groups"]
    assert groups["eq"]["broker"] == "pb" and groups["eq"]["epoch"] == before["eq"]["epoch"] + 1
    assert groups["etf"] == before["etf"]
    moved = send(node, "eq-3", "TSLA", 10)
    assert all(r.status == "ACCEPTED" for r in moved)
    ids = {client_order_id_for(signal_id_for(r.request_id)) for r in moved}
    wait_for(lambda: ids <= orders_at(node, "pb"))
    assert not ids & orders_at(node, "pa")
    # pb now serves both groups, each fenced at its own epoch
    assert node.stats()["broker:pb"]["epochs"] == {"eq": groups["eq"]["epoch"], "etf": groups["etf"]["epoch"]}
    with pytest.raises(Exception, match="no broker"):
        node.call_supervisor("broker_failover", "etf", "pa")
