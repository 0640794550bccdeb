"""The reconciler's halts (node.reconcile_halts, the control fold's `placed_by`) and what a run does
with them (actors.reconciler.Reconciler.reconcile over scripted runs: no broker, no store)."""

from __future__ import annotations

import asyncio

import msgspec
from hypothesis import given, strategies as st

from actors.reconciler import STARTUP, Reconciler
from node.config import NodeConfig, ReconcileConfig
from node.reconcile_halts import (
    FAILED_BY,
    FAILED_REASON,
    StartupRetry,
    by_of,
    lifts_failed_halt,
    startup_retry_delay,
)
from node.reconcile_report import Action, RunSummary
from node.risk import controls as ctl
from node.risk.config import TradingState

policies = st.builds(StartupRetry, attempts=st.integers(1, 12), first_ms=st.integers(1, 5_000),
                     max_ms=st.integers(1, 60_000))


@given(policies)
def test_startup_retries_are_bounded_and_back_off(policy):
    delays = [startup_retry_delay(n, policy) for n in range(0, policy.attempts + 3)]
    assert delays[0] is None  # nothing failed yet: nothing to wait for
    waits = delays[1:policy.attempts]
    assert all(d is not None for d in waits) and len(waits) == policy.attempts - 1  # attempts tries in all
    assert all(d is None for d in delays[policy.attempts:])  # then it halts
    assert all(0 < d <= max(policy.max_ms, 0) / 1000 for d in waits)  # type: ignore[operator]
    assert waits == sorted(waits)  # never shorter than the one before
    if waits:
        assert waits[0] == min(policy.first_ms, policy.max_ms) / 1000


summaries = st.builds(
    RunSummary, run_id=st.just("r"), trigger=st.sampled_from([STARTUP, "schedule", "reconnect", "retry"]),
    brokers=st.just(["paper"]), started_ns=st.just(0),
    error=st.sampled_from(["", "ActorDiedError: the broker adapter died"]),
    actions=st.lists(st.builds(Action, state=st.sampled_from(["HALTED", "REDUCING"]),
                               reason=st.sampled_from([FAILED_REASON, "RECONCILE_POSITION_DRIFT (+1)"])), max_size=2),
    counts=st.dictionaries(st.sampled_from(["MISSING_FILL", "STATUS_MISMATCH", "POSITION_DRIFT"]), st.integers(1, 3)),
)


@given(summaries)
def test_only_a_run_that_compared_and_would_not_halt_lifts(summary):
    # a run that could not compare proves nothing; one that found a drift is a halt of its own
    assert lifts_failed_halt(summary) == (not summary.error and not summary.actions)


@given(st.sampled_from(["RECONCILE_FAILED", "RECONCILE_POSITION_DRIFT", "RECONCILE_QUANTITY_MISMATCH"]),
       st.integers(0, 9))
def test_a_halt_names_its_kind_without_the_count(kind, more):
    reason = kind + (" (+%d)" % more if more else "")
    assert by_of(reason) == "reconciler:" + kind
    assert (by_of(reason) == FAILED_BY) == (kind == FAILED_REASON)


BYS = ["", FAILED_BY, "reconciler:RECONCILE_POSITION_DRIFT"]  # an operator, the two kinds of reconciler halt
set_states = st.builds(ctl.SetState, state=st.sampled_from(list(TradingState)),
                       strategy_id=st.sampled_from([None, "s1", "s2"]), by=st.sampled_from(BYS))
others = st.builds(ctl.Kill, strategy_id=st.sampled_from([None, "s1"])) | st.builds(ctl.Pause, strategy_id=st.just("s2"))


@given(st.lists(set_states | others, max_size=20), st.sampled_from(BYS))
def test_placed_by_is_what_that_setter_set_last_and_nobody_changed(controls, by):
    fold = ctl.ControlState()
    last: dict[str | None, ctl.SetState] = {}
    for c in controls:
        fold.fold(c)
        if isinstance(c, ctl.SetState):
            last[c.strategy_id] = c
    expected = {t for t, c in last.items() if c.by == by and c.state is not TradingState.ACTIVE}
    assert set(fold.placed_by(by)) == expected
    # what an operator set after the reconciler is never the reconciler's to lift
    fold.fold(ctl.SetState(TradingState.HALTED, None, ""))
    assert None not in fold.placed_by(FAILED_BY)


class _OldSetState(msgspec.Struct, frozen=True, tag="state"):
    state: TradingState
    strategy_id: str | None = None


def test_the_setter_survives_the_encoded_fold():
    fold = ctl.ControlSnapshot()
    fold.state.fold(ctl.SetState(TradingState.HALTED, "s1", FAILED_BY))
    back = ctl.decode_snapshot(ctl.encode_snapshot(fold))
    assert back.state.placed_by(FAILED_BY) == ["s1"]
    old = msgspec.msgpack.encode(_OldSetState(TradingState.HALTED, "s1"))  # recorded before `by` existed
    assert msgspec.msgpack.decode(old, type=ctl.Control) == ctl.SetState(TradingState.HALTED, "s1", "")


class Scripted(Reconciler):
    """A reconciler whose runs are scripted: each `_reconcile` fails (the broker unreadable) while
    `fails` lasts, then compares clean; the controls and lifts it asks for are kept."""

    def __init__(self, fails: int, attempts: int = 3, drift: bool = False) -> None:
        cfg = NodeConfig(reconcile=ReconcileConfig(startup_attempts=attempts, startup_retry_ms=1,
                                                   startup_retry_max_ms=2))
        super().__init__(cfg, "redis://unused", "postgresql://unused", self._books, self._set, lift=self._lift_call)
        self.fails = fails
        self.drift = drift
        self.tries: list[bool] = []  # halt_on_error of each try
        self.lifts: list[str] = []

    async def _books(self):
        raise AssertionError("not asked: the runs are scripted")

    async def _set(self, state, strategy_id, by):
        raise AssertionError("start-up runs here are act=False")

    async def _lift_call(self, by: str) -> dict:
        self.lifts.append(by)
        return {"lifted": ["*"]}

    async def _reconcile(self, trigger, act, halt_on_error=True):
        self.tries.append(halt_on_error)
        summary = RunSummary(run_id=str(len(self.tries)), trigger=trigger, brokers=[], started_ns=0)
        if self.fails > 0:
            self.fails -= 1
            summary.error, summary.matched = "ActorDiedError: restarting", False
            if trigger == STARTUP and halt_on_error:
                summary.actions = [Action(state="HALTED", reason=FAILED_REASON)]
        elif self.drift:
            summary.matched = False
            summary.actions = [Action(state="HALTED", strategy_id="s1", reason="RECONCILE_POSITION_DRIFT")]
        return summary


def test_a_startup_run_tries_again_before_it_halts():
    rec = Scripted(fails=2, attempts=3)
    summary = asyncio.run(rec.reconcile(STARTUP, act=False))
    assert rec.tries == [False, False, True]  # only the last try may halt
    assert summary.error == "" and summary.actions == [] and not rec.failed_halt


def test_a_startup_run_that_never_compares_halts_and_a_later_clean_run_lifts_it():
    rec = Scripted(fails=3, attempts=3)
    summary = asyncio.run(rec.reconcile(STARTUP, act=False))
    assert rec.tries == [False, False, True]
    assert [(a.state, a.reason) for a in summary.actions] == [("HALTED", FAILED_REASON)]
    assert rec.failed_halt and rec.lifts == []
    later = asyncio.run(rec.reconcile("retry"))
    assert rec.lifts == [FAILED_BY] and later.lifted == ["*"] and not rec.failed_halt and rec.lifted == 1


def test_other_runs_are_tried_once_and_never_lift_on_an_error_or_a_drift():
    rec = Scripted(fails=1)
    asyncio.run(rec.reconcile("schedule"))
    assert rec.tries == [True] and rec.lifts == []  # an error: tried once, nothing lifted
    rec.drift = True
    asyncio.run(rec.reconcile("reconnect"))
    assert rec.lifts == []  # a drift halt is the operator's; nothing is lifted on one


def test_no_broker_book_is_an_error_never_an_empty_account():
    """A run that got no book (the supervisor's table between a dead adapter and its replacement)
    cannot compare: an error, never every ledger fill FILL_UNKNOWN_TO_BROKER and a halt."""

    async def no_books():
        return []

    async def never(*args):
        raise AssertionError("nothing is set on an error outside start-up")

    rec = Reconciler(NodeConfig(), "redis://unused", "postgresql://unused", no_books, never)

    async def ledger_rows():
        return [], [], None, set()

    async def recorded(*args):
        return None

    rec._ledger_rows = ledger_rows  # type: ignore[method-assign]
    rec._record = recorded  # type: ignore[method-assign]
    rec.start = recorded  # type: ignore[method-assign]
    summary = asyncio.run(rec.reconcile("schedule"))
    assert summary.error.startswith("LookupError: BROKER_BOOK_MISSING") and not summary.actions
    summary = asyncio.run(rec._reconcile(STARTUP, act=False))  # at start-up: the node does not trade blind
    assert [(a.state, a.reason) for a in summary.actions] == [("HALTED", FAILED_REASON)]


def test_the_supervisor_gives_no_books_while_an_accounts_adapter_is_out_of_its_table():
    from types import SimpleNamespace

    import pytest

    from actors.supervisor import Supervisor
    from node.config import BrokerConfig
    from node.errors import BrokerError

    table = SimpleNamespace(_brokers={"paper": BrokerConfig(name="paper")}, _actors={})  # `restart_broker` popped it
    with pytest.raises(BrokerError) as refused:
        Supervisor.broker_books(table)  # type: ignore[arg-type]
    assert refused.value.retriable and "broker:paper" in str(refused.value)

