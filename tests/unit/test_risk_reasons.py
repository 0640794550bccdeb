"""One test per pre-trade reason code: a setup that trips it, and the same order passing without it."""

from __future__ import annotations

import msgspec
import pytest

from node.messages import ExecKind, ExecutionReport, RiskMeta, Side, Signal
from node.reasons import Reason
from node.risk import PreTradeRisk, RiskLimits, reference
from node.risk.kernels import check_order, mask_to_reasons

T0 = 1_700_000_000 * 1_000_000_000
PRICES = {"AAPL": 100.0, "MSFT": 200.0}
_n = 0


def make(**limits) -> PreTradeRisk:
    cfg = RiskLimits(**{"cov_sample_interval_ms": 0, **limits})
    risk = PreTradeRisk(cfg, list(PRICES), dict(PRICES), 1_000_000.0)
    return risk


def sig(**kw) -> Signal:
    global _n
    _n += 1
    base = dict(request_id="r" + str(_n), strategy_id="s1", timestamp=1.0, symbol="AAPL", action="BUY", quantity=20.0)
    base.update(kw)
    return Signal(**base)


def fill(risk: PreTradeRisk, qty: float, px: float, symbol: str = "AAPL", strategy: str = "s1", side=Side.BUY) -> None:
    global _n
    _n += 1
    risk.on_fill(ExecutionReport(kind=ExecKind.FILL, client_order_id="c" + str(_n), exec_id="e" + str(_n),
                                 symbol=symbol, side=side, last_qty=qty, last_px=px, ts_ns=T0), strategy)


def accept(risk: PreTradeRisk, s: Signal, now: int = T0) -> None:
    assert risk.check(s, now) == []
    risk.commit(s, now)


# each case: (reason, limits, setup(risk), signal kwargs)
CASES = [
    (Reason.KILL_SWITCH, {}, lambda r: r.kill(), {}),
    (Reason.STRATEGY_KILLED, {}, lambda r: r.kill("s1"), {}),
    (Reason.STRATEGY_PAUSED, {}, lambda r: r.pause("s1"), {}),
    (Reason.HALTED, {}, lambda r: r.set_state("HALTED"), {}),
    (Reason.HALTED, {}, lambda r: r.set_state("HALTED", "s1"), {}),
    (Reason.REDUCE_ONLY, {}, lambda r: r.set_state("REDUCING"), {}),
    (Reason.REDUCE_ONLY, {}, lambda r: r.set_state("REDUCING", "s1"), {}),
    (Reason.BREAKER_SYSTEM, {}, lambda r: [r.on_engine_error(T0) for _ in range(3)], {}),
    (Reason.BREAKER_EXECUTION, {}, lambda r: r.trip_breaker("execution", T0), {}),
    (Reason.BREAKER_STRATEGY, {}, lambda r: [r.on_broker_reject("s1", T0) for _ in range(5)], {}),
    (Reason.MAX_QUANTITY, {}, None, {"quantity": 200_000.0}),
    (Reason.MAX_NOTIONAL, {}, None, {"quantity": 3_000.0}),
    (Reason.MAX_NOTIONAL, {}, None, {"quantity": None, "notional": 300_000.0}),
    (Reason.MAX_POSITION, {}, lambda r: fill(r, 2_990.0, 100.0), {}),  # symbol long 300k
    (Reason.MAX_POSITION, {"max_strategy_short_usd": 1_000.0}, None, {"action": "SELL"}),
    (Reason.MAX_EXPOSURE, {}, None, {"risk_meta": RiskMeta(max_exposure=1_000.0)}),
    (Reason.MAX_EXPOSURE, {"max_strategy_exposure_usd": 1_000.0}, None, {}),
    (Reason.MAX_POSITION_PCT, {}, None, {"risk_meta": RiskMeta(max_position_pct=0.001)}),
    (Reason.GROSS_EXPOSURE, {"max_gross_exposure_usd": 1_000.0}, None, {}),
    (Reason.NET_EXPOSURE, {"max_net_exposure_usd": 1_000.0}, None, {}),
    (Reason.GROUP_EXPOSURE, {"max_group_exposure_usd": 1_000.0}, None, {"correlation_group": "tech"}),
    (Reason.GROUP_EXPOSURE, {"max_group_exposure_usd": 1_000.0, "symbol_groups": {"AAPL": "tech"}}, None, {}),
    (Reason.PORTFOLIO_VARIANCE, {"max_incremental_var_usd2": 1_000.0}, None, {}),  # 2000^2 * 4e-4 = 1600
    (Reason.PRICE_COLLAR, {}, None, {"order_type": "LIMIT", "limit_price": 120.0}),
    (Reason.PRICE_COLLAR, {}, None, {"order_type": "STOP", "stop_price": 80.0}),
    (Reason.PRICE_COLLAR, {"price_collar_ticks": 10}, None, {"order_type": "LIMIT", "limit_price": 100.5}),
    (Reason.SLIPPAGE_COLLAR, {}, None, {"risk_meta": RiskMeta(max_slippage=0.2)}),
    (Reason.THROTTLE_STRATEGY, {"strategy_burst": 2.0},
     lambda r: [accept(r, sig(quantity=float(q))) for q in (1, 2)], {}),
    (Reason.THROTTLE_NODE, {"node_burst": 2.0},
     lambda r: [accept(r, sig(strategy_id=s)) for s in ("a", "b")], {}),
    (Reason.DUPLICATE_ORDER, {}, lambda r: accept(r, sig()), {}),
    (Reason.DAILY_LOSS, {}, lambda r: (fill(r, 1_000.0, 100.0), r.on_price("AAPL", 70.0, T0)), {}),
    (Reason.MAX_DRAWDOWN, {"max_drawdown_usd": 5_000.0, "trip_breaker_on_loss": False},
     lambda r: (fill(r, 1_000.0, 100.0), r.on_price("AAPL", 110.0, T0), r.on_price("AAPL", 104.0, T0)), {}),
    (Reason.UNKNOWN_SYMBOL, {"symbols": ["AAPL", "MSFT"]}, None, {"symbol": "ZZZ"}),
    (Reason.SYMBOL_UNKNOWN_STATE, {}, lambda r: r.set_symbol_unknown("AAPL", True), {}),
    (Reason.NO_PRICE, {}, None, {"symbol": "NEWSYM"}),
]


@pytest.mark.parametrize(("reason", "limits", "setup", "kw"), CASES, ids=[str(c[0]) + "-" + str(k) for k, c in enumerate(CASES)])
def test_reason_trips(reason, limits, setup, kw) -> None:
    order = sig(**kw)
    control = make()  # default limits, no setup: the reason is absent
    assert reason not in control.check(order if (limits or setup) else sig(), T0)
    risk = make(**limits)
    if setup is not None:
        setup(risk)
    failed = risk.check(order, T0)
    assert reason in failed
    args = risk.kernel_args(order, T0)  # the numba kernel and the pure-Python reference agree here too
    assert mask_to_reasons(check_order(*args)) == failed
    assert mask_to_reasons(reference.check_order(*args)) == failed


def test_every_risk_reason_has_a_case() -> None:
    from node.risk.kernels import BITS

    assert set(BITS) == {c[0] for c in CASES}


def test_reducing_order_passes_reduce_only_and_loss_limits() -> None:
    risk = make(trip_breaker_on_loss=False)
    fill(risk, 1_000.0, 100.0)
    risk.on_price("AAPL", 70.0, T0)
    risk.set_state("REDUCING")
    assert set(risk.check(sig(action="BUY"), T0)) >= {Reason.REDUCE_ONLY, Reason.DAILY_LOSS}
    assert risk.check(sig(action="SELL", quantity=500.0), T0) == []
    assert Reason.REDUCE_ONLY in risk.check(sig(action="SELL", quantity=1_500.0), T0)  # flips: not reducing


def test_unknown_state_clears() -> None:
    risk = make()
    risk.set_symbol_unknown("AAPL", True)
    assert risk.check(sig(), T0) == [Reason.SYMBOL_UNKNOWN_STATE]
    risk.set_symbol_unknown("AAPL", False)
    assert risk.check(sig(), T0) == []


def test_all_failed_codes_are_returned() -> None:
    risk = make()
    risk.kill()
    risk.pause("s1")
    assert risk.check(sig(quantity=200_000.0), T0) == [Reason.KILL_SWITCH, Reason.STRATEGY_PAUSED,
                                                         Reason.MAX_QUANTITY, Reason.MAX_NOTIONAL,
                                                         Reason.MAX_POSITION, Reason.MAX_EXPOSURE,
                                                         Reason.MAX_POSITION_PCT, Reason.GROSS_EXPOSURE,
                                                         Reason.NET_EXPOSURE, Reason.PORTFOLIO_VARIANCE]


def test_pending_exposure_counts_and_cancel_frees_it() -> None:
    risk = make(max_symbol_long_usd=5_000.0, max_position_pct=1.0)
    first = sig(quantity=40.0)
    accept(risk, first)  # 4,000 pending
    assert Reason.MAX_POSITION in risk.check(sig(quantity=20.0), T0)
    risk.on_fill(ExecutionReport(kind=ExecKind.CANCELED, client_order_id="x", request_id=first.request_id), "s1")
    assert risk.check(sig(quantity=20.0), T0) == []
    assert risk.exposures()["gross_usd"] == 0.0


def test_fill_converts_pending_and_is_idempotent() -> None:
    risk = make()
    first = sig(quantity=40.0)
    accept(risk, first)
    rep = ExecutionReport(kind=ExecKind.PARTIAL_FILL, client_order_id="x", exec_id="E1", symbol="AAPL",
                          side=Side.BUY, last_qty=10.0, last_px=100.0, leaves_qty=30.0, request_id=first.request_id)
    risk.on_fill(rep, "s1")
    risk.on_fill(rep, "s1")  # redelivered: booked once
    assert risk.exposures()["gross_usd"] == 4_000.0  # 10 filled + 30 pending
    risk.on_fill(msgspec.structs.replace(rep, kind=ExecKind.CANCELED, exec_id="", last_qty=0.0), "s1")
    assert risk.exposures()["gross_usd"] == 1_000.0
