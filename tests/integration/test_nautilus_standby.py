"""NautilusTrader as the node's hot standby: a native leader, a Nautilus standby whose kernel runs
warm and holds every order. kill -9 the native leader during a paced stream and the Nautilus engine
leads within a fraction of its cold start, with nothing lost and nothing sent twice; a Nautilus
engine failed over away from sends nothing any more."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.failover_report import run_failovers
from node.client import AsyncExecutionClient
from node.config import EngineConfig
from node.demo import play
from node.messages import Signal
from node.orders import client_order_id_for, signal_id_for
from node.runtime import NodeRuntime, quiet

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def node(ray_session, make_config):
    # detection in 1 s, not 60 ms: on a loaded 2-core machine a 60 ms stall is common, and these
    # tests are about the promotion, not about how fast a death is noticed
    cfg = make_config(engines=[EngineConfig(name="native-a"), EngineConfig(name="nt-b", kind="nautilus")],
                      heartbeat_interval_ms=100, heartbeat_misses=10)
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    yield runtime
    runtime.stop()


def _signals(n: int, tag: str) -> list[Signal]:
    """Whole-share market orders (the Nautilus instruments trade whole shares)."""
    run = tag + "-" + str(time.time_ns())
    return [Signal(request_id=run + "-" + str(i), strategy_id="standby", timestamp=time.time(),
                   symbol=("AAPL", "MSFT", "SPY")[i % 3], action="BUY" if i % 2 else "SELL",
                   quantity=float(1 + i % 20)) for i in range(n)]


def _play(node: NodeRuntime, signals: list[Signal]) -> dict:
    key_id, secret = next(iter(node.cfg.signing.keys.items()))

    async def go():
        async with AsyncExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
            return await play(c, signals, window=32, settle_s=15)

    return asyncio.run(go()).summary()


def test_the_nautilus_standby_runs_a_warm_kernel_that_sends_nothing(node):
    signals = _signals(60, "warm")
    res = _play(node, signals)
    assert res["accepted"] == len(signals) and res["lost"] == 0, res
    nt = node.stats()["engine:nt-b"]
    assert nt["role"] == "standby" and nt["child_pid"], nt
    child = nt["child"]
    assert child["standby"] and child["trader_running"], child
    assert child["sent"] == 0 and child["held_sends"] >= len(signals), child
    assert child["followed"] >= len(signals), child  # it followed the leader's reports


def test_killing_the_native_leader_promotes_the_warm_nautilus_standby(node):
    out = asyncio.run(run_failovers(node, kills=1, rate=200.0, gap_s=2.0))
    stats = node.stats()
    sup, nt = stats["supervisor"], stats["engine:nt-b"]
    assert out["lost"] == 0 and out["duplicate_broker_orders"] == 0, out
    # the promoted leader never sent under a fenced epoch; the fence may refuse only the killed
    # engine's own last commands (in flight at its death, read by the broker after the promotion)
    assert set(out["refused_stale_from"]) <= {"native-a"}, out
    assert stats["engine:native-a"]["role"] == "standby", stats["engine:native-a"]  # Ray's restart leads nothing
    assert sup["leader"] == "nt-b" and nt["role"] == "leader", sup
    promotion = [f for f in sup["failovers"] if f["to"] == "nt-b"][-1]
    promote_ms = promotion["promote_us"] / 1000
    cold_ms = nt["child_ready_ms"]
    print("\nnautilus standby -> leader: promote %.1f ms (warm; this kernel's cold start %.0f ms); %s"
          % (promote_ms, cold_ms, nt["last_promotion"]))
    # warm: the kernel that ran as the standby leads (how long the promotion takes is measured by
    # `python -m bench.failover_report --engines native,nautilus` (phases_ms), not asserted here: the
    # child works through the replayed log first)
    assert not nt["last_promotion"]["cold"], nt["last_promotion"]
    assert nt["child"]["sent"] > 0 and not nt["child"]["standby"], nt["child"]


def test_a_demoted_nautilus_engine_sends_nothing(node):
    if node.stats()["supervisor"]["leader"] != "nt-b":  # on its own: make it the leader first
        node.call_supervisor("failover", "nt-b")
    event = node.call_supervisor("failover", "native-a")
    assert event["to"] == "native-a", event
    before = node.stats()
    nt0 = before["engine:nt-b"]
    assert nt0["role"] == "standby" and nt0["child"]["standby"], (nt0, before["supervisor"])
    signals = _signals(120, "demoted")
    res = _play(node, signals)
    assert res["accepted"] == len(signals) and res["lost"] == 0, res
    after = node.stats()
    nt1 = after["engine:nt-b"]["child"]
    assert nt1["sent"] == nt0["child"]["sent"], (nt0["child"], nt1)  # not one send since the demotion
    assert nt1["held_sends"] - nt0["child"]["held_sends"] >= len(signals), nt1  # it still holds them
    assert after["broker"]["refused_stale"] == before["broker"]["refused_stale"], after["broker"]
    assert after["broker"]["refused_duplicate"] == before["broker"]["refused_duplicate"], after["broker"]
    at_broker = {o.client_order_id for o in node.call("broker", "orders")}
    missing = [s.request_id for s in signals if client_order_id_for(signal_id_for(s.request_id)) not in at_broker]
    assert not missing, missing[:5]
