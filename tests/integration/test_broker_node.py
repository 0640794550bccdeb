"""A whole node (NodeRuntime on Ray) with a Schwab group and an IBKR group, each broker adapter in
front of its local fake (Schwab's HTTP API, TWS's socket API) started by the test: Optimus's
signals execute through both, each fake's own record matches what the node reported, row for row."""

from __future__ import annotations

import time

import pytest

from node.client import ExecutionClient
from node.config import BrokerConfig, EngineConfig, EngineGroupConfig, IbkrConfig, RouteConfig
from node.messages import Signal
from node.orders import client_order_id_for, signal_id_for
from node.runtime import NodeRuntime, quiet
from tests.fakes.pair import broker_fakes, schwab_account
from tests.integration.amend_flow import amend_flow, broker_orders, coid
from tests.waits import wait_for

PRICES = {"AAPL": 230.0, "MSFT": 420.0}


@pytest.fixture(scope="module")
def fakes():
    with broker_fakes(PRICES) as pair:
        yield pair


@pytest.fixture(scope="module")
def node(ray_session, make_config, fakes, redis_url, database_url):
    schwab, tws = fakes
    with schwab_account(schwab, database_url, "nae_brokers_", sweep_interval_ms=200, unknown_settle_ms=6_000) as (_, sc):
        ib = IbkrConfig(port=tws.port, client_id=11, windows=[], reconnect_interval_ms=500)
        cfg = make_config(
            brokers=[BrokerConfig(name="schwab", kind="schwab", schwab=sc), BrokerConfig(name="ibkr", kind="ibkr", ibkr=ib)],
            groups=[EngineGroupConfig(name="sch", engines=[EngineConfig(name="a")], brokers=["schwab"]),
                    EngineGroupConfig(name="ib", engines=[EngineConfig(name="b")], brokers=["ibkr"])],
            routes=[RouteConfig(group="sch", strategies=["sch-*"]), RouteConfig(group="ib", strategies=["ib-*"])],
            reject_unrouted=True, heartbeat_misses=10,
        )  # fmt: skip
        runtime = NodeRuntime(cfg, quiet)
        runtime.start()
        yield runtime
        runtime.stop()


def send(node, strategy: str, symbol: str, n: int) -> list:
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    run = str(time.time_ns())
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        return [c.send_signal(Signal(request_id="bk-" + run + "-" + str(i), strategy_id=strategy, timestamp=time.time(),
                                     symbol=symbol, action="BUY" if i % 3 else "SELL", quantity=float(1 + i % 4)))
                for i in range(n)]


def test_signals_execute_through_schwab_and_ibkr_and_match_each_fakes_record(node, fakes):
    schwab, tws = fakes
    sch = send(node, "sch-alpha", "AAPL", 20)
    ib = send(node, "ib-beta", "MSFT", 20)
    assert all(r.status == "ACCEPTED" for r in sch + ib), [r for r in sch + ib if r.status != "ACCEPTED"]
    wait_for(lambda: len(schwab.placed) == 20 and all(o["status"] == "FILLED" for o in schwab.placed)
             and len(tws.executions) == 20)
    fills = lambda broker: node.call("broker:" + broker, "fills")  # noqa: E731
    wait_for(lambda: len(fills("schwab")) == 20 and len(fills("ibkr")) == 20)
    # row for row: every fill the node reported is one the fake made, with its quantity and price
    at_schwab = {str(o["orderId"]) + "-" + str(a["activityId"]) + "-0": (a["quantity"], a["executionLegs"][0]["price"])
                 for o in schwab.placed for a in o["orderActivityCollection"]}
    assert {f.exec_id: (f.last_qty, f.last_px) for f in fills("schwab")} == at_schwab
    at_tws = {e["exec_id"].rsplit(".", 1)[0]: (e["shares"], e["price"]) for e in tws.executions}
    assert {f.exec_id: (f.last_qty, f.last_px) for f in fills("ibkr")} == at_tws
    assert {e["ref"] for e in tws.executions} == {f.client_order_id for f in fills("ibkr")}
    assert node.call("broker:schwab", "positions") == schwab.positions()
    stats = node.stats()
    assert stats["broker:schwab"]["refused_duplicate"] == stats["broker:ibkr"]["refused_duplicate"] == 0


def test_a_lost_submit_is_unknown_blocks_its_symbol_until_the_sweep_settles_it(node, fakes):
    """End to end through the validator's symbol block: Schwab answers 500 to a place (nothing
    placed), the order is UNKNOWN, new NVDA risk is refused SYMBOL_UNKNOWN_STATE, and once the
    sweeps show no such order it is REJECTED NOT_AT_BROKER and NVDA trades again."""
    schwab, _ = fakes
    placed_before = len(schwab.placed)
    schwab.fail_next("place", "500")
    (first,) = send(node, "sch-alpha", "NVDA", 1)
    assert first.status == "ACCEPTED"
    coid = client_order_id_for(signal_id_for(first.request_id))
    state = lambda: {o.client_order_id: o.kind for o in node.call("broker:schwab", "orders")}.get(coid)  # noqa: E731
    wait_for(lambda: state() == "UNKNOWN")
    refused = []

    def blocked() -> bool:
        (r,) = send(node, "sch-alpha", "NVDA", 1)
        refused.append(r)
        return r.status == "REJECTED" and "SYMBOL_UNKNOWN_STATE" in r.reasons

    wait_for(blocked, 5)
    wait_for(lambda: state() == "REJECTED", 20)  # settled: never placed
    nvda = [o for o in schwab.placed[placed_before:] if o["orderLegCollection"][0]["instrument"]["symbol"] == "NVDA"]
    assert len(nvda) == sum(r.status == "ACCEPTED" for r in refused)  # the 500'd order was never placed
    wait_for(lambda: send(node, "sch-alpha", "NVDA", 1)[0].status == "ACCEPTED", 10)


@pytest.mark.parametrize("broker", ["schwab", "ibkr"])
def test_cancel_and_replace_signals_at_each_fake(node, fakes, broker):
    """The amend flow (tests/integration/amend_flow.py) through each broker's fake: the fake's own
    record holds exactly the three orders of the run (the amends' refusals never reached it), each
    ended as the node says: two canceled, one replaced by the third."""
    schwab, tws = fakes
    before = len(schwab.placed) if broker == "schwab" else len(tws.orders)
    strategy, symbol = ("sch-amend", "AAPL") if broker == "schwab" else ("ib-amend", "MSFT")
    run = amend_flow(node, strategy, symbol, PRICES[symbol])
    node_view = broker_orders(node, broker, run)
    assert node_view == {coid(run.first): "CANCELED", coid(run.second): "CANCELED", coid(run.replacement): "CANCELED"}
    if broker == "schwab":
        mine = [o for o in schwab.placed[before:] if o["orderType"] == "LIMIT"]  # (other tests' orders are MARKET)
        assert sorted(o["status"] for o in mine) == ["CANCELED", "CANCELED", "REPLACED"]
        assert sorted(o["quantity"] for o in mine) == [3.0, 5.0, 5.0]
    else:
        mine = [o for o in list(tws.orders.values())[before:] if o["type"] == "LMT"]
        assert {o["ref"]: o["status"] for o in mine} == {c: "Cancelled" for c in node_view}
        assert {o["ref"]: o["qty"] for o in mine}[coid(run.replacement)] == 3.0
