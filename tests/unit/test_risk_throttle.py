"""Throttles (token buckets per strategy and node-wide), the duplicate-order window, and `release`."""

from __future__ import annotations

from node.messages import Signal
from node.reasons import Reason
from node.risk import PreTradeRisk, RiskLimits

T0 = 1_700_000_000 * 1_000_000_000
MS = 1_000_000
_n = 0


def make(**kw) -> PreTradeRisk:
    cfg = RiskLimits(**{"cov_sample_interval_ms": 0, **kw})
    return PreTradeRisk(cfg, ["AAPL", "MSFT"], {"AAPL": 100.0, "MSFT": 200.0}, 1_000_000.0)


def sig(strategy: str = "s1", qty: float | None = None, **kw) -> Signal:
    global _n
    _n += 1
    base = dict(request_id="t" + str(_n), strategy_id=strategy, timestamp=1.0, symbol="AAPL", action="BUY",
                quantity=float(_n % 97 + 1) if qty is None else qty)
    base.update(kw)
    return Signal(**base)


def send(risk: PreTradeRisk, s: Signal, now: int) -> list[Reason]:
    failed = risk.check(s, now)
    if not failed:
        risk.commit(s, now)
    return failed


def test_strategy_bucket_burst_then_rate() -> None:
    risk = make(strategy_burst=3.0, strategy_orders_per_sec=2.0)
    assert [send(risk, sig(), T0) for _ in range(4)] == [[], [], [], [Reason.THROTTLE_STRATEGY]]
    assert send(risk, sig(), T0 + 400 * MS) == [Reason.THROTTLE_STRATEGY]  # 0.8 token
    assert send(risk, sig(), T0 + 500 * MS) == []  # 1 token after 0.5 s at 2/s
    assert send(risk, sig("s2"), T0 + 500 * MS) == []  # buckets are per strategy


def test_bucket_refill_is_capped_at_burst() -> None:
    risk = make(strategy_burst=2.0, strategy_orders_per_sec=100.0)
    later = T0 + 3_600 * 1_000 * MS
    assert [send(risk, sig(), later) for _ in range(3)] == [[], [], [Reason.THROTTLE_STRATEGY]]


def test_node_bucket_spans_strategies() -> None:
    risk = make(node_burst=3.0, node_orders_per_sec=1.0)
    results = [send(risk, sig("s" + str(k)), T0) for k in range(4)]
    assert results == [[], [], [], [Reason.THROTTLE_NODE]]
    assert send(risk, sig("s9"), T0 + 1_000 * MS) == []


def test_check_alone_spends_no_token() -> None:
    risk = make(strategy_burst=1.0)
    for _ in range(5):
        assert risk.check(sig(), T0) == []


def test_duplicate_window() -> None:
    risk = make(duplicate_window_ms=1_000)
    assert send(risk, sig(qty=10.0), T0) == []
    assert send(risk, sig(qty=10.0), T0 + 999 * MS) == [Reason.DUPLICATE_ORDER]
    assert send(risk, sig(qty=11.0), T0 + 999 * MS) == []  # other size
    assert send(risk, sig(qty=10.0, action="SELL"), T0 + 999 * MS) == []  # other side
    assert send(risk, sig(qty=10.0, symbol="MSFT"), T0 + 999 * MS) == []  # other symbol
    assert send(risk, sig("s2", qty=10.0), T0 + 999 * MS) == []  # other strategy
    assert send(risk, sig(qty=None, notional=10.0), T0 + 999 * MS) == []  # notional 10 is not quantity 10
    assert send(risk, sig(qty=10.0), T0 + 1_000 * MS) == []  # window over


def test_duplicate_window_holds_on_both_sides_and_not_at_zero() -> None:
    """A fallback entry is judged as of its append, which may be before an order already taken:
    the window holds on either side, and a window of 0 never refuses (the CI failure of 2026-11-30)."""
    risk = make(duplicate_window_ms=1_000)
    assert send(risk, sig(qty=10.0), T0) == []
    assert send(risk, sig(qty=10.0), T0 - 999 * MS) == [Reason.DUPLICATE_ORDER]
    assert send(risk, sig(qty=10.0), T0 - 1_000 * MS) == []
    off = make(duplicate_window_ms=0)
    assert send(off, sig(qty=10.0), T0) == []
    assert send(off, sig(qty=10.0), T0 - 300 * MS) == []


def test_duplicate_ring_remembers_interleaved_orders() -> None:
    risk = make(duplicate_window_ms=1_000)
    for q in (1.0, 2.0, 3.0):
        assert send(risk, sig(qty=q), T0) == []
    assert send(risk, sig(qty=1.0), T0 + MS) == [Reason.DUPLICATE_ORDER]


def test_release_gives_back_token_window_and_exposure() -> None:
    risk = make(strategy_burst=1.0, duplicate_window_ms=1_000)
    s = sig(qty=10.0)
    assert send(risk, s, T0) == []
    assert risk.exposures()["gross_usd"] == 1_000.0
    assert risk.check(sig(qty=10.0), T0) == [Reason.THROTTLE_STRATEGY, Reason.DUPLICATE_ORDER]
    risk.release(s, T0)  # the durable append failed: the acceptance is undone
    assert risk.exposures()["gross_usd"] == 0.0
    assert risk.check(sig(qty=10.0), T0) == []
