"""The native engine's submit deadline: an order sent with no broker word by then is UNKNOWN
(TIMEOUT), never a made-up reject, and the broker's later word still moves it on."""

from __future__ import annotations

import time

from adapters.engines.native import NativeOrderManager
from node.messages import ExecKind, ExecutionReport, Signal, SignalAccepted
from node.orders import OrderState, signal_id_for
from node.reasons import Reason

S = 1_000_000_000


def accepted(n: int) -> SignalAccepted:
    rid = "dl-" + str(n)
    return SignalAccepted(signal_id_for(rid), 0, Signal(request_id=rid, strategy_id="t", timestamp=time.time(),
                                                        symbol="AAPL", action="BUY", quantity=1.0))


def test_unanswered_order_becomes_unknown_at_its_deadline_and_answered_ones_do_not():
    m = NativeOrderManager()
    a, b = m.on_signal(accepted(1)), m.on_signal(accepted(2))
    m.sent(a.client_order_id, 0)
    m.sent(b.client_order_id, 0)
    m.on_report(ExecutionReport(kind=ExecKind.NEW, client_order_id=b.client_order_id))
    assert m.overdue(2 * S, 5 * S) == []  # not yet
    (rep,) = m.overdue(5 * S, 5 * S)
    assert (rep.client_order_id, rep.kind, rep.reason, rep.strategy_id) == (a.client_order_id, ExecKind.UNKNOWN,
                                                                          Reason.TIMEOUT, "t")
    assert m.orders[a.client_order_id].state is OrderState.UNKNOWN
    assert m.overdue(60 * S, 5 * S) == []  # reported once
    # the broker's word comes late: it moves the order on
    out = m.on_report(ExecutionReport(kind=ExecKind.FILL, client_order_id=a.client_order_id, exec_id="e1",
                                      last_qty=1.0, cum_qty=1.0))
    assert out is not None and m.orders[a.client_order_id].state is OrderState.FILLED


def _acked(m: NativeOrderManager, n: int) -> str:
    coid = m.on_signal(accepted(n)).client_order_id
    m.sent(coid, 0)
    m.on_report(ExecutionReport(kind=ExecKind.NEW, client_order_id=coid))
    return coid


def test_a_cancel_with_no_answer_by_its_deadline_is_unknown_and_the_brokers_word_resolves_it():
    from node.messages import OrderSnapshot

    m = NativeOrderManager()
    answered, silent, partly = _acked(m, 10), _acked(m, 11), _acked(m, 12)
    for coid in (answered, silent, partly):
        m.cancel_sent(coid, 1 * S)
    m.on_report(ExecutionReport(kind=ExecKind.CANCELED, client_order_id=answered))
    m.on_report(ExecutionReport(kind=ExecKind.PARTIAL_FILL, client_order_id=partly, exec_id="p1", last_qty=0.5,
                                cum_qty=0.5, last_px=1.0))  # a fill is not the cancel's answer
    assert m.overdue(5 * S, 30 * S, 10 * S) == []  # not yet
    reps = m.overdue(11 * S, 30 * S, 10 * S)
    assert {(r.client_order_id, r.kind, r.reason) for r in reps} == {
        (silent, ExecKind.UNKNOWN, Reason.CANCEL_TIMEOUT), (partly, ExecKind.UNKNOWN, Reason.CANCEL_TIMEOUT)}
    assert m.orders[answered].state is OrderState.CANCELED
    assert m.overdue(100 * S, 30 * S, 10 * S) == []  # reported once; the submit deadline does not fire again
    # the broker adapter's word (a look) resolves one; a late CANCELED the other
    rep = m.adopt(OrderSnapshot(silent, ExecKind.NEW, 0.0, 1.0))
    assert rep is not None and m.orders[silent].state is OrderState.ACCEPTED
    m.on_report(ExecutionReport(kind=ExecKind.CANCELED, client_order_id=partly, cum_qty=0.5))
    assert m.orders[partly].state is OrderState.CANCELED
    assert m.cancels_timed_out == 2


def test_a_cancel_of_a_finished_or_unknown_order_has_no_deadline():
    m = NativeOrderManager()
    done = _acked(m, 20)
    m.on_report(ExecutionReport(kind=ExecKind.FILL, client_order_id=done, exec_id="f", last_qty=1.0, cum_qty=1.0,
                                last_px=1.0))
    unknown = m.on_signal(accepted(21)).client_order_id
    m.sent(unknown, 0)
    assert len(m.overdue(30 * S, 30 * S)) == 1  # UNKNOWN (TIMEOUT)
    m.cancel_sent(done, 31 * S)
    m.cancel_sent(unknown, 31 * S)
    assert m.overdue(1_000 * S, 30 * S, 10 * S) == []


def test_adopting_an_order_restates_only_what_moved():
    """A new leader's adoption restates an order (reason RECOVERED) only when the broker's word moves
    it: a state and filled quantity the engine already had (followed) were published, never again."""
    from node.messages import OrderSnapshot

    m = NativeOrderManager()
    filled, open_ = _acked(m, 20), _acked(m, 21)
    m.on_report(ExecutionReport(kind=ExecKind.FILL, client_order_id=filled, exec_id="f1", last_qty=1.0,
                                cum_qty=1.0, last_px=1.0))
    assert m.adopt(OrderSnapshot(filled, ExecKind.FILL, 1.0, 0.0)) is None
    assert m.adopt(OrderSnapshot(open_, ExecKind.NEW, 0.0, 1.0)) is None
    rep = m.adopt(OrderSnapshot(open_, ExecKind.CANCELED, 0.0, 0.0))
    assert rep is not None and (rep.kind, rep.reason, rep.exec_id, rep.last_qty) == (
        ExecKind.CANCELED, "RECOVERED", "", 0.0)
    assert m.orders[open_].state is OrderState.CANCELED
