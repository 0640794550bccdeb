"""Broker failover: kill -9 the active broker adapter mid-burst; its group moves to the next broker.

- Two adapters in front of one paper exchange (one account): the new adapter is asked what the
  venue has and the rest is re-driven, so every ACKed signal executes exactly once.
- Two adapters in front of two exchanges (two accounts): an order the lost adapter never answered
  may or may not be at the first exchange, so it is never sent to the second; it is reported
  UNKNOWN with reason BROKER_LOST. No order is ever at both exchanges, and every ACKed signal is
  at one of them or reported BROKER_LOST.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import redis

from node.config import BrokerConfig, EngineConfig
from node.demo import make_signals
from node.messages import ExecKind
from node.orders import client_order_id_for, signal_id_for
from node.streams import unpack_reports
from node.runtime import NodeRuntime, quiet
from tests.chaos.paper_exchange import burst, check_exactly_once, exchange_orders, start_exchange, stop_exchange

pytestmark = pytest.mark.chaos


@pytest.fixture()
def exchanges():
    procs = [start_exchange(), start_exchange()]
    yield [endpoint for _, endpoint in procs]
    for proc, _ in procs:
        stop_exchange(proc)


def run_with_kill(cfg, n: int, kill_at: int, settled: bool = False):
    """A burst of `n` signals, kill -9 of broker `pa` at signal `kill_at`; waits for the group's
    move (and, with `settled`, for the stranded orders to be settled) before returning."""
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    key_id, secret = next(iter(cfg.signing.keys.items()))
    signals = make_signals(n, {s.symbol: s.price for s in cfg.broker.paper.symbols}, seed=5, bad_every=0)

    async def kill(i):
        if i == kill_at:
            pid = await asyncio.get_running_loop().run_in_executor(None, runtime.call_supervisor, "pid", "broker:pa")
            os.kill(pid, signal.SIGKILL)

    try:
        replies = asyncio.run(burst(runtime.registry["intake"], key_id, secret, signals, kill))
        deadline = time.monotonic() + 60
        while True:
            stats = runtime.stats()
            moves = stats["supervisor"]["broker_failovers"]
            done = moves and (not settled or "settled" in moves[0] or not moves[0]["stranded"])
            if (done and "down" not in stats.get("broker:pa", {"down": 1})) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        return runtime, signals, replies, stats  # the tests wait for the orders at the venues themselves
    except BaseException:
        runtime.stop()
        raise


def test_adapter_failover_on_one_account_executes_every_acked_signal_once(ray_session, make_config, exchanges):
    venue = exchanges[0]
    cfg = make_config(heartbeat_misses=10, engines=[EngineConfig(name="a"), EngineConfig(name="b")], brokers=[
        BrokerConfig(name="pa", kind="paper-remote", exchange_endpoint=venue),
        BrokerConfig(name="pb", kind="paper-remote", exchange_endpoint=venue),
    ])
    runtime, signals, replies, stats = run_with_kill(cfg, 3_000, 1_000)
    try:
        check_exactly_once(venue, signals, replies)
        (moved,) = stats["supervisor"]["broker_failovers"]
        print("broker failover:", moved)
        assert (moved["from"], moved["to"], moved["same_account"], moved["stranded"]) == ("pa", "pb", True, 0), moved
        assert stats["supervisor"]["groups"]["default"]["broker"] == "pb"
        assert stats["engine:a"]["role"] == "leader", "a broker failover is not an engine failover"
        # the dead adapter came back on its old address, as a standby broker (its restart is recorded
        # once the leaders it served were resynced: after it answers)
        deadline = time.monotonic() + 30
        while not any(r.get("broker") == "pa" for r in stats["supervisor"]["restarts"]) and time.monotonic() < deadline:
            time.sleep(0.2)
            stats = runtime.stats()
        assert any(r.get("broker") == "pa" for r in stats["supervisor"]["restarts"]), stats["supervisor"]["restarts"]
        assert "down" not in stats["broker:pa"]
    finally:
        runtime.stop()


def stranded_reports(cfg) -> set[str]:
    client = redis.Redis.from_url(cfg.storage.redis_url)
    lost = set()
    for _, fields in client.xrange(cfg.storage.events_stream):
        lost.update(r.client_order_id for r in unpack_reports(fields)
                    if r.kind is ExecKind.UNKNOWN and r.reason == "BROKER_LOST")
    return lost


def test_failover_to_another_account_never_sends_an_order_twice(ray_session, make_config, exchanges):
    first, second = exchanges
    cfg = make_config(heartbeat_misses=10, engines=[EngineConfig(name="a"), EngineConfig(name="b")], brokers=[
        BrokerConfig(name="pa", kind="paper-remote", exchange_endpoint=first),
        BrokerConfig(name="pb", kind="paper-remote", exchange_endpoint=second),
    ])
    runtime, signals, replies, stats = run_with_kill(cfg, 3_000, 1_000, settled=True)
    try:
        assert len(replies) == len(signals), "a reply for every signal"
        # orders of a symbol with a stranded order are refused until it is settled, nothing else
        assert set(replies.values()) <= {"ACCEPTED", "REJECTED"}
        accepted = [client_order_id_for(signal_id_for(rid)) for rid, st in replies.items() if st == "ACCEPTED"]
        (moved,) = stats["supervisor"]["broker_failovers"]
        print("broker failover:", moved)
        assert (moved["to"], moved["same_account"]) == ("pb", False), moved
        assert moved["stranded"] > 0, "orders were in flight at the kill"
        assert "error" not in moved["settled"], moved
        deadline = time.monotonic() + 30
        while True:
            at_first = {o.client_order_id for o in exchange_orders(first)}
            at_second = [o.client_order_id for o in exchange_orders(second)]
            placed = at_first | set(at_second)
            if all(c in placed for c in accepted) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(at_second) == len(set(at_second)) and not at_first & set(at_second), "no order at both venues"
        assert at_second, "orders after the failover went to the second account"
        nowhere = [c for c in accepted if c not in placed]
        assert not nowhere, "%d acked signals never executed" % len(nowhere)
        # every stranded order was settled: found at the first venue, or sent once to the second
        lost = stranded_reports(cfg)
        assert lost and lost <= placed
        assert moved["settled"]["found"] + moved["settled"]["redriven"] >= len(lost), moved
        deadline = time.monotonic() + 30
        while (stranded := runtime.stats()["engine:a"]["stranded"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stranded == 0
    finally:
        runtime.stop()
