"""Prometheus text from a stats snapshot: names, types, labels; a failing source never fails a scrape."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.metrics import NodeCollector, exposition, make_registry, render

STATS = {
    "validator": {"accepted": 7, "rejected": 3, "store_failures": 1, "unsent": 0, "wake_p50_us": 120.5,
                  "wake_p99_us": 900.0, "loop_errors": 0, "reasons": {"INVALID_NUMBER": 2, "KILL_SWITCH": 1, "retry": 4}},
    "engine:a": {"role": "leader", "epoch": 3, "signals": 7, "published": 20, "in_flight": 2, "checkpoint": "1-0",
                 "kind": "native", "new_counter": 5},
    "engine:b": {"down": "GetTimeoutError"},
    "engine": {"role": "leader", "epoch": 3},
    "broker:paper": {"submitted": 7, "epoch": 3, "refused_stale": 1, "first_submit_ns": {"x": 1}},
    "broker": {"submitted": 7, "epoch": 3, "refused_stale": 1, "first_submit_ns": {"x": 1}},
    "ledger": {"running": True, "signals": 7, "commit_p50_us": 800.0, "last_error": ""},
    "supervisor": {"epoch": 3, "leader": "a", "restarts": [{"role": "validator"}, {"role": "validator"}],
                   "failovers": [{"to": "b"}, {"to": "a"}], "broker_failovers": [{"to": "paper"}],
                   "groups": {"default": {"epoch": 3, "leader": "a", "broker": "paper"}}},
}


def samples(text: bytes) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def types(text: bytes) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text.decode())}


@pytest.mark.parametrize(
    ("name", "labels", "value"),
    [
        ("nae_signals_accepted_total", {"actor": "validator"}, 7),
        ("nae_signals_rejected_total", {"actor": "validator"}, 3),
        ("nae_rejections_total", {"actor": "validator", "reason": "INVALID_NUMBER"}, 2),
        ("nae_rejections_total", {"actor": "validator", "reason": "KILL_SWITCH"}, 1),
        ("nae_signal_retries_total", {"actor": "validator"}, 4),
        ("nae_store_failures_total", {"actor": "validator"}, 1),
        ("nae_validator_wake_latency_us", {"actor": "validator", "quantile": "0.5"}, 120.5),
        ("nae_validator_wake_latency_us", {"actor": "validator", "quantile": "0.99"}, 900.0),
        ("nae_engine_epoch", {"actor": "engine:a"}, 3),
        ("nae_engine_leader", {"actor": "engine:a"}, 1),
        ("nae_orders_in_flight", {"actor": "engine:a"}, 2),
        ("nae_reports_published_total", {"actor": "engine:a"}, 20),
        ("nae_engine_new_counter", {"actor": "engine:a"}, 5),
        ("nae_actor_up", {"actor": "engine:a"}, 1),
        ("nae_actor_up", {"actor": "engine:b"}, 0),
        ("nae_broker_refused_stale_epoch_total", {"actor": "broker:paper"}, 1),
        ("nae_ledger_running", {"actor": "ledger"}, 1),
        ("nae_ledger_commit_latency_us", {"actor": "ledger", "quantile": "0.5"}, 800.0),
        ("nae_epoch", {}, 3),
        ("nae_leader_info", {"engine": "a"}, 1),
        ("nae_failovers_total", {}, 2),
        ("nae_broker_failovers_total", {}, 1),
        ("nae_group_epoch", {"group": "default"}, 3),
        ("nae_group_leader_info", {"group": "default", "engine": "a"}, 1),
        ("nae_group_broker_info", {"group": "default", "broker": "paper"}, 1),
        ("nae_restarts_total", {"role": "validator"}, 2),
        ("nae_restarts_total", {"role": "broker"}, 0),
        ("nae_scrape_error", {}, 0),
    ],
)
def test_stats_become_named_samples(name, labels, value):
    assert samples(render(STATS))[(name, tuple(sorted(labels.items())))] == value


def test_counters_and_gauges_are_typed():
    t = types(render(STATS))
    assert t["nae_signals_accepted"] == "counter" and t["nae_rejections"] == "counter"
    assert t["nae_orders_in_flight"] == "gauge" and t["nae_epoch"] == "gauge"


def test_the_alias_and_non_numbers_are_not_exported():
    text = render(STATS).decode()
    assert 'actor="engine"}' not in text  # the leader alias would double every engine series
    assert 'actor="broker"}' not in text  # likewise the active broker's alias
    assert "checkpoint" not in text and "first_submit_ns" not in text and "last_error" not in text


def test_a_failing_source_is_a_scrape_error_not_an_exception():
    def broken():
        raise TimeoutError("supervisor busy")

    got = samples(exposition(make_registry(broken)))
    assert got == {("nae_scrape_error", ()): 1.0}


def test_the_source_is_read_on_every_scrape():
    calls = []
    registry = make_registry(lambda: calls.append(1) or {"validator": {"accepted": len(calls)}})
    exposition(registry)
    second = samples(exposition(registry))
    assert second[("nae_signals_accepted_total", (("actor", "validator"),))] == 2
    assert isinstance(NodeCollector(dict).collect().__next__().name, str)
