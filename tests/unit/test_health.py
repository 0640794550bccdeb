"""node.health: readiness from stats and store probes."""

import pytest

from node.health import AppendWatch, assess

UP = {"validator": {"store_failures": 0}, "broker:paper": {}, "engine:a": {"role": "leader"},
      "engine": {}, "broker": {}, "supervisor": {}, "ledger": {"running": True}}
STORES = {"redis": {"status": "up"}, "postgresql": {"status": "up"}, "ledger_lag": {"status": "up", "entries": 10}}


@pytest.mark.parametrize(
    ("stats", "stores", "failing", "ready", "why"),
    [
        (UP, STORES, False, True, ""),
        ({**UP, "engine:a": {"down": "RayActorError"}}, STORES, False, False, "engine:a: down"),
        ({k: v for k, v in UP.items() if k != "validator"}, STORES, False, False, "validator: not running"),
        (UP, {**STORES, "redis": {"status": "down", "detail": "ConnectionError"}}, False, False, "Redis cannot be written"),
        (UP, STORES, True, False, "appends are failing"),
        (UP, {**STORES, "ledger_lag": {"status": "up", "entries": 5_000}}, False, False, "5000 entries behind"),
        (UP, {**STORES, "postgresql": {"status": "down"}}, False, True, ""),  # trading goes on; /health says it
        ({**UP, "ledger": {"down": "X"}}, STORES, False, True, ""),
    ],
)
def test_readiness(stats, stores, failing, ready, why):
    got, components, reasons = assess(stats, {k: dict(v) for k, v in stores.items()}, failing, max_ledger_lag=1_000)
    assert got is ready
    assert (why in "; ".join(reasons)) if why else not reasons
    assert {"redis", "engine:a"} <= set(components)
    assert "engine" not in components and "supervisor" not in components


def test_append_watch_holds_after_a_failure():
    watch = AppendWatch(hold_s=5.0)
    assert not watch.failing({"store_failures": 3}, now=0.0)  # the first look is the baseline
    assert not watch.failing({"store_failures": 3}, now=1.0)
    assert watch.failing({"store_failures": 4}, now=2.0)
    assert watch.failing({"store_failures": 4}, now=6.9)
    assert not watch.failing({"store_failures": 4}, now=7.1)
