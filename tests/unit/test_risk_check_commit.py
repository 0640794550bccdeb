"""`PreTradeRisk.check_commit` (one kernel call: check, then reserve if it passed) leaves exactly what
`check` then `commit` leaves: the same reasons, the same book, the same pending reservations, on random
sequences of orders (every order type, risk meta, new symbols and strategies), fills, prices, time and
controls, with limits tight enough that many orders are refused (throttles, duplicates, exposure)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.messages import ExecKind, ExecutionReport, RiskMeta, Side, Signal
from node.risk import PreTradeRisk

# the limits and prices of the one-by-one property test (tests/unit/test_risk_property.py): many refusals
from tests.unit.test_risk_property import LIMITS, T0, prices

SYMS = ["A", "B", "C", "D", "E", "F"]  # E unpriced, F unseen until an order names it
metas = st.one_of(st.none(), st.builds(RiskMeta, max_exposure=st.sampled_from([None, 5_000.0, 50_000.0]),
                                       max_position_pct=st.sampled_from([None, 0.01, 0.2]),
                                       max_slippage=st.sampled_from([None, 0.01, 0.5])))
orders = st.fixed_dictionaries({
    "symbol": st.sampled_from(SYMS), "strategy_id": st.sampled_from(["s1", "s2", "s3", "new"]),
    "correlation_group": st.sampled_from([None, "g1", "g2"]), "action": st.sampled_from(["BUY", "SELL"]),
    "quantity": st.sampled_from([1.0, 5.0, 50.0, 120.0, 300.0, 500.0]), "order_type": st.sampled_from(
        ["MARKET", "LIMIT", "STOP", "STOP_LIMIT"]), "limit_price": prices, "stop_price": prices, "risk_meta": metas,
})
op = st.one_of(
    st.tuples(st.just("order"), orders),
    st.tuples(st.just("fill"), st.sampled_from(SYMS[:4]), st.sampled_from(["s1", "s2"]), st.booleans(),
              st.sampled_from([1.0, 50.0, 120.0]), prices),
    st.tuples(st.just("price"), st.sampled_from(SYMS[:4]), prices),
    st.tuples(st.just("time"), st.sampled_from([0, 1, 250_000_000, 1_000_000_000, 90_000_000_000])),
    st.tuples(st.just("control"), st.sampled_from(["kill", "pause", "trip"]), st.sampled_from(["s1", "s2"])),
)


def _risk() -> PreTradeRisk:
    risk = PreTradeRisk(LIMITS, SYMS[:-1], {s: 100.0 for s in SYMS[:-2]}, 1_000_000.0)
    risk.warm()
    return risk


def _same_book(a: PreTradeRisk, b: PreTradeRisk) -> None:
    for name in ("sf", "tf", "ti", "sa", "sn", "g", "cov"):
        np.testing.assert_array_equal(getattr(a.book, name), getattr(b.book, name), err_msg=name)
    assert a.book.sym_ids == b.book.sym_ids and a.book.strat_ids == b.book.strat_ids
    assert a.book.group_ids == b.book.group_ids
    assert a._pending == b._pending


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=40))
def test_check_commit_is_check_then_commit(ops) -> None:
    one_by_one, fused = _risk(), _risk()
    now = T0
    accepted = 0
    for seq, step in enumerate(ops):
        kind = step[0]
        if kind == "order":
            sig = Signal(request_id="q" + str(seq), timestamp=1.0, **step[1])
            want = one_by_one.check(sig, now)
            if not want:
                one_by_one.commit(sig, now)
                accepted += 1
            assert fused.check_commit(sig, now) == want
        elif kind == "fill":
            _, sym, strat, buy, q, px = step
            rep = ExecutionReport(kind=ExecKind.FILL, client_order_id="c", exec_id="x" + str(seq), symbol=sym,
                                  side=Side.BUY if buy else Side.SELL, last_qty=q, last_px=px, ts_ns=now)
            for r in (one_by_one, fused):
                r.on_fill(rep, strat)
        elif kind == "price":
            for r in (one_by_one, fused):
                r.on_price(step[1], step[2], now)
        elif kind == "time":
            now += step[1]
        else:
            _, what, strat = step
            for r in (one_by_one, fused):
                if what == "kill":
                    r.kill(strat)
                elif what == "pause":
                    r.pause(strat)
                else:
                    r.trip_breaker("strategy:" + strat, now)
        _same_book(one_by_one, fused)


def test_a_refused_signal_reserves_nothing() -> None:
    risk = _risk()
    big = Signal(request_id="big", strategy_id="s1", timestamp=1.0, symbol="A", action="BUY", quantity=10_000.0)
    assert risk.check(big, T0)  # over max_quantity; the strategy's and symbol's slots now exist
    before = {name: getattr(risk.book, name).copy() for name in ("sf", "tf", "ti", "sa", "sn", "g")}
    assert risk.check_commit(big, T0) == risk.check(big, T0)
    for name, arr in before.items():
        np.testing.assert_array_equal(getattr(risk.book, name), arr, err_msg=name)
    assert risk._pending == {}
    ok = Signal(request_id="ok", strategy_id="s1", timestamp=1.0, symbol="A", action="BUY", quantity=1.0)
    assert risk.check_commit(ok, T0) == []
    assert list(risk._pending) == ["ok"]
