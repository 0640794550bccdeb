"""A cancel the leader never sent is sent by the promoted Nautilus standby, once (a real Nautilus kernel
as the warm standby of a native leader, the paper venue): a resting order; the leader frozen
(SIGSTOP: it takes nothing more and sends nothing); a cancel signal accepted, which the standby's
kernel holds (not sent); the frozen leader killed (-9), so the supervisor promotes the Nautilus
standby; it asks the broker, finds the original still open and cancels it: the broker's CANCELED
is the answer, published once, no cancel sent twice, nothing refused."""

from __future__ import annotations

import os
import signal
import time

import pytest

from node.client import ExecutionClient
from node.config import EngineConfig
from node.messages import Amend, AmendKind, Signal
from node.orders import client_order_id_for, signal_id_for
from node.runtime import NodeRuntime, quiet
from node.streams import EVENTS_FIELD, connect_redis, unpack_reports

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def node(ray_session, make_config):
    # a frozen leader is noticed by its heartbeats after 10 s: the standby takes the cancel well
    # before (the test checks it did), and the kill -9 after it is noticed by Ray's death notice
    cfg = make_config(engines=[EngineConfig(name="native-a"), EngineConfig(name="nt-b", kind="nautilus")],
                      heartbeat_interval_ms=100, heartbeat_misses=100)
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    yield runtime
    runtime.stop()


def wait_for(pred, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def coid(rid: str) -> str:
    return client_order_id_for(signal_id_for(rid))


def kinds_at_broker(node) -> dict[str, str]:
    return {o.client_order_id: o.kind for o in node.call("broker", "orders")}


def reports(node, client_order_id: str) -> list[tuple[str, str]]:
    st = node.cfg.storage
    client = connect_redis(st.redis_url)
    return [(r.kind, r.reason) for _, f in client.xrange(st.events_stream) if EVENTS_FIELD in f
            for r in unpack_reports(f) if r.client_order_id == client_order_id]


def kernel(node) -> dict:
    """The standby's kernel counters (a counter at 0 is left out of the stats: read with .get)."""
    return node.call("engine:nt-b", "stats")["child"]


def test_a_cancel_held_by_the_nautilus_standby_is_sent_once_after_its_promotion(node):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    tag = "nth-" + str(time.time_ns())
    original = tag + "-a"

    def signal_(rid: str, amend: Amend | None = None) -> Signal:
        return Signal(request_id=rid, strategy_id="nt-held", timestamp=time.time(), symbol="AAPL", action="BUY",
                      quantity=3.0, order_type="LIMIT", limit_price=223.0, amend=amend)

    assert node.stats()["supervisor"]["leader"] == "native-a"
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        assert c.send_signal(signal_(original)).status == "ACCEPTED"
        wait_for(lambda: kinds_at_broker(node).get(coid(original)) == "NEW")
        wait_for(lambda: reports(node, coid(original)) == [("NEW", "")])
        before = kernel(node)
        assert before["standby"] and before["held_cancels"] == 0, before
        pid = node.call_supervisor("pid", "engine:native-a")
        os.kill(pid, signal.SIGSTOP)  # the leader takes nothing more, sends nothing
        try:
            cancel = Amend(kind=AmendKind.CANCEL, original_request_id=original)
            assert c.send_signal(signal_(tag + "-c", amend=cancel)).status == "ACCEPTED"
            wait_for(lambda: kernel(node)["held_cancels"] == 1)  # the standby holds it, sends nothing
            held = kernel(node)
            assert held["standby"] and held["cancels"] == before["cancels"], held  # not promoted yet
            assert kinds_at_broker(node)[coid(original)] == "NEW"  # nobody sent the cancel
        finally:
            os.kill(pid, signal.SIGKILL)  # the frozen leader dies: Ray's death notice fails it over
    wait_for(lambda: node.stats()["supervisor"]["leader"] == "nt-b")
    wait_for(lambda: kinds_at_broker(node).get(coid(original)) == "CANCELED")
    wait_for(lambda: "CANCELED" in [k for k, _ in reports(node, coid(original))])
    stats = node.call("engine:nt-b", "stats")
    assert stats["role"] == "leader" and stats["last_promotion"]["amend_cancels"] == 1, stats["last_promotion"]
    after = stats["child"]
    assert not after["standby"] and after["cancels"] == before["cancels"] + 1, after  # sent once
    assert after["held_cancels"] == 0, after
    assert [k for k, _ in reports(node, coid(original))] == ["NEW", "CANCELED"]  # one answer, the broker's
    assert not reports(node, coid(tag + "-c"))  # the cancel itself is not refused
    broker = node.stats()["broker"]
    assert broker["refused_duplicate"] == 0 and broker["refused_stale"] == 0, broker


def test_a_replace_held_by_the_nautilus_standby_is_completed_after_its_promotion(node):
    """The leader frozen before it sent the replace's cancel: the promoted standby cancels the original
    (CANCELED, REPLACED) and only then sends the new order, under the replace's own id, once."""
    if node.stats()["supervisor"]["leader"] != "native-a":  # the native engine leads again (Ray restarted it)
        wait_for(lambda: node.stats()["engine:native-a"]["role"] == "standby")
        node.call_supervisor("failover", "native-a")
    wait_for(lambda: kernel(node)["standby"])
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    tag = "nthr-" + str(time.time_ns())
    original, replace = tag + "-a", tag + "-r"

    def signal_(rid: str, qty: float, amend: Amend | None = None) -> Signal:
        return Signal(request_id=rid, strategy_id="nt-held", timestamp=time.time(), symbol="AAPL", action="BUY",
                      quantity=qty, order_type="LIMIT", limit_price=223.0, amend=amend)

    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        assert c.send_signal(signal_(original, 3.0)).status == "ACCEPTED"
        wait_for(lambda: kinds_at_broker(node).get(coid(original)) == "NEW")
        wait_for(lambda: reports(node, coid(original)) == [("NEW", "")])
        before = kernel(node)
        pid = node.call_supervisor("pid", "engine:native-a")
        os.kill(pid, signal.SIGSTOP)
        try:
            amend = Amend(kind=AmendKind.REPLACE, original_request_id=original)
            assert c.send_signal(signal_(replace, 2.0, amend=amend)).status == "ACCEPTED"
            wait_for(lambda: kernel(node).get("held_amends", 0) == before.get("held_amends", 0) + 1)  # recorded, not sent
            assert kernel(node)["standby"]  # not promoted before it held the replace
            assert kinds_at_broker(node)[coid(original)] == "NEW" and coid(replace) not in kinds_at_broker(node)
        finally:
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: node.stats()["supervisor"]["leader"] == "nt-b")
    wait_for(lambda: kinds_at_broker(node).get(coid(replace)) == "NEW")
    assert kinds_at_broker(node)[coid(original)] == "CANCELED"
    assert {o.leaves_qty for o in node.call("broker", "orders") if o.client_order_id == coid(replace)} == {2.0}
    wait_for(lambda: ("CANCELED", "REPLACED") in reports(node, coid(original)))
    wait_for(lambda: [k for k, _ in reports(node, coid(replace))] == ["NEW"])
    stats = node.call("engine:nt-b", "stats")
    assert stats["last_promotion"]["amend_cancels"] == 1, stats["last_promotion"]
    assert stats["child"]["cancels"] == before["cancels"] + 1, stats["child"]  # the original's cancel, once
    assert [k for k, _ in reports(node, coid(original))] == ["NEW", "CANCELED"]
    broker = node.stats()["broker"]
    assert broker["refused_duplicate"] == 0, broker
