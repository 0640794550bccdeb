"""The operator HTTP API on a real node: health, Prometheus metrics, the seed-compatible
`POST /v1/signals` (signed JSON through the same gate as ZeroMQ), admin controls behind a token."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import httpx
import msgspec
import pytest

from node.config import EngineConfig
from node.runtime import NodeRuntime, quiet


@pytest.fixture(scope="module")
def node(ray_session, make_config):
    cfg = make_config(engines=[EngineConfig(name="a"), EngineConfig(name="b")])
    cfg = msgspec.structs.replace(cfg, api=msgspec.structs.replace(cfg.api, intake_timeout_ms=1_000))
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    yield runtime
    runtime.stop()


@pytest.fixture(scope="module")
def http(node):
    with httpx.Client(base_url=node.registry["api"], timeout=30) as client:
        yield client


def signal_body(strategy: str = "http", **fields) -> bytes:
    signal = {"request_id": uuid.uuid4().hex, "strategy_id": strategy, "timestamp": time.time(),
              "symbol": "AAPL", "action": "BUY", "quantity": 1.0, **fields}
    return json.dumps(signal).encode()


def seed_headers(node, body: bytes, ts_ns: int | None = None, secret: bytes | None = None) -> dict[str, str]:
    """The seed's scheme, written out here: hex HMAC-SHA256(secret, ts_ns 8 bytes big-endian + body)."""
    key_id, key = next(iter(node.cfg.signing.keys.items()))
    ts_ns = ts_ns or time.time_ns()
    mac = hmac.new(secret or key.encode(), ts_ns.to_bytes(8, "big") + body, hashlib.sha256).hexdigest()
    return {"X-Key-Id": key_id, "X-Timestamp": str(ts_ns), "X-Signature": mac, "Content-Type": "application/json"}


def post_signal(http, node, body: bytes, **kw) -> httpx.Response:
    return http.post("/v1/signals", content=body, headers=seed_headers(node, body, **kw))


def broker_order(node, signal_id: str, timeout_s: float = 10.0):
    """The broker's snapshot of the order for `signal_id` once it is done, or the last one seen."""
    deadline = time.monotonic() + timeout_s
    found = None
    while time.monotonic() < deadline:
        found = next((o for o in node.call("broker", "orders") if signal_id in o.client_order_id), None)
        if found is not None and found.kind in ("FILL", "CANCELED", "REJECTED"):
            return found
        time.sleep(0.05)
    return found


def test_health_lists_every_actor_up(http):
    health = http.get("/health")
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    assert set(health.json()["actors"]) >= {"validator", "broker", "engine:a", "engine:b"}
    assert set(health.json()["actors"].values()) == {"up"}


def test_a_signed_json_signal_is_accepted_and_filled(http, node):
    body = signal_body(strategy="http-fill")
    reply = post_signal(http, node, body)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["status"] == "ACCEPTED" and answer["reasons"] == []
    assert answer["request_id"] == json.loads(body)["request_id"] and answer["signal_id"]
    order = broker_order(node, answer["signal_id"])
    assert order is not None and order.kind == "FILL" and order.cum_qty == 1.0

    # a retry (same body, signed again later) is answered again and places nothing new
    again = post_signal(http, node, body)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["signal_id"] == answer["signal_id"]
    assert sum(answer["signal_id"] in o.client_order_id for o in node.call("broker", "orders")) == 1


def test_a_retry_restamped_or_sent_over_zeromq_gets_the_first_answer(http, node):
    """Issue 10 item 8: the same request, stamped and signed anew, over HTTP and over the ZeroMQ
    client, is answered with the first answer (never REPLAY, never a second order)."""
    from node.client import ExecutionClient

    signal = json.loads(signal_body(strategy="http-retry"))
    first = post_signal(http, node, json.dumps(signal).encode())
    assert first.status_code == 200, first.text
    restamped = json.dumps(dict(signal, timestamp=time.time()), indent=1).encode()
    again = post_signal(http, node, restamped)
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True and again.json()["signal_id"] == first.json()["signal_id"]
    key_id, key = next(iter(node.cfg.signing.keys.items()))
    with ExecutionClient(node.registry["intake"], key_id, key, timeout_s=10.0) as client:
        by_zmq = client.send_signal({k: v for k, v in signal.items() if k != "timestamp"})
    assert by_zmq.status == "ACCEPTED" and by_zmq.duplicate and by_zmq.signal_id == first.json()["signal_id"]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ({"secret": b"not-the-secret"}, "SIGNATURE_INVALID"),
        ({"ts_ns": time.time_ns() - 3_600 * 10**9}, "STALE_TIMESTAMP"),
    ],
)
def test_the_gate_refuses_a_bad_signature_with_422(http, node, tamper, reason):
    body = signal_body()
    reply = post_signal(http, node, body, **tamper)
    assert reply.status_code == 422, reply.text
    assert reply.json()["status"] == "REJECTED" and reply.json()["reasons"] == [reason]
    assert reply.json()["request_id"] == json.loads(body)["request_id"]


def test_a_signature_over_other_bytes_is_refused(http, node):
    body = signal_body()
    headers = seed_headers(node, body)
    tampered = body.replace(b'"quantity": 1.0', b'"quantity": 9.0')
    reply = http.post("/v1/signals", content=tampered, headers=headers)
    assert reply.status_code == 422 and reply.json()["reasons"] == ["SIGNATURE_INVALID"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (signal_body(quantity=-1.0), "INVALID_NUMBER"),
        (signal_body(colour="red"), "UNKNOWN_FIELD"),
        (b"{not json", "MALFORMED_FRAME"),
        (signal_body(quantity=1.0, notional=100.0), "SIZE_SPEC"),
    ],
)
def test_schema_and_rules_are_judged_by_the_gate(http, node, body, reason):
    reply = post_signal(http, node, body)
    assert reply.status_code == 422, reply.text
    assert reason in reply.json()["reasons"]


@pytest.mark.parametrize("missing", ["X-Key-Id", "X-Timestamp", "X-Signature"])
def test_a_missing_header_is_a_400_with_a_reason(http, node, missing):
    body = signal_body()
    headers = {k: v for k, v in seed_headers(node, body).items() if k != missing}
    reply = http.post("/v1/signals", content=body, headers=headers)
    assert reply.status_code == 400
    assert reply.json()["reasons"] == ["SIGNATURE_MISSING"] and missing in reply.json()["detail"]


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [("X-Timestamp", "yesterday", "MALFORMED_FRAME"), ("X-Signature", "zz-not-hex", "SIGNATURE_INVALID")],
)
def test_a_malformed_header_is_a_400_with_a_reason(http, node, header, value, reason):
    body = signal_body()
    reply = http.post("/v1/signals", content=body, headers={**seed_headers(node, body), header: value})
    assert reply.status_code == 400 and reply.json()["reasons"] == [reason]


def test_a_body_over_64_kib_is_a_413_in_json(http, node):
    body = signal_body(model_id="m") + b" " * 65_536
    reply = post_signal(http, node, body)
    assert reply.status_code == 413
    assert reply.json()["reasons"] == ["FRAME_TOO_LARGE"]


def test_metrics_carry_the_counters(http, node):
    post_signal(http, node, signal_body(strategy="metrics"))
    post_signal(http, node, signal_body(), secret=b"wrong")
    reply = http.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    accepted = [line for line in text.splitlines() if line.startswith('nae_signals_accepted_total{actor="validator"}')]
    assert accepted and float(accepted[0].split()[-1]) >= 1
    assert 'nae_rejections_total{actor="validator",reason="SIGNATURE_INVALID"}' in text
    assert 'nae_rejections_total{actor="api",reason="SIGNATURE_MISSING"}' in text
    for name in ("nae_epoch ", 'nae_actor_up{actor="broker:paper"} 1.0', 'nae_engine_leader{actor="engine:a"} 1.0',
                 "nae_orders_in_flight{", "nae_broker_orders_submitted_total{", "nae_restarts_total{",
                 "nae_api_signals_forwarded_total{", "nae_scrape_error 0.0"):
        assert name in text, name


def test_live_metrics_pass_promtool_and_carry_the_histograms(http, node):
    import shutil
    import subprocess

    post_signal(http, node, signal_body(strategy="promtool"))
    node.call_supervisor("failover", "b", "manual", 0, None)
    node.call_supervisor("failback", None)
    text = http.get("/metrics").text
    for name in ('nae_signal_reply_seconds_bucket{actor="validator",le="+Inf"}',
                 'nae_signal_append_seconds_count{actor="validator"}', "nae_failover_seconds_count 2.0",
                 'nae_signal_fill_seconds_bucket{actor="engine:a",le="+Inf"}',
                 'nae_build_info{', 'last_error'):
        if name == "last_error":
            assert name not in text  # strings are not metrics
            continue
        assert name in text, name
    fills = [line for line in text.splitlines() if line.startswith('nae_signal_fill_seconds_count{actor="engine:a"}')]
    assert fills and float(fills[0].split()[-1]) >= 1  # the leader's fills (earlier tests filled through it)
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    out = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), (out.stdout + out.stderr).decode()


def test_readyz_and_health_probe_the_stores(http):
    assert http.get("/livez").json() == {"live": True}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"ready": True, "not_ready": []}
    components = http.get("/health").json()["components"]
    assert components["redis"]["status"] == "up" and components["validator"]["status"] == "up"


def test_openapi_is_served(http):
    doc = http.get("/openapi.json").json()
    assert doc["info"]["title"] == "NAE execution node" and "/v1/signals" in doc["paths"]


def test_admin_needs_the_token(http):
    none = http.post("/admin/kill")
    wrong = http.post("/admin/kill", headers={"X-Admin-Token": "wrong"})
    assert none.status_code == 403 and wrong.status_code == 403
    assert none.json()["error"] == "FORBIDDEN"


def test_admin_pause_resume_kill_state_breaker(http, node):
    auth = {"X-Admin-Token": node.cfg.api.admin_token}
    assert http.post("/admin/pause/paused-s", headers=auth).status_code == 200
    paused = post_signal(http, node, signal_body(strategy="paused-s"))
    assert paused.status_code == 422 and "STRATEGY_PAUSED" in paused.json()["reasons"]
    assert http.post("/admin/resume/paused-s", headers=auth).status_code == 200
    assert post_signal(http, node, signal_body(strategy="paused-s")).status_code == 200

    assert http.post("/admin/kill", json={"strategy_id": "killed-s"}, headers=auth).status_code == 200
    killed = post_signal(http, node, signal_body(strategy="killed-s"))
    assert killed.status_code == 422 and "STRATEGY_KILLED" in killed.json()["reasons"]
    assert http.post("/admin/unkill", json={"strategy_id": "killed-s"}, headers=auth).status_code == 200
    assert post_signal(http, node, signal_body(strategy="killed-s")).status_code == 200

    assert http.post("/admin/state", json={"state": "HALTED", "strategy_id": "halt-s"}, headers=auth).status_code == 200
    halted = post_signal(http, node, signal_body(strategy="halt-s"))
    assert halted.status_code == 422 and "HALTED" in halted.json()["reasons"]
    assert http.post("/admin/state", json={"state": "ACTIVE", "strategy_id": "halt-s"}, headers=auth).status_code == 200

    assert http.post("/admin/breaker/reset", json={"name": "execution"}, headers=auth).status_code == 200
    missing = http.post("/admin/breaker/reset", json={}, headers=auth)
    assert missing.status_code == 400 and "name" in missing.json()["detail"]
    bad = http.post("/admin/state", content=b"[1]", headers=auth)
    assert bad.status_code == 400
    assert http.post("/admin/launch-missiles", headers=auth).status_code == 400


def test_admin_failover_and_failback(http, node):
    auth = {"X-Admin-Token": node.cfg.api.admin_token}
    moved = http.post("/admin/failover", json={"to": "b"}, headers=auth)
    assert moved.status_code == 200 and moved.json()["result"]["to"] == "b"
    back = http.post("/admin/failback", headers=auth)
    assert back.status_code == 200 and back.json()["result"]["to"] == "a"


def test_intake_down_is_503_then_recovers(http, node):
    node.call_supervisor("stop_role", "validator")
    try:
        health = http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        reply = post_signal(http, node, signal_body())
        assert reply.status_code == 503 and reply.json()["reasons"] == ["TIMEOUT"]
    finally:
        node.call_supervisor("start_role", "validator")
    health = http.get("/health")
    assert health.status_code == 200, health.json()
    assert post_signal(http, node, signal_body()).status_code == 200
