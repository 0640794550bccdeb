"""The daily roll that bounds per-order maps (node.daily_roll), the engine's order book and the broker's maps."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.broker_gate import Admit, BrokerGate
from adapters.engines.native import NativeOrderManager
from node.daily_roll import DailyRoll, Finished, next_roll_ns
from node.messages import ExecKind, ExecutionReport, Side, Signal, SignalAccepted
from node.orders import client_order_id_for, signal_id_for

_HOUR = 3_600 * 1_000_000_000


def _ns(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp()) * 1_000_000_000


@pytest.mark.parametrize(
    ("now", "hour", "expected"),
    [
        ("2026-11-30T05:00:00", 22, "2026-11-30T22:00:00"),
        ("2026-11-30T22:00:00", 22, "2026-12-01T22:00:00"),  # strictly after
        ("2026-11-30T23:59:59", 0, "2026-12-01T00:00:00"),
        ("2026-12-31T21:30:00", 21, "2027-01-01T21:00:00"),
    ],
)
def test_next_roll_is_the_next_time_the_utc_clock_reads_the_hour(now: str, hour: int, expected: str) -> None:
    assert next_roll_ns(_ns(now), hour) == _ns(expected)


def test_a_roll_is_due_once_per_day() -> None:
    roll = DailyRoll(22, _ns("2026-11-30T21:00:00"))
    assert not roll.due(_ns("2026-11-30T21:59:59"))
    assert roll.due(_ns("2026-11-30T22:00:00"))
    assert not roll.due(_ns("2026-11-30T23:00:00"))
    assert roll.due(_ns("2026-12-02T03:00:00"))  # a day skipped (the node was down): one roll, not two
    assert not roll.due(_ns("2026-12-02T21:00:00")) and roll.rolls == 2


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from(["add", "discard", "roll"])), max_size=60))
def test_finished_orders_are_forgotten_at_the_second_roll_after_they_finished(ops: list[tuple[str, str]]) -> None:
    finished = Finished()
    gen = 0
    last: dict[str, int] = {}  # the model: id -> the generation it last finished in
    for coid, op in ops:
        if op == "add":
            finished.add(coid)
            last[coid] = gen
        elif op == "discard":
            finished.discard(coid)
            last.pop(coid, None)
        else:
            gen += 1
            expected = sorted(c for c, g in last.items() if g < gen - 1)
            assert sorted(finished.roll()) == expected
            for c in expected:
                del last[c]
        assert len(finished) == len(last)


def _accepted(rid: str) -> SignalAccepted:
    sig = Signal(request_id=rid, strategy_id="s1", timestamp=0.0, symbol="AAPL", action="BUY", quantity=10.0)
    return SignalAccepted(signal_id_for(rid), 0, sig)


def test_the_engine_forgets_finished_orders_at_the_second_roll_and_keeps_open_ones() -> None:
    m = NativeOrderManager()
    for rid in ("done", "open"):
        m.on_signal(_accepted(rid))
    done, open_ = (client_order_id_for(signal_id_for(r)) for r in ("done", "open"))
    m.on_report(ExecutionReport(kind=ExecKind.FILL, client_order_id=done, exec_id="e1", last_qty=10.0, cum_qty=10.0,
                                last_px=1.0, symbol="AAPL", side=Side.BUY))
    m.on_report(ExecutionReport(kind=ExecKind.NEW, client_order_id=open_, symbol="AAPL", side=Side.BUY))
    assert m.roll() == 0 and done in m.orders  # the first roll after it finished: kept (a full day at least)
    assert m.roll() == 1 and done not in m.orders
    assert open_ in m.orders  # open: kept whatever the rolls
    for _ in range(3):
        m.roll()
    assert open_ in m.orders and m.rolled == 1


def test_the_gate_forgets_only_what_it_is_told() -> None:
    gate = BrokerGate()
    for coid in ("a", "b"):
        assert gate.admit_submit(1, coid) is Admit.SEND
    gate.forget(["a"])
    assert not gate.known("a") and gate.known("b") and len(gate) == 1
