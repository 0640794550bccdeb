"""Shadow copies across a kill -9 of the paper group's leader (node.modes): the standby that takes
over knows a copy by its strategy id alone, so no copy's report ever reaches the events stream (risk,
the ledger, subscribers), every copy is at the paper venue once, and every live order once."""

from __future__ import annotations

import os
import signal
import time

import pytest

from node import mode_report
from node.client import ExecutionClient
from node.config import BrokerConfig, EngineConfig, EngineGroupConfig, ModeConfig, TradingMode
from node.messages import Signal
from node.modes import SHADOW_SUFFIX
from node.orders import client_order_id_for, signal_id_for
from node.runtime import NodeRuntime, quiet
from node.streams import connect_redis


@pytest.fixture()
def node(ray_session, make_config):
    cfg = make_config(
        brokers=[BrokerConfig(name="pv"), BrokerConfig(name="lv")],
        groups=[
            EngineGroupConfig(name="paper", engines=[EngineConfig(name="p1"), EngineConfig(name="p2")], brokers=["pv"]),
            EngineGroupConfig(name="live", engines=[EngineConfig(name="l1")], brokers=["lv"]),
        ],
        modes=[ModeConfig(strategies=["sh-*"], paper_group="paper", live_group="live", mode=TradingMode.SHADOW)],
        heartbeat_misses=10,
    )
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    yield runtime
    runtime.stop()


def wait_for(pred, timeout_s: float = 60.0, why=lambda: ""):
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "timed out " + str(why())
        time.sleep(0.2)


def test_shadow_copies_stay_apart_across_a_kill_of_the_paper_leader(node):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    tag = "shf-" + str(time.time_ns())
    coids: set[str] = set()
    qty: dict[str, float] = {}
    order: list[str] = []
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        for i in range(60):
            if i == 20:
                os.kill(node.call_supervisor("pid", "engine:p1"), signal.SIGKILL)
            rid = tag + "-" + str(i)
            reply = c.send_signal(Signal(request_id=rid, strategy_id="sh-1", timestamp=time.time(), symbol="AAPL",
                                         action="BUY" if i % 2 else "SELL", quantity=1.0 + i % 5))
            assert reply.status == "ACCEPTED", reply
            coids.add(client_order_id_for(signal_id_for(rid)))
            qty[client_order_id_for(signal_id_for(rid))] = 1.0 + i % 5
            order.append(client_order_id_for(signal_id_for(rid)))
            time.sleep(0.02)
    wait_for(lambda: node.stats()["supervisor"]["groups"]["paper"]["leader"] == "p2")
    orders = lambda b: {o.client_order_id: o.kind for o in node.call("broker:" + b, "orders")}  # noqa: E731
    wait_for(lambda: all(orders("pv").get(x) == "FILL" and orders("lv").get(x) == "FILL" for x in coids),
             why=lambda: sorted((b, k) for b in ("pv", "lv") for x, k in orders(b).items() if x in coids and k != "FILL")
             + [("missing", b, sorted(i for i, x in enumerate(order) if x not in orders(b))) for b in ("pv", "lv")]
             + [{k: v for k, v in node.stats()[e].items() if k in ("role", "asked_last", "recovered_submitted",
                 "recovered_adopted", "recovered_in_flight", "signals", "unconfirmed", "looked_up", "epoch")}
                for e in ("engine:p1", "engine:p2")]
             + [node.stats()["supervisor"].get("failovers")])
    st = node.cfg.storage

    def read():
        return mode_report.read_streams(connect_redis(st.redis_url), st.signals_stream, st.events_stream,
                                        st.shadow_stream)

    wait_for(lambda: {r.client_order_id for r in read()[2] if r.kind == "FILL"} >= coids)
    _, events, copies = read()
    assert all(r.strategy_id == "sh-1" for r in events if r.client_order_id in coids)  # never a copy's
    assert all(r.strategy_id == "sh-1" + SHADOW_SUFFIX for r in copies)
    live_fills = [r.exec_id for r in events if r.client_order_id in coids and r.kind in ("FILL", "PARTIAL_FILL")]
    assert len(live_fills) == len(set(live_fills))  # each live fill once (the live group was never touched)
    for broker in ("pv", "lv"):  # each copy and each live order filled once, for its own quantity
        filled: dict[str, float] = {}
        for f in node.call("broker:" + broker, "fills"):
            if f.client_order_id in coids:
                filled[f.client_order_id] = filled.get(f.client_order_id, 0.0) + f.last_qty
        assert filled == pytest.approx(qty), broker
