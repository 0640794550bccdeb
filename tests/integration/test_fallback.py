"""The fallback path: with the ZeroMQ intake down, the client appends signed signals to the intake
stream; the validator, once back, judges them with the same checks; every signal executes once,
whichever way (or both ways) it arrived."""

from __future__ import annotations

import time
import uuid

import pytest

from node.client import ExecutionClient
from nae_client.errors import TransportError  # what the client raises
from node.orders import client_order_id_for, signal_id_for
from node.runtime import NodeRuntime, quiet

N = 20


@pytest.fixture()
def node(ray_session, make_config):
    runtime = NodeRuntime(make_config(), quiet)
    runtime.start()
    yield runtime
    runtime.stop()


def test_intake_down_fallback_then_restart_executes_each_signal_once(node):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    client = ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=0.3,
                             fallback_redis_url=node.redis_url, fallback_stream=node.cfg.storage.intake_stream)
    assert client.send_signal({"strategy_id": "fb", "symbol": "AAPL", "action": "BUY", "quantity": 1.0}).status == "ACCEPTED"
    node.call_supervisor("stop_role", "validator")
    signals = [{"request_id": "fb-" + uuid.uuid4().hex, "strategy_id": "fb", "timestamp": time.time(),
                "symbol": "MSFT", "action": "BUY", "quantity": 2.0} for _ in range(N)]
    signals.append(dict(signals[0], request_id="fb-bad-" + uuid.uuid4().hex, quantity=-1.0))
    for sig in signals:
        with pytest.raises(TransportError, match="queued on .*intake"):
            client.send_signal(sig)
    assert client.fallback.queued == len(signals)
    node.call_supervisor("start_role", "validator")
    # the verdicts arrive on the client's reply stream
    verdicts = {sig["request_id"]: client.fallback.await_reply(sig["request_id"], 10.0) for sig in signals}
    assert [v.status for v in verdicts.values()].count("ACCEPTED") == N, [(v.status, v.reasons, v.detail) for v in verdicts.values()]
    assert verdicts[signals[-1]["request_id"]].reasons == ["INVALID_NUMBER"]
    # the same signals again over ZeroMQ: answered as retries, no new orders
    client.timeout_s = 5.0
    for sig in signals[:N]:
        reply = client.send_signal(sig)
        assert reply.status == "ACCEPTED" and reply.duplicate, reply
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        orders = {o.client_order_id for o in node.call("broker", "orders")}
        if all(client_order_id_for(signal_id_for(s["request_id"])) in orders for s in signals[:N]):
            break
        time.sleep(0.2)
    for sig in signals[:N]:
        assert client_order_id_for(signal_id_for(sig["request_id"])) in orders
    stats = node.stats()
    assert stats["validator"]["fallback_frames"] == len(signals)
    assert stats["broker"]["submitted"] == N + 1  # the first signal + N, each once
    client.close()
