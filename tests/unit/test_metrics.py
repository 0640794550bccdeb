"""Prometheus text from a stats snapshot: names, types, labels; a failing source never fails a scrape."""

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.histogram import LatencyHistogram, of_seconds
from node.metrics import NodeCollector, build_info, exposition, make_registry, render


def _hist(*ns_counts):
    h = LatencyHistogram()
    for ns, n in ns_counts:
        h.observe_ns(ns, n)
    return h.snapshot()


STATS = {
    "validator": {"accepted": 7, "rejected": 3, "store_failures": 1, "unsent": 0, "wake_p50_us": 120.5,
                  "wake_p99_us": 900.0, "loop_errors": 0, "reasons": {"INVALID_NUMBER": 2, "KILL_SWITCH": 1, "retry": 4},
                  "reply_hist": _hist((400_000, 2), (3_000_000, 1)), "append_hist": _hist((140_000, 1)),
                  "last_error": "ValueError: boom", "unknown_orders": 2, "unknown_symbols": ["MSFT"]},
    "engine:a": {"role": "leader", "epoch": 3, "signals": 7, "published": 20, "in_flight": 2, "checkpoint": "1-0",
                 "kind": "native", "new_counter": 5, "child_ready_ms": 630},
    "engine:b": {"down": "GetTimeoutError"},
    "engine": {"role": "leader", "epoch": 3},
    "broker:paper": {"submitted": 7, "epoch": 3, "refused_stale": 1, "first_submit_ns": {"x": 1}},
    "broker": {"submitted": 7, "epoch": 3, "refused_stale": 1, "first_submit_ns": {"x": 1}},
    "ledger": {"running": True, "signals": 7, "commit_p50_us": 800.0, "last_error": "",
               "commit_hist": of_seconds([0.068])},
    "reconciler": {"runs": 3, "mismatched_runs": 1, "errors": 0, "booked": 2, "discrepancies": {"MISSING_FILL": 1},
                   "last_run_id": "r3", "last_matched": True, "last_took_ms": 12.5, "last_trigger": "schedule",
                   "last_error": ""},
    "supervisor": {"epoch": 3, "leader": "a", "restarts": [{"role": "validator"}, {"role": "validator"}],
                   "failovers": [{"to": "b", "detected_ns": 10**9, "promoted_ns": 10**9 + 90_000_000},
                                 {"to": "a", "started_ns": 5 * 10**9, "promoted_ns": 5 * 10**9 + 300_000_000}], "broker_failovers": [{"to": "paper"}],
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
        ("nae_unknown_orders", {"actor": "validator"}, 2),
        ("nae_rejections_total", {"actor": "validator", "reason": "INVALID_NUMBER"}, 2),
        ("nae_rejections_total", {"actor": "validator", "reason": "KILL_SWITCH"}, 1),
        ("nae_signal_retries_total", {"actor": "validator"}, 4),
        ("nae_store_failures_total", {"actor": "validator"}, 1),
        ("nae_engine_epoch", {"actor": "engine:a"}, 3),
        ("nae_engine_leader", {"actor": "engine:a"}, 1),
        ("nae_orders_in_flight", {"actor": "engine:a"}, 2),
        ("nae_reports_published_total", {"actor": "engine:a"}, 20),
        ("nae_engine_new", {"actor": "engine:a"}, 5),  # promtool: no type in a name
        ("nae_actor_up", {"actor": "engine:a"}, 1),
        ("nae_actor_up", {"actor": "engine:b"}, 0),
        ("nae_broker_refused_stale_epoch_total", {"actor": "broker:paper"}, 1),
        ("nae_ledger_running", {"actor": "ledger"}, 1),
        ("nae_signal_reply_seconds_count", {"actor": "validator"}, 3),
        ("nae_signal_reply_seconds_bucket", {"actor": "validator", "le": "0.0005"}, 2),
        ("nae_signal_reply_seconds_bucket", {"actor": "validator", "le": "+Inf"}, 3),
        ("nae_ledger_commit_seconds_count", {"actor": "ledger"}, 1),
        ("nae_engine_child_ready_seconds", {"actor": "engine:a"}, 0.63),
        ("nae_reconciler_last_took_seconds", {"actor": "reconciler"}, 0.0125),
        ("nae_failover_seconds_count", {}, 2),
        ("nae_failover_seconds_bucket", {"le": "0.1"}, 1),
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


def test_histograms_are_cumulative_in_seconds():
    t = types(render(STATS))
    for name in ("nae_signal_reply_seconds", "nae_signal_append_seconds", "nae_ledger_commit_seconds",
                 "nae_failover_seconds"):
        assert t[name] == "histogram"
    got = samples(render(STATS))
    reply = {"actor": "validator"}
    assert got[("nae_signal_reply_seconds_sum", tuple(reply.items()))] == pytest.approx(2 * 0.0004 + 0.003)
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in got.items() if k[0] == "nae_signal_reply_seconds_bucket")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative


def test_no_sub_unit_or_quantile_series():
    series = [line for line in render(STATS).decode().splitlines() if not line.startswith("#")]
    assert series and not [s for s in series if "quantile=" in s or "_us" in s or "_ms" in s]


def test_build_info():
    info = build_info()
    assert samples(render(STATS))[("nae_build_info", tuple(sorted(info.items())))] == 1
    assert info["version"] != "unknown" and info["ray"] != "unknown"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_check_metrics_is_clean():
    out = subprocess.run(["promtool", "check", "metrics"], input=render(STATS), capture_output=True, timeout=30)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), (out.stdout + out.stderr).decode()


def test_a_brokers_login_expiry_is_a_timestamp_gauge_labelled_by_broker():
    """Schwab's refresh token lapse (venue health) -> nae_broker_token_expiry_timestamp_seconds{broker},
    what the NaeBrokerTokenExpiry alerts read; a venue without a login exports no such series."""
    from node.metrics import render

    text = render({"broker:schwab": {"login_expires_at_s": 1_800_000_000.0, "venue_ok": True},
                   "broker:paper": {"login_expires_at_s": None, "venue_ok": True}}).decode()
    assert ('nae_broker_token_expiry_timestamp_seconds{actor="broker:schwab",broker="schwab"} 1.8e+09' in text)
    assert 'broker="paper"' not in text
    assert 'nae_broker_venue_ok{actor="broker:paper"} 1.0' in text


def test_a_brokers_stream_health_is_exported_from_its_venue_stats():
    """Schwab's stream counters live in the broker's nested `venue` stats: connected or not as a gauge,
    drops, unreadable entries and reconnects as counters (what NaeBrokerStreamDown/-Dropping read);
    the rest of `venue` and a venue without a stream export nothing."""
    venue = {"stream_up": False, "stream_connects": 3, "stream_disconnects": 2, "stream_frames": 40,
             "stream_wakeups": 9, "stream_dropped": 4, "stream_unreadable": 1, "throttled": 5}
    text = render({"broker:schwab": {"venue_ok": True, "venue": venue},
                   "broker:paper": {"venue_ok": True, "venue": {"fills": 3}}}).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    schwab = (("actor", "broker:schwab"),)
    assert samples[("nae_broker_stream_up", schwab)] == 0
    assert samples[("nae_broker_stream_connects_total", schwab)] == 3
    assert samples[("nae_broker_stream_disconnects_total", schwab)] == 2
    assert samples[("nae_broker_stream_dropped_total", schwab)] == 4
    assert samples[("nae_broker_stream_unreadable_total", schwab)] == 1
    assert not any("stream" in name and dict(labels).get("actor") == "broker:paper" for name, labels in samples)
    assert "throttled" not in text and "fills" not in text
