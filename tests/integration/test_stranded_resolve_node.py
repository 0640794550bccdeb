"""A stranded order closed by hand on a whole node: a group moved (by hand) from a broker that never
answered to a broker of another account strands what it sent; `resolve_stranded` (what
`execnode orders resolve` calls) closes it on the operator's word, the validator takes new risk on
the symbol again, and the report reaches subscribers with reason MANUAL_RESOLUTION."""

from __future__ import annotations

import time

import pytest

from node.client import ExecutionClient
from node.config import BrokerConfig, PaperVenueConfig
from node.messages import Signal
from node.runtime import NodeRuntime, quiet


@pytest.fixture(scope="module")
def node(ray_session, make_config):
    cfg = make_config(
        # "silent" acknowledges nothing for a minute: what it was sent stays unanswered
        brokers=[BrokerConfig(name="silent", paper=PaperVenueConfig(latency_us=60_000_000)), BrokerConfig(name="other")],
        heartbeat_misses=10,
    )
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    yield runtime
    runtime.stop()


def send(client, symbol: str, tag: str):
    return client.send_signal(Signal(request_id="sr-" + tag + "-" + str(time.time_ns()), strategy_id="sr",
                                     timestamp=time.time(), symbol=symbol, action="BUY", quantity=2.0))


def wait_for(pred, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while not (value := pred()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return value


def test_a_stranded_order_is_closed_by_hand(node):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as client:
        client.subscribe("sr")
        time.sleep(0.3)
        first = send(client, "MSFT", "a")
        assert first.status == "ACCEPTED"
        wait_for(lambda: node.call("engine", "stats")["in_flight"] == 1)
        moved = node.call_supervisor("broker_failover", None, "other")
        assert moved["stranded"] == 1 and moved["same_account"] is False
        stranded = node.call("engine", "stranded_orders")
        assert [o["request_id"] for o in stranded] == [first.request_id]
        coid = stranded[0]["client_order_id"]
        blocked = wait_for(lambda: (r := send(client, "MSFT", "b")).status == "REJECTED" and r)
        assert "SYMBOL_UNKNOWN_STATE" in blocked.reasons
        validator = node.call_supervisor("stats")["validator"]
        assert validator["unknown_orders"] == 1 and validator["unknown_symbols"] == ["MSFT"]

        with pytest.raises(Exception, match="between"):  # the engine refuses impossible numbers
            node.call("engine", "resolve_stranded", coid, 99.0, 400.0)
        done = node.call("engine", "resolve_stranded", coid, 0.0, 0.0)
        assert done["published"] == ["CANCELED"]
        assert node.call("engine", "stranded_orders") == []
        assert node.call("engine", "stats")["stranded"] == 0
        closed = wait_for(lambda: next((e for e in client.events(timeout_s=0.5) if e.client_order_id == coid
                                        and e.kind == "CANCELED"), None))
        assert closed.reason == "MANUAL_RESOLUTION" and closed.request_id == first.request_id
        after = wait_for(lambda: (r := send(client, "MSFT", "c")).status == "ACCEPTED" and r)
        assert after.status == "ACCEPTED"  # new risk on the symbol again
