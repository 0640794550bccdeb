"""Order identity, the state machine and the native order manager."""

import pytest

from adapters.broker_gate import Admit, BrokerGate
from adapters.engines.native import NativeOrderManager
from node.messages import ExecKind, ExecutionReport, Signal, SignalAccepted
from node.orders import Order, OrderState, apply_report, client_order_id_for, signal_id_for


def test_ids_are_deterministic_and_ascii():
    assert signal_id_for("req-1") == signal_id_for("req-1") != signal_id_for("req-2")
    coid = client_order_id_for(signal_id_for("req-1"))
    assert coid.isascii() and len(coid) <= 24 and coid.startswith("NAE-")


def rep(kind, exec_id="", cum=0.0, **kw):
    return ExecutionReport(kind=kind, client_order_id="c", exec_id=exec_id, cum_qty=cum, **kw)


def accepted(rid="r1", qty=10.0):
    sig = Signal(request_id=rid, strategy_id="s", timestamp=0.0, symbol="AAPL", action="BUY", quantity=qty)
    return SignalAccepted(signal_id_for(rid), 0, sig)


@pytest.mark.parametrize(
    "reports, state",
    [
        ([rep(ExecKind.NEW)], OrderState.ACCEPTED),
        ([rep(ExecKind.NEW), rep(ExecKind.PARTIAL_FILL, "e1", 5)], OrderState.PARTIALLY_FILLED),
        ([rep(ExecKind.NEW), rep(ExecKind.PARTIAL_FILL, "e1", 5), rep(ExecKind.FILL, "e2", 10)], OrderState.FILLED),
        ([rep(ExecKind.PARTIAL_FILL, "e1", 5), rep(ExecKind.NEW)], OrderState.PARTIALLY_FILLED),  # late ack
        ([rep(ExecKind.FILL, "e1", 10), rep(ExecKind.CANCELED)], OrderState.FILLED),  # replayed update on closed order
        ([rep(ExecKind.UNKNOWN)], OrderState.UNKNOWN),
        ([rep(ExecKind.UNKNOWN), rep(ExecKind.FILL, "e1", 10)], OrderState.FILLED),  # broker evidence resolves it
        ([rep(ExecKind.REJECTED, reason="VENUE_REJECT")], OrderState.REJECTED),
    ],
)
def test_state_machine(reports, state):
    order = Order(intent=accepted().signal and _intent())
    for r in reports:
        apply_report(order, r)
    assert order.state is state


def _intent():
    from adapters.engines.native import intent_for

    return intent_for(accepted())


def test_duplicate_fill_is_ignored_by_exec_id():
    m = NativeOrderManager()
    intent = m.on_signal(accepted())
    fill = ExecutionReport(kind=ExecKind.FILL, client_order_id=intent.client_order_id, exec_id="E1", cum_qty=10.0, last_qty=10.0)
    assert m.on_report(fill) is not None
    assert m.on_report(fill) is None
    assert m.duplicate_fills == 1


def test_manager_enriches_reports_and_refuses_duplicate_signals():
    m = NativeOrderManager()
    intent = m.on_signal(accepted("r9"))
    assert intent is not None and m.on_signal(accepted("r9")) is None
    out = m.on_report(ExecutionReport(kind=ExecKind.NEW, client_order_id=intent.client_order_id))
    assert (out.request_id, out.strategy_id, out.signal_id) == ("r9", "s", signal_id_for("r9"))
    # a report for an order this manager never placed is booked (published), never dropped
    booked = m.on_report(ExecutionReport(kind=ExecKind.NEW, client_order_id="NAE-unknown-0"))
    assert booked is not None and booked.signal_id == "unknown"
    assert m.orphan_reports == 1


def test_broker_gate_fences_old_epochs_and_sends_each_id_once():
    g = BrokerGate()
    assert g.admit_submit(1, "a") is Admit.SEND
    assert g.admit_submit(1, "a") is Admit.DUPLICATE
    assert g.admit_submit(2, "a") is Admit.DUPLICATE  # a new leader re-driving the same id: not sent again
    assert g.admit_submit(1, "b") is Admit.STALE_EPOCH  # the old leader woke up
    assert g.admit_submit(2, "b") is Admit.SEND
    assert (g.refused_stale, g.refused_duplicate) == (1, 2)


def test_broker_gate_never_sends_an_id_its_venue_reported_on():
    g = BrokerGate()
    g.load_sent([])  # a restarted adapter whose venue knows nothing yet (IBKR before it reached TWS)
    g.note_sent("adopted")  # then the venue reports on an order its predecessor sent
    assert g.known("adopted") and g.admit_submit(3, "adopted") is Admit.DUPLICATE
    assert g.admit_submit(3, "new") is Admit.SEND
