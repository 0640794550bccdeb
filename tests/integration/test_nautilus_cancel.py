"""Cancels through a real Nautilus kernel (the node's Nautilus engine leading, the paper venue): a
cancel signal cancels a resting order through Nautilus's `cancel_order`; a cancel of an order that
never was is refused on its own id; a replace of a canceled order is refused (AMEND_ORDER_DONE), a
replace of a resting one cancels it (CANCELED, REPLACED) and only then sends the new order; and the
kill switch's `--cancel-open` cancels the strategy's resting orders through the kernel."""

from __future__ import annotations

import time

import pytest

from node.client import ExecutionClient
from node.config import EngineConfig
from node.messages import Amend, AmendKind, Signal
from node.orders import client_order_id_for, signal_id_for
from node.runtime import NodeRuntime, quiet
from node.streams import EVENTS_FIELD, connect_redis, unpack_reports
from tests.waits import wait_for


@pytest.fixture(scope="module")
def node(ray_session, make_config):
    cfg = make_config(engines=[EngineConfig(name="nt", kind="nautilus")])
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    yield runtime
    runtime.stop()


def coid(rid: str) -> str:
    return client_order_id_for(signal_id_for(rid))


def kinds_at_broker(node) -> dict[str, str]:
    return {o.client_order_id: o.kind for o in node.call("broker", "orders")}


def reports(node) -> list:
    st = node.cfg.storage
    client = connect_redis(st.redis_url)
    return [r for _, f in client.xrange(st.events_stream) if EVENTS_FIELD in f for r in unpack_reports(f)]


def test_cancels_and_cancel_open_through_the_nautilus_kernel(node):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    tag = "ntc-" + str(time.time_ns())

    def signal(rid: str, strategy: str = "nt-c", qty: float = 3.0, amend: Amend | None = None) -> Signal:
        return Signal(request_id=rid, strategy_id=strategy, timestamp=time.time(), symbol="AAPL", action="BUY",
                      quantity=qty, order_type="LIMIT", limit_price=223.0, amend=amend)

    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        assert c.send_signal(signal(tag + "-a")).status == "ACCEPTED"
        wait_for(lambda: kinds_at_broker(node).get(coid(tag + "-a")) == "NEW")
        cancel = Amend(kind=AmendKind.CANCEL, original_request_id=tag + "-a")
        assert c.send_signal(signal(tag + "-c", amend=cancel)).status == "ACCEPTED"
        wait_for(lambda: kinds_at_broker(node).get(coid(tag + "-a")) == "CANCELED")
        wait_for(lambda: ("CANCELED", "nt-c") in {(r.kind, r.strategy_id) for r in reports(node)
                                                   if r.client_order_id == coid(tag + "-a")})

        nothing = Amend(kind=AmendKind.CANCEL, original_request_id=tag + "-never")
        assert c.send_signal(signal(tag + "-c2", amend=nothing)).status == "ACCEPTED"
        wait_for(lambda: [(r.kind, r.reason) for r in reports(node) if r.client_order_id == coid(tag + "-c2")]
                 == [("REJECTED", "AMEND_UNKNOWN_ORIGINAL")])

        done = Amend(kind=AmendKind.REPLACE, original_request_id=tag + "-a")  # -a is canceled
        assert c.send_signal(signal(tag + "-r", amend=done)).status == "ACCEPTED"
        wait_for(lambda: [(r.kind, r.reason) for r in reports(node) if r.client_order_id == coid(tag + "-r")]
                 == [("REJECTED", "AMEND_ORDER_DONE")])

        assert c.send_signal(signal(tag + "-b")).status == "ACCEPTED"
        wait_for(lambda: kinds_at_broker(node).get(coid(tag + "-b")) == "NEW")
        replace = Amend(kind=AmendKind.REPLACE, original_request_id=tag + "-b")
        assert c.send_signal(signal(tag + "-r2", qty=2.0, amend=replace)).status == "ACCEPTED"
        wait_for(lambda: kinds_at_broker(node).get(coid(tag + "-r2")) == "NEW")
        assert kinds_at_broker(node).get(coid(tag + "-b")) == "CANCELED"  # the new order went out after
        wait_for(lambda: ("CANCELED", "REPLACED") in {(r.kind, r.reason) for r in reports(node)
                                                      if r.client_order_id == coid(tag + "-b")})
        assert {o.leaves_qty for o in node.call("broker", "orders") if o.client_order_id == coid(tag + "-r2")} == {2.0}

        resting = [tag + "-k" + str(i) for i in range(2)]
        for i, rid in enumerate(resting):
            assert c.send_signal(signal(rid, strategy="nt-k", qty=1.0 + i)).status == "ACCEPTED"
        wait_for(lambda: all(kinds_at_broker(node).get(coid(r)) == "NEW" for r in resting))
    out = node.call_supervisor("kill", "nt-k", True)
    try:
        [group] = out["canceled"].values()
        assert group["canceled"] == 2 and set(group["client_order_ids"]) == {coid(r) for r in resting}, out
        wait_for(lambda: all(kinds_at_broker(node).get(coid(r)) == "CANCELED" for r in resting))
    finally:
        node.call("validator", "unkill", "nt-k")
    assert node.stats()["broker"]["refused_duplicate"] == 0
