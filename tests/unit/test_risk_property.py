"""Property tests: the numba kernels and the pure-Python reference agree on random portfolios and orders,
and the incrementally kept aggregates (exposures, C.w, w'Cw, strategy marks) equal a from-scratch recompute.

Prices, quantities and covariance entries are dyadic / integer so every sum is exact and a check
sitting on a limit cannot flip on rounding.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.messages import ExecKind, ExecutionReport, Side, Signal
from node.risk import PreTradeRisk, RiskLimits
from node.risk import reference
from node.risk.book import COL_FIRST_STRATEGY, CW, EXP, G_GROSS, G_GROUPS, G_NET, G_VAR, T_LONG, T_MV, T_SHORT
from node.risk.kernels import check_order

T0 = 1_700_000_000 * 1_000_000_000
SYMS = ["A", "B", "C", "D", "E", "F"]
STRATS = ["s1", "s2", "s3"]
GROUPS = ["g1", "g2"]
LIMITS = RiskLimits(
    cov_sample_interval_ms=0, max_quantity=400.0, max_notional_usd=30_000.0, max_symbol_long_usd=40_000.0,
    max_symbol_short_usd=30_000.0, max_strategy_long_usd=60_000.0, max_strategy_short_usd=50_000.0,
    max_strategy_exposure_usd=90_000.0, max_gross_exposure_usd=70_000.0, max_net_exposure_usd=50_000.0,
    max_group_exposure_usd=45_000.0, max_incremental_var_usd2=2.0e6, max_position_pct=0.05,
    max_daily_loss_usd=3_000.0, max_drawdown_usd=5_000.0, strategy_burst=2.0, node_burst=5.0,
    strategy_orders_per_sec=2.0, node_orders_per_sec=4.0, trip_breaker_on_loss=False,
)
prices = st.sampled_from([25.0, 50.0, 75.0, 100.0, 150.0, 200.0])
qtys = st.sampled_from([1.0, 5.0, 50.0, 120.0, 300.0])
op = st.one_of(
    st.tuples(st.just("order"), st.sampled_from(SYMS), st.sampled_from(STRATS), st.sampled_from([None, *GROUPS]),
              st.booleans(), qtys),
    st.tuples(st.just("fill"), st.sampled_from(SYMS), st.sampled_from(STRATS), st.booleans(), qtys, prices),
    st.tuples(st.just("price"), st.sampled_from(SYMS), prices),
    st.tuples(st.just("time"), st.integers(0, 2_000_000_000)),
    st.tuples(st.just("control"), st.sampled_from(["kill", "pause", "reducing", "halted", "reject", "unknown", "trip"]),
              st.sampled_from([None, *STRATS])),
)


def build(data) -> tuple[PreTradeRisk, int, tuple | None]:
    risk = PreTradeRisk(LIMITS, SYMS[:-1], {s: 100.0 for s in SYMS[:-2]}, 1_000_000.0)  # E unpriced, F unseen
    n = len(SYMS) - 1
    k = data.draw(st.lists(st.integers(-8, 8), min_size=n * n, max_size=n * n))
    m = np.array(k, dtype=float).reshape(n, n) / 1024.0
    cov = m @ m.T / 8.0 + np.eye(n) / 256.0  # PSD, dyadic
    risk.load_covariance(SYMS[:-1], cov)
    for strat in STRATS:
        risk.book.add_strategy(strat)
    now = T0
    seq = 0
    last = None
    for step in data.draw(st.lists(op, max_size=30)):
        seq += 1
        kind = step[0]
        if kind == "order":
            _, sym, strat, grp, buy, q = step
            s = Signal(request_id="q" + str(seq), strategy_id=strat, timestamp=1.0, symbol=sym,
                       action="BUY" if buy else "SELL", quantity=q, correlation_group=grp)
            risk.check(s, now)
            risk.commit(s, now)
            last = (risk.book.strat_ids[strat], risk.book.sym_ids[sym], 1.0 if buy else -1.0, q)
        elif kind == "fill":
            _, sym, strat, buy, q, px = step
            risk.on_fill(ExecutionReport(kind=ExecKind.FILL, client_order_id="c", exec_id="x" + str(seq), symbol=sym,
                                         side=Side.BUY if buy else Side.SELL, last_qty=q, last_px=px, ts_ns=now), strat)
        elif kind == "price":
            risk.on_price(step[1], step[2], now)
        elif kind == "time":
            now += step[1]
        else:
            _, what, strat = step
            if what == "kill":
                risk.kill(strat)
            elif what == "pause" and strat is not None:
                risk.pause(strat)
            elif what in ("reducing", "halted"):
                risk.set_state(what.upper(), strat)
            elif what == "reject":
                risk.on_broker_reject(strat or "s1", now)
            elif what == "unknown":
                risk.set_symbol_unknown(SYMS[seq % 4], True)
            elif what == "trip":
                name = "strategy:" + strat if strat else "system" if seq % 2 else "execution"
                risk.trip_breaker(name, now)
    return risk, now, last


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_kernel_matches_reference(data) -> None:
    risk, now, last = build(data)
    risk.warm()
    b = risk.book
    now += data.draw(st.sampled_from([0, 1, 400_000_000, 999_999_999, 3_000_000_000, 40_000_000_000]))
    i = data.draw(st.integers(-1, b.n_symbols - 1))
    c = data.draw(st.integers(COL_FIRST_STRATEGY, b.n_cols - 1))
    gid = data.draw(st.integers(-1, len(b.group_names) - 1))
    side = data.draw(st.sampled_from([1.0, -1.0]))
    notional = data.draw(st.booleans())
    size = float(data.draw(st.integers(1, 500)) * (64 if notional else 1))
    if last is not None and data.draw(st.booleans()):  # repeat the last order: duplicates, throttles
        c, i, side, size = last
        notional = False
    otype = data.draw(st.integers(0, 3))
    lp = data.draw(prices)
    sp = data.draw(prices)
    meta = [data.draw(st.sampled_from([-1.0, 0.01, 0.2, 5_000.0, 50_000.0])) for _ in range(3)]
    args = (b.sf, b.tf, b.ti, b.sa, b.sn, b.g, c, i, gid, side, size, notional, otype, lp, sp, *meta, now)
    fast = check_order(*args)
    assert fast == reference.check_order(*args)
    assert fast == reference.check_order(*args, cov=b.cov, n=b.n_symbols, from_scratch=True)
    lists = [a.tolist() for a in (b.sf, b.tf, b.ti, b.sa, b.sn, b.g)]
    assert fast == reference.check_order(*lists, *args[6:])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_incremental_aggregates_match_recompute(data) -> None:
    risk, _, _ = build(data)
    b = risk.book
    n = b.n_symbols
    agg = reference.aggregates(b.sf, b.tf, b.sa, b.cov, n, b.n_cols, len(b.group_names))
    assert np.allclose(b.sf[EXP, :n], agg["exp"], atol=1e-6)
    assert math.isclose(b.g[G_GROSS], agg["gross"], abs_tol=1e-6)
    assert math.isclose(b.g[G_NET], agg["net"], abs_tol=1e-6)
    assert np.allclose(b.g[G_GROUPS:G_GROUPS + len(b.group_names)], agg["groups"], atol=1e-6)
    assert np.allclose(b.sf[CW, :n], agg["cw"], rtol=1e-9, atol=1e-6)
    assert math.isclose(b.g[G_VAR], agg["var"], rel_tol=1e-9, abs_tol=1e-3)
    for c, (lng, sht, mv) in agg["strategies"].items():
        assert math.isclose(b.tf[T_LONG, c], lng, abs_tol=1e-6)
        assert math.isclose(b.tf[T_SHORT, c], sht, abs_tol=1e-6)
        assert math.isclose(b.tf[T_MV, c], mv, abs_tol=1e-6)
