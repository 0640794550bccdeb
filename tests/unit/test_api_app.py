"""The HTTP app in-process (no server, no Ray): health rules, admin guard and routing, local
refusals of /v1/signals. The whole path through a real node is in tests/integration/test_api.py."""

import pytest
from fastapi.testclient import TestClient

from actors.api import build_app, health_of
from node.config import ApiConfig

UP = {"validator": {"accepted": 1}, "broker": {}, "engine:a": {"role": "leader"}, "engine": {"role": "leader"},
      "supervisor": {"epoch": 1, "leader": "a", "restarts": [], "failovers": []}}


def client(stats=lambda timeout_s: UP, control=None, token="tok", **api):
    calls = []

    def record(action, body):
        calls.append((action, body))
        return {"done": action}

    app = build_app(ApiConfig(port=0, admin_token=token, **api), stats, control or record)
    return TestClient(app), calls


@pytest.mark.parametrize(
    ("stats", "ok"),
    [
        (UP, True),
        ({**UP, "ledger": {"down": "GetTimeoutError"}}, True),  # the ledger may lag: trading goes on
        ({**UP, "engine:b": {"down": "RayActorError"}}, False),
        ({**UP, "broker": {"down": "GetTimeoutError"}}, False),
        ({k: v for k, v in UP.items() if k != "validator"}, False),  # validator stopped
    ],
)
def test_health_rules(stats, ok):
    assert health_of(stats)[0] is ok


def test_health_endpoint_200_and_503():
    c, _ = client()
    with c:
        r = c.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "actors": {"validator": "up", "broker": "up",
                                                                             "engine:a": "up"}}
    c, _ = client(stats=lambda t: {**UP, "broker": {"down": "X"}})
    with c:
        assert c.get("/health").status_code == 503

    def broken(timeout_s):
        raise TimeoutError

    c, _ = client(stats=broken)
    with c:
        r = c.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "down"


def test_metrics_endpoint():
    c, _ = client()
    with c:
        r = c.get("/metrics")
    assert r.status_code == 200 and 'nae_signals_accepted_total{actor="validator"} 1.0' in r.text
    assert 'nae_actor_up{actor="api"} 1.0' in r.text


def test_admin_disabled_without_a_token():
    c, calls = client(token="")
    with c:
        r = c.post("/admin/kill", headers={"X-Admin-Token": ""})
    assert r.status_code == 403 and r.json()["error"] == "ADMIN_DISABLED" and calls == []


@pytest.mark.parametrize(
    ("path", "body", "action", "args"),
    [
        ("/admin/kill", None, "kill", {}),
        ("/admin/kill", {"strategy_id": "s1"}, "kill", {"strategy_id": "s1"}),
        ("/admin/unkill", None, "unkill", {}),
        ("/admin/pause/s2", None, "pause", {"strategy_id": "s2"}),
        ("/admin/resume/s2", None, "resume", {"strategy_id": "s2"}),
        ("/admin/state", {"state": "REDUCING"}, "state", {"state": "REDUCING"}),
        ("/admin/breaker/reset", {"name": "system"}, "reset-breaker", {"name": "system"}),
        ("/admin/failover", {"to": "b"}, "failover", {"to": "b"}),
    ],
)
def test_admin_routes_to_the_control(path, body, action, args):
    c, calls = client()
    with c:
        r = c.post(path, json=body, headers={"X-Admin-Token": "tok"})
    assert r.status_code == 200 and r.json() == {"ok": True, "action": action, "result": {"done": action}}
    assert calls == [(action, args)]


@pytest.mark.parametrize(("exc", "status"), [(KeyError("name"), 400), (ValueError("bad"), 400), (RuntimeError("x\ny"), 409)])
def test_admin_errors_are_json_not_tracebacks(exc, status):
    def fail(action, body):
        raise exc

    c, _ = client(control=fail)
    with c:
        r = c.post("/admin/state", json={}, headers={"X-Admin-Token": "tok"})
    assert r.status_code == status and r.json()["error"] in ("BAD_REQUEST", "FAILED")
    assert "Traceback" not in r.text


def test_signals_refused_locally_before_any_intake():
    c, _ = client(max_body_bytes=100)
    headers = {"X-Key-Id": "k", "X-Timestamp": "1", "X-Signature": "ab"}
    with c:
        missing = c.post("/v1/signals", content=b"{}", headers={"X-Key-Id": "k"})
        big = c.post("/v1/signals", content=b"x" * 101, headers=headers)
        no_intake = c.post("/v1/signals", content=b"{}", headers=headers)
    assert missing.status_code == 400 and missing.json()["reasons"] == ["SIGNATURE_MISSING"]
    assert big.status_code == 413 and big.json()["reasons"] == ["FRAME_TOO_LARGE"]
    assert no_intake.status_code == 503
