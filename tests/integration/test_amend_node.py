"""Cancel and replace signals end to end on the paper venue: a whole node (validator, native engine
leader and hot standby, broker adapter) on a local Ray (the flow: `tests/integration/amend_flow.py`)."""

from __future__ import annotations

import pytest

from node.messages import ExecKind
from tests.integration.amend_flow import amend_flow, broker_orders, coid


@pytest.fixture(scope="module")
def node(module_node):
    return module_node


def test_cancel_and_replace_signals_on_the_paper_venue(node):
    price = {s.symbol: s.price for s in node.cfg.broker.paper.symbols}["AAPL"]
    run = amend_flow(node, "amend-paper", "AAPL", price)
    # the venue's own record: the three orders, each canceled; no amend reached it as an order
    assert broker_orders(node, node.cfg.broker.name, run) == {
        coid(run.first): ExecKind.CANCELED, coid(run.second): ExecKind.CANCELED,
        coid(run.replacement): ExecKind.CANCELED,
    }
    stats = node.stats()
    leader = next(v for k, v in stats.items() if k.startswith("engine:") and v.get("role") == "leader")
    assert (leader["cancels_sent"], leader["replaces_sent"], leader["amends_refused"]) == (2, 1, 2)
    assert stats["broker"]["refused_duplicate"] == 0


def test_kill_with_cancel_open_cancels_the_strategys_resting_orders_only(node):
    """`execnode admin kill --cancel-open` (the supervisor's `kill`): the kill switch is on and the
    killed strategy's resting orders are canceled at the venue; another strategy's keep resting."""
    import time

    from node.client import ExecutionClient

    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    tag = str(time.time_ns())
    ids = {s: [s + "-" + tag + "-" + str(i) for i in range(3)] for s in ("kill-me", "keep-me")}
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        for strategy, rids in ids.items():
            for rid in rids:
                assert c.send_signal({"request_id": rid, "strategy_id": strategy, "symbol": "MSFT", "action": "BUY",
                                      "quantity": 2.0, "order_type": "LIMIT", "limit_price": 408.0}).status == "ACCEPTED"
        state = lambda: {o.client_order_id: o.kind for o in node.call("broker", "orders")}  # noqa: E731
        deadline = time.monotonic() + 20
        while any(state().get(coid(r)) != ExecKind.NEW for rs in ids.values() for r in rs):
            assert time.monotonic() < deadline, state()
            time.sleep(0.1)
        out = node.call_supervisor("kill", "kill-me", True)
        assert out["canceled"]["default"]["canceled"] == 3 and out["kill"]
        while any(state().get(coid(r)) != ExecKind.CANCELED for r in ids["kill-me"]):
            assert time.monotonic() < deadline + 10, state()
            time.sleep(0.1)
        assert all(state()[coid(r)] == ExecKind.NEW for r in ids["keep-me"])
        refused = c.send_signal({"strategy_id": "kill-me", "symbol": "MSFT", "action": "BUY", "quantity": 1.0})
        assert refused.reasons == ["STRATEGY_KILLED"]
        node.call("validator", "unkill", "kill-me")
        node.call_supervisor("kill", "keep-me", True)  # leaves nothing resting for the next test
        node.call("validator", "unkill", "keep-me")
