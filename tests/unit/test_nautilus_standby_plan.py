"""The Nautilus standby's bookkeeping and promotion plan (pure: no kernel, no broker)."""

from __future__ import annotations

from adapters.engines.nautilus.standby import ShadowBook, plan_promotion
from node.messages import ExecKind, ExecutionReport, OrderIntent, OrderSnapshot, OrdersReport, OrderType, Side


def _intent(coid: str) -> OrderIntent:
    return OrderIntent(client_order_id=coid, signal_id="s-" + coid, request_id="r-" + coid, strategy_id="t",
                       symbol="AAPL", side=Side.BUY, order_type=OrderType.MARKET, quantity=1.0)


def test_held_orders_the_broker_has_are_adopted_the_others_sent():
    book = ShadowBook()
    for coid in ("a", "b", "c"):
        book.hold(_intent(coid))
    book.answer("a", ExecKind.NEW)  # the leader reported a: the broker has it
    answer = OrdersReport(
        [OrderSnapshot("a", ExecKind.NEW, 0.0, 1.0), OrderSnapshot("b", ExecKind.FILL, 1.0, 0.0)],
        [ExecutionReport(kind=ExecKind.FILL, client_order_id="b", exec_id="x1", last_qty=1.0, last_px=10.0)],
    )
    plan = plan_promotion(book.unanswered(), answer, lambda coid: True)
    assert [i.client_order_id for i in plan.send] == ["c"]  # only what the broker lacks
    assert plan.adopted == 1 and plan.swept == 1
    assert [(r.client_order_id, r.kind) for r in plan.reports] == [("a", ExecKind.NEW), ("b", ExecKind.FILL)]


def test_reports_before_their_order_wait_and_terminal_ones_release_it():
    book = ShadowBook()
    early = ExecutionReport(kind=ExecKind.NEW, client_order_id="a")
    book.keep_early(early)
    assert book.hold(_intent("a")) == [early]
    book.answer("a", ExecKind.FILL)
    assert not book.held and not book.unanswered()


def test_closed_or_foreign_orders_get_no_reports():
    answer = OrdersReport([OrderSnapshot("z", ExecKind.CANCELED, 0.0, 0.0)],
                          [ExecutionReport(kind=ExecKind.FILL, client_order_id="z", exec_id="e", last_qty=1.0)])
    plan = plan_promotion([], answer, lambda coid: None)
    assert plan.reports == [] and plan.send == []
