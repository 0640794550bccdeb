"""The covariance check: dVar = 2 x (C.w)_i + x^2 C_ii equals the brute-force w'Cw difference, C.w stays
equal to C @ w through fills, prices, reloads and growth, and the EWMA estimate matches numpy."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from node.messages import ExecKind, ExecutionReport, Side, Signal
from node.reasons import Reason
from node.risk import PreTradeRisk, RiskLimits
from node.risk.book import CII, CW, G_VAR, L_VAR, PX, QTY

T0 = 1_700_000_000 * 1_000_000_000
N = 12
SYMS = ["S" + str(k) for k in range(N)]


def make(seed: int, **kw) -> tuple[PreTradeRisk, np.ndarray]:
    cfg = RiskLimits(**{"cov_sample_interval_ms": 0, "initial_symbol_capacity": 4, **kw})
    rng = np.random.default_rng(seed)
    risk = PreTradeRisk(cfg, SYMS, {s: float(rng.integers(10, 500)) for s in SYMS}, 1_000_000.0)
    b = rng.normal(size=(N, 3)) * 0.01
    cov = b @ b.T + np.diag(rng.uniform(1e-4, 9e-4, N))
    risk.load_covariance(SYMS, cov)
    return risk, cov


def fill(risk: PreTradeRisk, sym: str, qty: float, px: float, k: int, strategy: str = "s1") -> None:
    risk.on_fill(ExecutionReport(kind=ExecKind.FILL, client_order_id="c", exec_id="f" + str(k), symbol=sym,
                                 side=Side.BUY if qty > 0 else Side.SELL, last_qty=abs(qty), last_px=px, ts_ns=T0),
                 strategy)


def weights(risk: PreTradeRisk, n: int) -> np.ndarray:
    return risk.book.sf[QTY, :n] * risk.book.sf[PX, :n]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), trades=st.lists(st.tuples(st.integers(0, N - 1), st.integers(-500, 500)), max_size=15),
       moves=st.lists(st.tuples(st.integers(0, N - 1), st.floats(5.0, 800.0)), max_size=10),
       i=st.integers(0, N - 1), x=st.floats(-200_000.0, 200_000.0))
def test_dvar_equals_brute_force(seed, trades, moves, i, x) -> None:
    risk, cov = make(seed)
    for k, (j, q) in enumerate(trades):
        if q:
            fill(risk, SYMS[j], float(q), 100.0, k)
    for j, p in moves:
        risk.on_price(SYMS[j], p, T0)
    b = risk.book
    w = weights(risk, N)
    C = b.cov[:N, :N]
    assert np.allclose(C, cov)
    assert np.allclose(b.sf[CW, :N], C @ w, rtol=1e-9, atol=1e-6)
    assert math.isclose(b.g[G_VAR], w @ C @ w, rel_tol=1e-9, abs_tol=1e-6)
    w2 = w.copy()
    w2[i] += x
    brute = w2 @ C @ w2 - w @ C @ w
    fast = 2.0 * x * b.sf[CW, i] + x * x * b.sf[CII, i]
    assert math.isclose(fast, brute, rel_tol=1e-7, abs_tol=1e-3)


def test_variance_check_trips_at_the_brute_force_value() -> None:
    risk, cov = make(1)
    fill(risk, "S4", 400.0, 100.0, 0)
    fill(risk, "S5", -300.0, 100.0, 1)
    b = risk.book
    i = b.sym_ids["S4"]
    px = b.sf[PX, i]
    w = weights(risk, N)
    x = 100.0 * px
    w2 = w.copy()
    w2[i] += x
    dvar = w2 @ cov @ w2 - w @ cov @ w
    assert dvar > 0.0
    order = Signal(request_id="v", strategy_id="s1", timestamp=1.0, symbol="S4", action="BUY", quantity=100.0)
    b.g[L_VAR] = dvar + abs(dvar) * 1e-6
    assert Reason.PORTFOLIO_VARIANCE not in risk.check(order, T0)
    b.g[L_VAR] = dvar - abs(dvar) * 1e-6
    assert Reason.PORTFOLIO_VARIANCE in risk.check(order, T0)


def test_hedging_order_lowers_variance_and_passes() -> None:
    risk, _ = make(2, max_incremental_var_usd2=1.0)
    fill(risk, "S0", 1_000.0, 100.0, 0)
    sell = Signal(request_id="h", strategy_id="s1", timestamp=1.0, symbol="S0", action="SELL", quantity=500.0)
    buy = Signal(request_id="h2", strategy_id="s1", timestamp=1.0, symbol="S0", action="BUY", quantity=500.0)
    assert Reason.PORTFOLIO_VARIANCE not in risk.check(sell, T0)
    assert Reason.PORTFOLIO_VARIANCE in risk.check(buy, T0)


def test_reload_without_restart_rebuilds_cw() -> None:
    risk, cov = make(3)
    for k in range(N):
        fill(risk, SYMS[k], float(10 * (k + 1) * (-1) ** k), 100.0, k)
    new = cov * 4.0
    risk.load_covariance(SYMS, new)
    w = weights(risk, N)
    assert np.allclose(risk.book.sf[CW, :N], new @ w)
    assert math.isclose(risk.book.g[G_VAR], w @ new @ w, rel_tol=1e-12)


def test_growth_keeps_state() -> None:
    risk, cov = make(4)  # capacity started at 4: already grown
    fill(risk, "S1", 100.0, 100.0, 0)
    before = risk.book.sf[CW, :N].copy()
    for k in range(200):
        risk.on_price("X" + str(k), 50.0, T0)
    b = risk.book
    assert b.sym_capacity >= N + 200
    assert np.allclose(b.cov[:N, :N], cov)
    assert np.allclose(b.sf[CW, :N], before)
    assert b.cov[N + 5, N + 5] == risk.cfg.default_daily_vol ** 2


def test_ewma_matches_numpy() -> None:
    interval_ms = 60_000
    risk, _ = make(5, cov_sample_interval_ms=interval_ms, cov_ewma_lambda=0.9)
    fill(risk, "S2", 300.0, 100.0, 0)
    fill(risk, "S7", -200.0, 100.0, 1)
    b = risk.book
    expected = b.cov[:N, :N].copy()
    scale = math.sqrt(risk.cfg.cov_horizon_secs * 1000.0 / interval_ms)
    rng = np.random.default_rng(9)
    now = T0
    risk.on_price("S0", float(b.sf[PX, 0]), now)  # first sample: remembers prices only
    for _ in range(5):
        last = b.sf[PX, :N].copy()
        now += interval_ms * 1_000_000
        for k in range(N - 1):  # the last symbol has no new price: a zero return
            risk.on_price(SYMS[k], float(last[k] * (1 + rng.normal(0, 0.01))), now - 1)
        risk.on_price(SYMS[0], float(b.sf[PX, 0]), now)  # sample due
        r = (b.sf[PX, :N] / last - 1.0) * scale
        expected = 0.9 * expected + 0.1 * np.outer(r, r)
    assert np.allclose(b.cov[:N, :N], expected, rtol=1e-9, atol=1e-15)
    w = weights(risk, N)
    assert np.allclose(b.sf[CW, :N], expected @ w, rtol=1e-9, atol=1e-6)
    assert np.allclose(b.sf[CII, :N], np.diag(expected))
