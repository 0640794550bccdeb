"""pytest-benchmark mirror of `bench.risk_report` (small rounds, one 10,000-position book per module).

    .venv/bin/pytest bench/bench_risk.py -q
"""

from __future__ import annotations

import pytest

from bench.risk_report import T0, build_book, kernel_args, make_signals
from node.messages import ExecKind, ExecutionReport, Side
from node.risk import PreTradeRisk, reference, snapshot
from node.risk.kernels import check_order

NOW = T0 + 1_000


@pytest.fixture(scope="module")
def book():
    risk, syms = build_book(10_000, 500)
    risk.warm()
    signals = make_signals(risk, syms, 512)
    return risk, syms, signals


@pytest.fixture(scope="module")
def held_book():
    """A book no other bench has traded on (the checks reserve, the fill bench moves positions): one
    position per symbol, so the snapshot's size is known."""
    return build_book(10_000, 500)


def _cycle(items):
    state = {"k": 0}

    def nxt():
        state["k"] = (state["k"] + 1) % len(items)
        return items[state["k"]]

    return nxt


def test_check_facade(benchmark, book) -> None:
    risk, _, signals = book
    nxt = _cycle(signals)
    result = benchmark.pedantic(lambda: risk.check(nxt(), NOW), rounds=5_000, iterations=1, warmup_rounds=500)
    assert result == []


def test_check_kernel(benchmark, book) -> None:
    risk, _, signals = book
    b = risk.book
    state = (b.sf, b.tf, b.ti, b.sa, b.sn, b.g)
    nxt = _cycle([kernel_args(risk, s, NOW) for s in signals])
    assert benchmark.pedantic(lambda: check_order(*state, *nxt()), rounds=5_000, iterations=1, warmup_rounds=500) == 0


def test_check_reference(benchmark, book) -> None:
    risk, _, signals = book
    b = risk.book
    lists = tuple(a.tolist() for a in (b.sf, b.tf, b.ti, b.sa, b.sn, b.g))
    nxt = _cycle([kernel_args(risk, s, NOW) for s in signals])
    assert benchmark.pedantic(lambda: reference.check_order(*lists, *nxt()), rounds=500, iterations=1,
                              warmup_rounds=50) == 0


def test_fill_update(benchmark, book) -> None:
    risk, syms, _ = book
    b = risk.book
    reports = [ExecutionReport(kind=ExecKind.FILL, client_order_id="f", exec_id="bb-" + str(k), symbol=syms[k * 7 % len(syms)],
                               side=Side.BUY if k % 2 else Side.SELL, last_qty=1.0,
                               last_px=float(b.sf[0, b.sym_ids[syms[k * 7 % len(syms)]]]), ts_ns=NOW)
               for k in range(1_200)]
    nxt = _cycle(reports)
    benchmark.pedantic(lambda: risk.on_fill(nxt(), "strat1"), rounds=1_000, iterations=1, warmup_rounds=100)


def test_snapshot_take(benchmark, held_book) -> None:
    """What the validator pays once a second while risk changes (10,000 positions)."""
    risk, _ = held_book
    raw = benchmark.pedantic(lambda: snapshot.encode(snapshot.take(risk, {}, [])), rounds=20, iterations=1,
                             warmup_rounds=2)
    assert len(snapshot.decode(raw).positions()) == risk.book.n_symbols


def test_snapshot_restore(benchmark, book) -> None:
    """What a restarted validator pays before its intake opens (10,000 positions, covariance loaded)."""
    risk, syms, _ = book
    raw = snapshot.encode(snapshot.take(risk, {}, []))
    cov = risk.book.cov[: len(syms), : len(syms)].copy()

    def fresh():
        target = PreTradeRisk(risk.cfg, syms, {}, 10_000_000_000.0)
        target.load_covariance(syms, cov)
        return (target,), {}

    benchmark.pedantic(lambda target: snapshot.restore(target, snapshot.decode(raw)), setup=fresh, rounds=3,
                       iterations=1)
