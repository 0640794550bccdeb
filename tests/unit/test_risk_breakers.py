"""Circuit breakers with an injected clock: CLOSED -> OPEN -> HALF_OPEN -> CLOSED, probes, re-open,
manual reset, and the state surviving a restart of the risk facade (plain dicts, JSON round trip)."""

from __future__ import annotations

import msgspec
import pytest

from node.messages import ExecKind, ExecutionReport, Signal
from node.reasons import Reason
from node.risk import BreakerState, PreTradeRisk, RiskLimits

T0 = 1_700_000_000 * 1_000_000_000
MS = 1_000_000
CFG = RiskLimits(cov_sample_interval_ms=0, strategy_failure_threshold=3, breaker_window_ms=1_000,
                 breaker_cooldown_ms=5_000, breaker_probe_orders=1, duplicate_window_ms=0)
_n = 0


def make() -> PreTradeRisk:
    return PreTradeRisk(CFG, ["AAPL"], {"AAPL": 100.0}, 1_000_000.0)


def sig(strategy: str = "s1") -> Signal:
    global _n
    _n += 1
    return Signal(request_id="b" + str(_n), strategy_id=strategy, timestamp=1.0, symbol="AAPL", action="BUY",
                  quantity=float(_n % 50 + 1))


def ack(risk: PreTradeRisk, strategy: str = "s1", now: int = T0) -> None:
    risk.on_fill(ExecutionReport(kind=ExecKind.NEW, client_order_id="c", ts_ns=now), strategy)


def test_closed_open_half_open_closed() -> None:
    risk = make()
    name = "strategy:s1"
    risk.on_broker_reject("s1", T0)
    risk.on_broker_reject("s1", T0 + 100 * MS)
    assert risk.breaker_state(name, T0 + 100 * MS) is BreakerState.CLOSED
    assert risk.check(sig(), T0 + 100 * MS) == []
    risk.on_broker_reject("s1", T0 + 200 * MS)  # third inside the window: opens
    assert risk.breaker_state(name, T0 + 200 * MS) is BreakerState.OPEN
    assert risk.check(sig(), T0 + 4_000 * MS) == [Reason.BREAKER_STRATEGY]
    assert risk.check(sig("s2"), T0 + 4_000 * MS) == []  # other strategies trade on
    t = T0 + 5_200 * MS  # cool-down over
    assert risk.breaker_state(name, t) is BreakerState.HALF_OPEN
    probe = sig()
    assert risk.check(probe, t) == []
    risk.commit(probe, t)
    assert risk.check(sig(), t) == [Reason.BREAKER_STRATEGY]  # one probe at a time
    ack(risk, now=t + MS)
    assert risk.breaker_state(name, t + MS) is BreakerState.CLOSED
    assert risk.check(sig(), t + MS) == []


def test_failures_outside_the_window_do_not_add_up() -> None:
    risk = make()
    for k in range(6):
        risk.on_broker_reject("s1", T0 + k * 600 * MS)  # at most 2 inside any 1 s window
    assert risk.breaker_state("strategy:s1", T0 + 4 * 1_000 * MS) is BreakerState.CLOSED


def test_failed_probe_reopens_for_another_cooldown() -> None:
    risk = make()
    risk.trip_breaker("strategy:s1", T0)
    t = T0 + 5_000 * MS
    probe = sig()
    assert risk.check(probe, t) == []
    risk.commit(probe, t)
    risk.on_broker_reject("s1", t + MS)
    assert risk.breaker_state("strategy:s1", t + MS) is BreakerState.OPEN
    assert risk.check(sig(), t + 4_000 * MS) == [Reason.BREAKER_STRATEGY]
    assert risk.check(sig(), t + MS + 5_000 * MS) == []


def test_ack_before_any_probe_does_not_close() -> None:
    risk = make()
    risk.trip_breaker("strategy:s1", T0)
    ack(risk, now=T0 + 6_000 * MS)  # a late ack of an older order is no probe
    assert risk.breaker_state("strategy:s1", T0 + 6_000 * MS) is BreakerState.HALF_OPEN


@pytest.mark.parametrize(("trip", "name", "reason"), [
    (lambda r: [r.on_engine_error(T0) for _ in range(3)], "system", Reason.BREAKER_SYSTEM),
    (lambda r: [r.on_broker_reject("s" + str(k), T0) for k in range(10)], "execution", Reason.BREAKER_EXECUTION),
])
def test_node_breakers_and_manual_reset(trip, name, reason) -> None:
    risk = make()
    trip(risk)
    assert reason in risk.check(sig("fresh"), T0 + MS)
    risk.reset_breaker(name)
    assert reason not in risk.check(sig("fresh"), T0 + MS)


def test_loss_limit_trips_the_strategy_breaker() -> None:
    risk = make()
    risk.on_price("AAPL", 100.0, T0)
    risk.on_fill(ExecutionReport(kind=ExecKind.FILL, client_order_id="c", exec_id="x", symbol="AAPL",
                                 last_qty=1_000.0, last_px=100.0, ts_ns=T0), "s1")
    risk.on_price("AAPL", 75.0, T0 + MS)  # -25k > 20k daily loss
    assert risk.breaker_state("strategy:s1", T0 + MS) is BreakerState.OPEN
    assert risk.check(sig(), T0 + 2 * MS) == [Reason.BREAKER_STRATEGY, Reason.DAILY_LOSS]


def test_breaker_state_survives_a_restart() -> None:
    risk = make()
    risk.trip_breaker("strategy:s1", T0)
    risk.trip_breaker("system", T0)
    risk.on_broker_reject("s2", T0)
    stored = msgspec.json.encode(risk.breaker_states())  # as the circuit_breaker_state table holds it
    restarted = make()
    restarted.restore_breakers(msgspec.json.decode(stored))
    assert restarted.breaker_states() == risk.breaker_states()
    assert restarted.breaker_state("strategy:s1", T0 + MS) is BreakerState.OPEN
    assert restarted.check(sig(), T0 + MS) == [Reason.BREAKER_SYSTEM, Reason.BREAKER_STRATEGY]
    restarted.on_broker_reject("s2", T0 + MS)
    restarted.on_broker_reject("s2", T0 + 2 * MS)  # the restored failure count carries on: 3rd opens
    assert restarted.breaker_state("strategy:s2", T0 + 2 * MS) is BreakerState.OPEN


def test_unknown_breaker_name_is_refused() -> None:
    with pytest.raises(ValueError):
        make().reset_breaker("nonsense")
