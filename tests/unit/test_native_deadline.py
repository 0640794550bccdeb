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
