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
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["ready"] is True
    assert r.json()["actors"] == {"validator": "up", "broker": "up", "engine:a": "up"}
    assert r.json()["components"]["validator"] == {"status": "up"}
    c, _ = client(stats=lambda t: {**UP, "broker:paper": {"down": "X"}})
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
        ("/admin/mode", {"strategy_id": "s1", "mode": "shadow"}, "mode", {"strategy_id": "s1", "mode": "shadow"}),
        ("/admin/modes", None, "modes", {}),
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


class FakeProbe:
    """Stands in for node.health.StoreProbe's I/O (the real one runs against Redis in tests/integration)."""

    def __init__(self, stores):
        self.stores = stores

    async def check(self):
        return {k: dict(v) for k, v in self.stores.items()}

    async def close(self):
        pass


def test_livez_readyz_and_health_components():
    stores = {"redis": {"status": "up"}, "postgresql": {"status": "up"}, "ledger_lag": {"status": "up", "entries": 3}}
    app = build_app(ApiConfig(port=0, ready_max_ledger_lag=10), lambda t: UP, lambda a, b: None,
                    probe=FakeProbe(stores))
    with TestClient(app) as c:
        assert c.get("/livez").json() == {"live": True}
        assert c.get("/readyz").status_code == 200
        health = c.get("/health").json()
        assert set(health["components"]) >= {"redis", "postgresql", "ledger_lag", "validator", "engine:a"}
        stores["ledger_lag"]["entries"] = 11
        r = c.get("/readyz")
        assert r.status_code == 503 and "ledger: 11 entries behind (bound 10)" in r.json()["not_ready"]
        stores["ledger_lag"]["entries"] = 0
        stores["redis"] = {"status": "down", "detail": "ConnectionError: refused"}
        r = c.get("/readyz")
        assert r.status_code == 503 and "Redis cannot be written" in r.json()["not_ready"][0]
        h = c.get("/health")
        assert h.status_code == 503 and h.json()["components"]["redis"]["status"] == "down"
        assert c.get("/livez").status_code == 200  # liveness never depends on the stores


def test_readyz_503_after_a_failed_append():
    failures = [0]
    stats = lambda t: {**UP, "validator": {"store_failures": failures[0]}}  # noqa: E731
    with TestClient(build_app(ApiConfig(port=0), stats, lambda a, b: None)) as c:
        assert c.get("/readyz").status_code == 200
        failures[0] = 1
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["not_ready"] == ["signal log: the validator's appends are failing"]


def test_openapi_documents_every_route_with_typed_bodies():
    c, _ = client()
    with c:
        doc = c.get("/openapi.json").json()
        assert c.get("/docs").status_code == 200
    paths = doc["paths"]
    for path in ("/v1/signals", "/livez", "/readyz", "/health", "/metrics", "/admin/kill", "/admin/unkill",
                 "/admin/state", "/admin/pause/{strategy_id}", "/admin/resume/{strategy_id}", "/admin/breaker/reset",
                 "/admin/failover", "/admin/failback", "/admin/broker-failover", "/admin/mode", "/admin/modes"):
        assert path in paths, path
    assert "/admin/{action}" not in paths
    schemas = doc["components"]["schemas"]
    signal = paths["/v1/signals"]["post"]
    assert signal["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/Signal")
    assert set(signal["responses"]) == {"200", "400", "413", "422", "429", "503"}
    assert {p["name"] for p in signal["parameters"]} >= {"X-Key-Id", "X-Timestamp", "X-Signature"}
    assert {"request_id", "strategy_id", "symbol", "action", "quantity"} <= set(schemas["Signal"]["properties"])
    assert set(schemas["Reply"]["properties"]) >= {"status", "request_id", "signal_id", "reasons", "detail"}
    state = schemas["StateBody"]["properties"]["state"]
    assert set(state.get("enum")) == {"ACTIVE", "REDUCING", "HALTED"}
    for path, ops in paths.items():
        for op in ops.values():
            for code, answer in op["responses"].items():
                ref = answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
                assert ref is None or ref.rsplit("/", 1)[1] in schemas, (path, code, ref)


def _validator_for(doc, path, method, code):
    from jsonschema import Draft202012Validator

    answer = doc["paths"][path][method]["responses"][str(code)]
    schema = answer["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": doc["components"]})


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "token", "code"),
    [
        ("get", "/livez", {}, "tok", 200),
        ("get", "/readyz", {}, "tok", 200),
        ("get", "/health", {}, "tok", 200),
        ("post", "/admin/kill", {"headers": {"X-Admin-Token": "tok"}, "json": {"strategy_id": "s1"}}, "tok", 200),
        ("post", "/admin/kill", {"headers": {"X-Admin-Token": "bad"}}, "tok", 403),
        ("post", "/admin/kill", {}, "", 403),
        ("post", "/admin/state", {"headers": {"X-Admin-Token": "tok"}, "content": b"[1]"}, "tok", 400),
        ("post", "/admin/failover", {"headers": {"X-Admin-Token": "tok"}, "json": {"to": "b"}}, "tok", 200),
        ("post", "/v1/signals", {"content": b"{}"}, "tok", 400),
        ("post", "/v1/signals", {"content": b"{}", "headers": {"X-Key-Id": "k", "X-Timestamp": "1",
                                                               "X-Signature": "00"}}, "tok", 503),
    ],
)
def test_every_answer_matches_its_documented_schema(method, path, kwargs, token, code):
    c, _ = client(token=token)
    with c:
        doc = c.get("/openapi.json").json()
        r = getattr(c, method)(path, **kwargs)
    assert r.status_code == code, r.text
    errors = [e.message for e in _validator_for(doc, path, method, code).iter_errors(r.json())]
    assert not errors, (r.json(), errors)
