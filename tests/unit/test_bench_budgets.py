"""The budget bars and the regression check of bench.budgets: pure functions over a report dict."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from bench.budgets import GATED, bars, best_of, gated, regressions, unmeasured


def _report(paced_p50=300.0, paced_p99=1_000.0, conc_p99=1_500.0, rate=25_000.0, lost=0, dup=0,
            ratio=(6.0, 60.0, 25.0), zmq=120.0, xadd=100.0) -> dict:
    return {
        "floor": {"zmq_rtt_p50_us": zmq, "redis_rtt_p50_us": xadd},
        "node": {"paced": {"reply_p50_us": paced_p50, "reply_p99_us": paced_p99},
                 "concurrent": {"reply_p99_us": conc_p99}, "rate_per_s": rate, "lost": lost, "duplicates": dup},
        "ratio": {"p50": ratio[0], "p99": ratio[1], "rate": ratio[2]},
    }


def test_every_bar_met_when_the_figures_are_inside_their_budgets():
    assert all(b["met"] for b in bars(_report()))


@pytest.mark.parametrize("kwargs,name", [
    ({"paced_p50": 400.0}, "paced 1,000/s p50 / floor (x)"),  # 400 / 220 = 1.82x
    ({"paced_p99": 1_600.0}, "paced 1,000/s p99 (us)"),
    ({"rate": 19_000.0}, "sustained ACK rate, none lost/duplicated (/s)"),
    ({"lost": 1}, "sustained ACK rate, none lost/duplicated (/s)"),
    ({"dup": 1}, "sustained ACK rate, none lost/duplicated (/s)"),
    ({"conc_p99": 2_100.0}, "16 senders p99 (us)"),
    ({"ratio": (4.0, 60.0, 25.0)}, "baseline/node p50 (x)"),
    ({"ratio": (6.0, 40.0, 25.0)}, "baseline/node p99 (x)"),
    ({"ratio": (6.0, 60.0, 10.0)}, "node/baseline rate (x)"),
])
def test_one_figure_outside_its_budget_marks_exactly_that_bar_not_met(kwargs, name):
    missed = [b["name"] for b in bars(_report(**kwargs)) if not b["met"]]
    assert missed == [name]


def test_a_failed_target_leaves_its_bars_unjudged():
    report = _report()
    report["node"] = {"error": "RuntimeError: boom"}
    assert {b["met"] for b in bars(report) if not b["name"].startswith(("baseline/", "node/"))} == {None}


def test_gated_figures_are_in_run_ratios():
    g = gated(_report(paced_p50=440.0))
    assert g == {"ratio_p50": 6.0, "ratio_rate": 25.0, "floor_over_paced_p50": 0.5}


def test_a_drop_of_more_than_the_tolerance_is_a_regression_and_less_is_not():
    base = {"ratio_p50": 5.0, "ratio_rate": 10.0, "floor_over_paced_p50": 0.5}
    assert regressions({"ratio_p50": 4.1, "ratio_rate": 8.1, "floor_over_paced_p50": 0.41}, base) == []
    found = regressions({"ratio_p50": 3.9, "ratio_rate": 8.1, "floor_over_paced_p50": 0.41}, base)
    assert len(found) == 1 and found[0].startswith("ratio_p50")


def test_a_figure_no_repeat_measured_is_reported_as_unmeasured_not_as_a_regression():
    run, base = {"ratio_p50": None, "ratio_rate": 9.0, "floor_over_paced_p50": 1.0}, {"ratio_p50": 5.0, "ratio_rate": 9.0}
    assert regressions(run, base) == []
    assert unmeasured(run, base) == ["ratio_p50"]


def test_the_best_repeat_wins_per_figure():
    best = best_of([{"ratio_p50": 3.0, "ratio_rate": 12.0, "floor_over_paced_p50": None},
                    {"ratio_p50": 5.0, "ratio_rate": 9.0, "floor_over_paced_p50": 0.3}])
    assert best == {"ratio_p50": 5.0, "ratio_rate": 12.0, "floor_over_paced_p50": 0.3}


figure = st.one_of(st.none(), st.floats(min_value=0.001, max_value=1e4, allow_nan=False))


@given(st.fixed_dictionaries({k: figure for k in GATED}), st.fixed_dictionaries({k: figure for k in GATED}))
def test_a_run_at_least_as_good_as_the_baseline_never_regresses(base, delta):
    run = {k: (None if base[k] is None else base[k] + (delta[k] or 0.0)) for k in GATED}
    assert regressions(run, base) == []


@given(st.dictionaries(st.text(max_size=8), st.one_of(st.none(), st.integers(), st.text(max_size=4),
                                                      st.dictionaries(st.text(max_size=8), st.integers()))))
def test_any_report_shape_yields_bars_and_figures_without_raising(report):
    assert len(bars(report)) == 7 and set(gated(report)) == set(GATED)
