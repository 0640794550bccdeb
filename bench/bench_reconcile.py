"""pytest-benchmark mirror of `bench.reconcile_report` (the books are built once per module).

    .venv/bin/pytest bench/bench_reconcile.py -q
"""

from __future__ import annotations

import pytest

from bench.reconcile_report import DROPPED, FILLS_PER_ORDER, as_rows, make_books, plain_diff, run_diff, run_diff_pnl

EXPECTED = {"MISSING_FILL": DROPPED, "FILL_UNKNOWN_TO_LEDGER": FILLS_PER_ORDER, "ORDER_UNKNOWN_TO_NODE": 1,
            "POSITION_DRIFT": 1}


@pytest.fixture(scope="module")
def books():
    return make_books()


def test_diff_100k_fills(benchmark, books) -> None:
    node, broker = books
    found = benchmark.pedantic(lambda: run_diff(node, broker), rounds=3, iterations=1, warmup_rounds=1)
    assert dict(found) == EXPECTED


def test_diff_and_pnl_100k_fills(benchmark, books) -> None:
    node, broker = books
    found = benchmark.pedantic(lambda: run_diff_pnl(node, broker), rounds=3, iterations=1, warmup_rounds=1)
    assert dict(found) == EXPECTED


def test_plain_python_diff_100k_fills(benchmark, books) -> None:
    node, broker = books
    rows = (*as_rows(node), *as_rows(broker), broker.positions)
    found = benchmark.pedantic(lambda: plain_diff(*rows), rounds=3, iterations=1, warmup_rounds=1)
    assert dict(found) == EXPECTED
