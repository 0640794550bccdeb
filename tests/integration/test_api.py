"""The operator HTTP API: health, Prometheus metrics, admin controls guarded by a token."""

from __future__ import annotations

import httpx
import pytest

from node.config import EngineConfig
from node.runtime import NodeRuntime, quiet


@pytest.fixture(scope="module")
def node(ray_session, make_config):
    runtime = NodeRuntime(make_config(engines=[EngineConfig(name="a"), EngineConfig(name="b")]), quiet)
    runtime.start()
    yield runtime
    runtime.stop()


def test_health_and_metrics(node):
    base = node.registry["api"]
    health = httpx.get(base + "/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert set(health.json()["actors"]) >= {"validator", "broker", "engine:a", "engine:b"}
    from node.client import ExecutionClient

    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    with ExecutionClient(node.registry["intake"], key_id, secret) as c:
        c.send_signal({"strategy_id": "api", "symbol": "AAPL", "action": "BUY", "quantity": 1.0})
        c.send_signal({"strategy_id": "api", "symbol": "AAPL", "action": "BUY", "quantity": -1.0})
    text = httpx.get(base + "/metrics", timeout=10).text
    assert 'nae_accepted{actor="validator"}' in text
    assert 'nae_rejections_total{actor="validator",reason="INVALID_NUMBER"}' in text
    assert "nae_epoch " in text


def test_admin_needs_the_token_and_controls_the_node(node):
    base = node.registry["api"]
    token = node.cfg.api.admin_token
    assert httpx.post(base + "/admin/kill", timeout=10).status_code == 403
    assert httpx.post(base + "/admin/kill", headers={"X-Admin-Token": "wrong"}, timeout=10).status_code == 403
    ok = httpx.post(base + "/admin/pause", json={"strategy_id": "s9"}, headers={"X-Admin-Token": token}, timeout=10)
    assert ok.status_code == 200 and ok.json()["ok"]
    missing = httpx.post(base + "/admin/pause", json={}, headers={"X-Admin-Token": token}, timeout=10)
    assert missing.status_code == 400 and "strategy_id" in missing.json()["detail"]
    moved = httpx.post(base + "/admin/failover", json={"to": "b"}, headers={"X-Admin-Token": token}, timeout=30)
    assert moved.status_code == 200 and moved.json()["result"]["to"] == "b"
    back = httpx.post(base + "/admin/failback", headers={"X-Admin-Token": token}, timeout=30)
    assert back.status_code == 200 and back.json()["result"]["to"] == "a"
    unknown = httpx.post(base + "/admin/launch-missiles", headers={"X-Admin-Token": token}, timeout=10)
    assert unknown.status_code == 400
