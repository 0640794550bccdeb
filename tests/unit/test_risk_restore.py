"""What a restarted validator rebuilds, without Ray or sockets: the fold of the controls, the risk
snapshot (positions, cash, marks, pending, UNKNOWN symbols), and saved breakers of many strategies
(issue 9 item 6: restoring more strategies than the initial columns raised IndexError)."""

from __future__ import annotations

import json
import pickle

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.ledger_rows import build_batch
from node.messages import ExecKind, ExecutionReport, Side, Signal
from node.reasons import Reason
from node.risk import PreTradeRisk, RiskLimits, TradingState
from node.risk import controls as ctl
from node.risk import snapshot as snap

T0 = 1_700_000_000 * 1_000_000_000
MS = 1_000_000
CFG = RiskLimits(cov_sample_interval_ms=0, duplicate_window_ms=0, initial_strategy_capacity=8)
_n = 0


def make(cfg: RiskLimits = CFG) -> PreTradeRisk:
    return PreTradeRisk(cfg, ["AAPL", "MSFT"], {"AAPL": 100.0, "MSFT": 200.0}, 1_000_000.0)


def sig(strategy: str, symbol: str = "AAPL", action: str = "BUY", qty: float = 1.0) -> Signal:
    global _n
    _n += 1
    return Signal(request_id="r" + str(_n), strategy_id=strategy, timestamp=1.0, symbol=symbol, action=action,
                  quantity=qty)


def fill(strategy: str, symbol: str, side: Side, qty: float, px: float, exec_id: str, request_id: str = "",
         kind: ExecKind = ExecKind.FILL) -> ExecutionReport:
    return ExecutionReport(kind=kind, client_order_id="c-" + exec_id, exec_id=exec_id, strategy_id=strategy,
                           symbol=symbol, side=side, last_qty=qty, last_px=px, cum_qty=qty, request_id=request_id,
                           ts_ns=T0 + MS)


# ---------------------------------------------------------------- issue 9 item 6


def test_thirty_strategies_of_saved_breakers_restore_into_a_fresh_risk() -> None:
    before = make()
    names = ["s" + str(k) for k in range(30)]
    for k, name in enumerate(names):
        if k % 3 == 0:
            before.trip_breaker("strategy:" + name, T0)
        elif k < 8:
            before.on_broker_reject(name, T0)  # a failure counted (under the execution threshold)
        else:
            before.check(sig(name), T0)  # a column, CLOSED
    saved = json.loads(json.dumps(before.breaker_states()))
    after = make()
    after.restore_breakers(saved)  # IndexError: index 10 is out of bounds for axis 1 with size 10 (before)
    assert after.breaker_states() == before.breaker_states()
    assert Reason.BREAKER_STRATEGY in after.check(sig("s27"), T0 + MS)
    assert after.check(sig("s28"), T0 + MS) == []


@pytest.mark.parametrize("control", ["kill", "pause", "state", "reset", "trip", "unknown"])
def test_a_control_on_a_strategy_that_grows_the_columns_is_not_lost(control: str) -> None:
    risk = make()
    for k in range(8):  # fill the initial columns: the next new strategy grows (replaces) the arrays
        risk.check(sig("warm" + str(k)), T0)
    target = "late"
    {
        "kill": lambda: risk.kill(target),
        "pause": lambda: risk.pause(target),
        "state": lambda: risk.set_state(TradingState.HALTED, target),
        "reset": lambda: risk.reset_breaker("strategy:" + target),
        "trip": lambda: risk.trip_breaker("strategy:" + target, T0),
        "unknown": lambda: risk.set_symbol_unknown("NEWSYM", True),
    }[control]()
    expected = {
        "kill": [Reason.STRATEGY_KILLED], "pause": [Reason.STRATEGY_PAUSED], "state": [Reason.HALTED],
        "reset": [], "trip": [Reason.BREAKER_STRATEGY], "unknown": [],
    }[control]  # fmt: skip
    got = risk.check(sig(target), T0 + MS)
    assert [r for r in got if r in expected] == expected and (expected or got == [])


# ---------------------------------------------------------------- the fold of the controls

_strategies = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"])
_controls = st.one_of(
    st.builds(ctl.Kill, st.none() | _strategies),
    st.builds(ctl.Unkill, st.none() | _strategies),
    st.builds(ctl.Pause, _strategies),
    st.builds(ctl.Resume, _strategies),
    st.builds(ctl.SetState, st.sampled_from(list(TradingState)), st.none() | _strategies),
    st.builds(ctl.SetLimits, st.fixed_dictionaries({"max_quantity": st.sampled_from([0.5, 5.0, 1_000.0])})),
)


def _apply_live(risk: PreTradeRisk, c: ctl.Control) -> None:
    if isinstance(c, ctl.Kill):
        risk.kill(c.strategy_id)
    elif isinstance(c, ctl.Unkill):
        risk.unkill(c.strategy_id)
    elif isinstance(c, ctl.Pause):
        risk.pause(c.strategy_id)
    elif isinstance(c, ctl.Resume):
        risk.resume(c.strategy_id)
    elif isinstance(c, ctl.SetState):
        risk.set_state(c.state, c.strategy_id)
    elif isinstance(c, ctl.SetLimits):
        risk.set_limits(c.changes)


@settings(max_examples=60, deadline=None)
@given(st.lists(_controls, max_size=25))
def test_the_fold_of_the_logged_controls_refuses_exactly_what_the_live_risk_refuses(seq: list) -> None:
    live = make()
    fold = ctl.ControlState()
    for c in seq:
        _apply_live(live, c)
        event = ctl.ControlEvent(control=c, ts_ns=T0, target=ctl.target_of(c), after=fold.fold(c))
        assert ctl.decode_event(ctl.encode_event(event)) == event  # what the stream carries
    wire = ctl.decode_snapshot(ctl.encode_snapshot(ctl.ControlSnapshot(last_id="1-0", state=fold)))
    restarted = make()
    wire.state.apply_to(restarted)
    for s in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "new"]:
        for action in ("BUY", "SELL"):
            probe = sig(s, action=action, qty=2.0)
            assert restarted.check(probe, T0 + MS) == live.check(probe, T0 + MS), s


def test_limits_that_cannot_change_at_run_time_or_are_out_of_range_are_refused() -> None:
    with pytest.raises(ctl.ControlError) as unknown:
        ctl.checked_control(ctl.SetLimits({"max_symbols": 3.0}), CFG)
    assert unknown.value.reason == "UNKNOWN_LIMIT"
    with pytest.raises(ctl.ControlError) as bad:
        ctl.checked_control(ctl.SetLimits({"max_quantity": -1.0}), CFG)
    assert bad.value.reason == "BAD_LIMIT"
    again = pickle.loads(pickle.dumps(bad.value))  # what Ray does to it on the way to the operator
    assert (type(again), again.reason, str(again)) == (ctl.ControlError, "BAD_LIMIT", str(bad.value))
    with pytest.raises(ctl.ControlError):
        ctl.checked_control(ctl.LoadCovariance(["A", "B"], [[1.0]]), CFG)
    risk = make()
    risk.set_limits({"max_quantity": 5.0})
    assert Reason.MAX_QUANTITY in risk.check(sig("x", qty=6.0), T0)
    assert risk.check(sig("x", qty=5.0), T0) == []


# ---------------------------------------------------------------- the risk snapshot


def _book(risk: PreTradeRisk) -> PreTradeRisk:
    risk.check(sig("grp", symbol="TSLA"), T0)
    risk.on_fill(fill("p1", "AAPL", Side.BUY, 300.0, 100.0, "x1"), "p1")
    risk.on_fill(fill("p1", "MSFT", Side.SELL, 50.0, 200.0, "x2"), "p1")
    risk.on_fill(fill("p2", "AAPL", Side.BUY, 100.0, 101.0, "x3"), "p2")
    risk.on_price("AAPL", 99.0, T0 + 2 * MS)
    open_order = sig("p2", symbol="MSFT", qty=40.0)
    assert risk.check(open_order, T0 + 2 * MS) == []
    risk.commit(open_order, T0 + 2 * MS)
    risk.set_symbol_unknown("MSFT", True)
    return risk


def test_a_snapshot_rebuilds_positions_pnl_pending_and_unknown_symbols() -> None:
    before = _book(make())
    taken = snap.take(before, {"MSFT": {"c-9"}}, ["x1", "x2", "x3"])
    after = make()
    unknown = snap.restore(after, snap.decode(snap.encode(taken)))
    assert unknown == {"MSFT": {"c-9"}}
    assert after.positions() == before.positions() == {"p1": {"AAPL": 300.0, "MSFT": -50.0}, "p2": {"AAPL": 100.0}}
    assert after.exposures() == pytest.approx(before.exposures())
    for s in ("p1", "p2"):
        assert after.strategy_pnl(s) == pytest.approx(before.strategy_pnl(s))
    for probe in (sig("p1", qty=2_000.0), sig("p2", "MSFT", "SELL", 1.0), sig("p3", "AAPL", "SELL", 3.0)):
        assert after.check(probe, T0 + 3 * MS) == before.check(probe, T0 + 3 * MS)
    # a fill booked before the snapshot and replayed from the log after it is not booked twice
    after.on_fill(fill("p1", "AAPL", Side.BUY, 300.0, 100.0, "x1"), "p1")
    assert after.exposures() == pytest.approx(before.exposures())


def test_the_pending_reservation_of_a_restored_order_is_freed_by_its_fill() -> None:
    before = _book(make())
    after = make()
    snap.restore(after, snap.take(before, {}, []))
    open_rid = next(iter(after._pending))
    for risk in (before, after):
        risk.on_fill(fill("p2", "MSFT", Side.BUY, 40.0, 200.0, "x9", request_id=open_rid), "p2")
    assert after.exposures() == pytest.approx(before.exposures())
    assert not after._pending and not before._pending


# ---------------------------------------------------------------- the ledger's rows


def test_control_events_become_audit_rows_and_the_newest_switches_per_strategy() -> None:
    fold = ctl.ControlState()
    entries = []
    for k, c in enumerate([ctl.Pause("s1"), ctl.Kill("s1"), ctl.Kill(None), ctl.SetLimits({"max_quantity": 9.0})]):
        ev = ctl.ControlEvent(control=c, ts_ns=T0 + k, target=ctl.target_of(c), after=fold.fold(c))
        entries.append((("1-" + str(k)).encode(), {ctl.CONTROLS_FIELD: ctl.encode_event(ev)}))
    entries.append((b"1-9", {ctl.CONTROLS_FIELD: b"\xc1junk"}))
    batch = build_batch([("ctl", entries)], "sig", "ev", "mon", "ctl")
    assert [row[1] for row in batch.controls] == ["pause", "kill", "kill", "limits"]
    s1 = batch.strategy_states["s1"]
    assert (s1[0], s1[1], s1[2], s1[3]) == ("s1", True, True, "ACTIVE")
    assert batch.strategy_states[ctl.NODE][2] is True
    assert len(batch.dead) == 1 and batch.entry_count == 5
    assert msgspec.json.decode(batch.controls[3][3]) == {"changes": {"max_quantity": 9.0}}


@settings(max_examples=60, deadline=None)
@given(
    field=st.sampled_from(["prices", "group_of", "pos_strategy", "pos_symbol", "pos_qty", "cash", "peak", "day0"]),
    junk=st.binary(max_size=40),
)
def test_a_damaged_snapshot_is_refused_before_it_changes_anything(field: str, junk: bytes) -> None:
    taken = snap.take(_book(make()), {}, [])
    damaged = msgspec.structs.replace(taken, **{field: junk})
    target = make()
    before = (target.exposures(), target.book.n_cols, target.book.n_symbols)
    try:
        snap.restore(target, damaged)
    except ValueError:
        assert (target.exposures(), target.book.n_cols, target.book.n_symbols) == before
    else:  # the junk happened to be a valid array of the right length
        snap.check(damaged)
