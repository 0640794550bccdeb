"""node.stages: per-stage histograms observed per wake-up, read as a budget table."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from node.stages import BOUNDS_NS, Stage, StageClock, budget, diff, field, percentile_us, stage_fields


def test_percentiles_land_within_a_bucket_of_the_exact_ones():
    rng = np.random.default_rng(7)
    samples = rng.lognormal(mean=np.log(300_000), sigma=0.6, size=20_000).astype(np.int64)  # ~300 us
    clock = StageClock()
    for ns in samples:
        clock.observe(Stage.APPEND, int(ns))
    snap = clock.snapshot()[field(Stage.APPEND)]
    for q in (50.0, 99.0):
        exact = float(np.percentile(samples, q)) / 1e3
        assert abs(percentile_us(snap, q) - exact) / exact < 0.13  # 10 buckets per decade: one step is 26%


def test_a_batch_counts_once_per_signal_and_only_observed_stages_are_reported():
    clock = StageClock()
    clock.observe(Stage.INTAKE_GATE, 50_000, count=8)
    snap = clock.snapshot()
    assert list(snap) == [field(Stage.INTAKE_GATE)]
    assert snap[field(Stage.INTAKE_GATE)]["count"] == 8
    assert abs(snap[field(Stage.INTAKE_GATE)]["sum_s"] - 8 * 50e-6) < 1e-12


def test_negative_clock_skew_counts_as_zero_and_huge_values_fall_past_the_last_bound():
    clock = StageClock()
    clock.observe(Stage.TO_ENGINE, -5)
    clock.observe(Stage.TO_ENGINE, BOUNDS_NS[-1] * 10)
    snap = clock.snapshot()[field(Stage.TO_ENGINE)]
    assert snap["count"] == 2 and snap["buckets"][0][1] == 1 and snap["buckets"][-1][1] == 1


def test_diff_keeps_what_one_run_observed_and_merging_skips_role_aliases():
    clock = StageClock()
    clock.observe(Stage.REPLY, 10_000, 3)
    before = stage_fields({"validator": clock.snapshot()})
    clock.observe(Stage.REPLY, 2_000_000, 5)
    stats = {"validator": clock.snapshot(), "engine": clock.snapshot(), "supervisor": {"x": 1}}
    run = diff(stage_fields(stats), before)
    rows = budget(run)
    assert [r["stage"] for r in rows] == ["reply"] and rows[0]["n"] == 5
    assert 1_700 < rows[0]["p50_us"] < 2_300


@settings(max_examples=50)
@given(st.lists(st.tuples(st.sampled_from(list(Stage)), st.integers(-10**9, 10**11), st.integers(1, 64)), max_size=50))
def test_any_observations_give_ordered_percentiles_and_exact_counts(obs):
    clock = StageClock()
    for stage, ns, n in obs:
        clock.observe(stage, ns, n)
    rows = budget(clock.snapshot())
    for r in rows:
        assert r["p50_us"] <= r["p99_us"]
        assert r["n"] == sum(n for s, _, n in obs if s.value == r["stage"])
