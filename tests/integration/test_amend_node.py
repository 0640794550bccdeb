"""Cancel and replace signals end to end on the paper venue: a whole node (validator, native engine
leader and hot standby, broker adapter) on a local Ray (the flow: `tests/integration/amend_flow.py`)."""

from __future__ import annotations

import pytest

from node.messages import ExecKind
from node.runtime import NodeRuntime, quiet
from tests.integration.amend_flow import amend_flow, broker_orders, coid


@pytest.fixture(scope="module")
def node(ray_session, make_config):
    runtime = NodeRuntime(make_config(), quiet)
    runtime.start()
    yield runtime
    runtime.stop()


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
