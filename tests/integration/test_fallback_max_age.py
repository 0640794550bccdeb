"""A fallback-queued signal carries a maximum age: queued while the intake is down and taken after that
age, it is refused (STALE_TIMESTAMP, never executed late, before risk judges it); one taken in time
executes once; the refusal is remembered, so no later copy of that request executes (the trader decides
again under a new request_id)."""

from __future__ import annotations

import time
import uuid

import pytest

from node.client import ExecutionClient
from nae_client.errors import TransportError  # what the client raises
from node.orders import client_order_id_for, signal_id_for
from node.runtime import NodeRuntime, quiet


@pytest.fixture()
def node(ray_session, make_config):
    runtime = NodeRuntime(make_config(), quiet)
    runtime.start()
    yield runtime
    runtime.stop()


def _signal(tag: str) -> dict:
    return {"request_id": tag + "-" + uuid.uuid4().hex, "strategy_id": "fb-age", "timestamp": time.time(),
            "symbol": "MSFT", "action": "BUY", "quantity": 1.0}


def test_a_queued_signal_older_than_its_max_age_is_refused_not_executed(node):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))

    def client(max_age_ms: int) -> ExecutionClient:
        return ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=0.3,
                               fallback_redis_url=node.redis_url, fallback_stream=node.cfg.storage.intake_stream,
                               fallback_max_age_ms=max_age_ms)

    short, long_ = client(300), client(120_000)
    node.call_supervisor("stop_role", "validator")
    stale = [_signal("stale") for _ in range(5)]
    fresh = [_signal("fresh") for _ in range(5)]
    for c, sigs in ((short, stale), (long_, fresh)):
        for sig in sigs:
            with pytest.raises(TransportError, match="queued"):
                c.send_signal(sig)
    time.sleep(1.0)  # past the short max age
    node.call_supervisor("start_role", "validator")
    for sig in stale:
        verdict = short.fallback.await_reply(sig["request_id"], 15.0)
        assert verdict.status == "REJECTED" and verdict.reasons == ["STALE_TIMESTAMP"], verdict
        assert "max age" in verdict.detail
    for sig in fresh:
        assert long_.fallback.await_reply(sig["request_id"], 15.0).status == "ACCEPTED"
    deadline = time.monotonic() + 10
    want = {client_order_id_for(signal_id_for(s["request_id"])) for s in fresh}
    orders: set[str] = set()
    while not want <= orders and time.monotonic() < deadline:
        orders = {o.client_order_id for o in node.call("broker", "orders")}
        time.sleep(0.2)
    assert want <= orders
    assert not {client_order_id_for(signal_id_for(s["request_id"])) for s in stale} & orders
    # the same request again (a copy, a retry) gets the same refusal; a new decision is a new request_id
    long_.timeout_s = 5.0
    again = long_.send_signal(dict(stale[0], timestamp=time.time()))
    assert again.status == "REJECTED" and again.reasons == ["STALE_TIMESTAMP"] and again.duplicate, again
    anew = long_.send_signal(dict(stale[0], request_id="anew-" + uuid.uuid4().hex, timestamp=time.time()))
    assert anew.status == "ACCEPTED" and not anew.duplicate, anew
    short.close()
    long_.close()
