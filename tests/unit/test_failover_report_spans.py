"""bench.failover_report: each reason's refusals as [from, to, count] spans of the run's seconds."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.failover_report import refusal_spans


@pytest.mark.parametrize(("seconds", "spans"), [
    ({}, {}),
    ({("HALTED", 5): 3}, {"HALTED": [[5, 5, 3]]}),
    ({("HALTED", 5): 3, ("HALTED", 7): 1}, {"HALTED": [[5, 7, 4]]}),  # a gap of 2 s: one span
    ({("HALTED", 5): 3, ("HALTED", 8): 1}, {"HALTED": [[5, 5, 3], [8, 8, 1]]}),  # 3 s: two
    ({("NO_ENGINE", 1): 2, ("HALTED", 0): 1}, {"HALTED": [[0, 0, 1]], "NO_ENGINE": [[1, 1, 2]]}),
])
def test_refusals_merge_into_spans_per_reason(seconds: dict, spans: dict) -> None:
    assert refusal_spans(Counter(seconds)) == spans
