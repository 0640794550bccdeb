"""NautilusTrader as the node's leading engine: signals go through a real Nautilus kernel to the
paper broker; kill -9 the Nautilus engine during a paced stream and the native standby takes over
with nothing lost and nothing sent twice."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from bench.failover_report import run_failovers
from node.client import AsyncExecutionClient
from node.config import EngineConfig
from node.demo import make_signals, play
from node.followed import decode_mark, is_execution, logged_mark_key
from node.runtime import NodeRuntime, quiet
from node.streams import unpack_reports
from tests.waits import wait_for


@pytest.fixture(scope="module")
def node(ray_session, make_config):
    # about Nautilus leading and failing over on a kill, not about detection speed: 1 s detection (as
    # README "Testing" says), so a 60 ms stall of an engine on a loaded host is no spurious failover
    cfg = make_config(engines=[EngineConfig(name="nt", kind="nautilus"), EngineConfig(name="native-b")],
                      heartbeat_interval_ms=100, heartbeat_misses=10)
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    yield runtime
    runtime.stop()


def test_signals_execute_through_nautilus(node):
    prices = {s.symbol: s.price for s in node.cfg.broker.paper.symbols}
    # whole-share market orders: the Nautilus instruments trade whole shares
    signals = [s for s in make_signals(400, prices, seed=3, bad_every=0) if s.quantity is not None][:300]
    key_id, secret = next(iter(node.cfg.signing.keys.items()))

    async def go():
        async with AsyncExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
            return await play(c, signals, window=64, settle_s=30)

    res = asyncio.run(go()).summary()
    assert res["accepted"] == len(signals) and res["lost"] == 0 and res["duplicates"] == 0, res
    stats = node.stats()
    assert stats["engine:nt"]["kind"] == "nautilus" and stats["engine:nt"]["relayed"] >= len(signals)
    assert stats["engine:nt"]["published"] > 0
    assert stats["broker"]["submitted"] >= len(signals)
    # the Nautilus leader's logged mark (node.followed) names its newest execution, in the entry that
    # holds it: a standby promoted after it reads the events stream from there, not back by time
    client = redis.Redis.from_url(node.cfg.storage.redis_url)
    try:
        stream, key = node.cfg.storage.events_stream, logged_mark_key(node.cfg.node_id, "default")
        newest = lambda: [r.exec_id for _, f in client.xrange(stream) for r in unpack_reports(f)  # noqa: E731
                          if is_execution(r)][-1]
        wait_for(lambda: (decode_mark(client.get(key)) or ("", ""))[1] == newest(), poll_s=0.2)
        entry, exec_id = decode_mark(client.get(key))
        assert exec_id in {r.exec_id for r in unpack_reports(client.xrange(stream, entry, entry)[0][1])}
    finally:
        client.close()


def test_killing_the_nautilus_leader_fails_over_to_native(node):
    sup = node.stats()["supervisor"]
    assert sup["leader"] == "nt", sup  # the Nautilus engine leads when it is killed
    out = asyncio.run(run_failovers(node, kills=1, rate=200.0, gap_s=2.0))
    assert out["lost"] == 0 and out["duplicate_broker_orders"] == 0, out
    failovers = node.stats()["supervisor"]["failovers"]
    first = [(e["from"], e["to"]) for e in failovers if e["epoch"] == sup["epoch"] + 1]
    assert first == [("nt", "native-b")], failovers  # the kill's failover went to the native standby
    # it read the events stream for the followed fills from the Nautilus leader's logged mark
    assert node.stats()["engine:native-b"]["followed_from_mark"] == 1
    # Ray re-creates the killed engine with its first wiring (leader, recover=True, epoch 1): it opens
    # as a standby (node.engine_opening), so what it says of itself is true, and nobody had to tell
    # it to step down (no churn)
    deadline = time.monotonic() + 60
    while (nt := node.stats()["engine:nt"]).get("role") != "standby":
        assert time.monotonic() < deadline, nt
        time.sleep(0.2)
    assert node.stats()["supervisor"]["stale_demotes"] == 0
