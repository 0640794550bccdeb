"""Closing a stranded (UNKNOWN, BROKER_LOST) order on the operator's word: `execnode orders resolve`."""

import pytest

from adapters.engines.native import MANUAL_RESOLUTION, NativeOrderManager
from node.messages import ExecKind, ExecutionReport
from node.orders import OrderState
from tests.unit.test_orders import accepted


def stranded():
    m = NativeOrderManager()
    intent = m.on_signal(accepted("r1"))
    assert [r.client_order_id for r in m.strand()] == [intent.client_order_id]
    return m, intent


def test_canceled_by_hand():
    m, intent = stranded()
    out = m.resolve_stranded(intent.client_order_id, 0.0, 0.0, now_ns=5)
    assert [(r.kind, r.reason, r.request_id) for r in out] == [(ExecKind.CANCELED, MANUAL_RESOLUTION, "r1")]
    assert m.orders[intent.client_order_id].state is OrderState.CANCELED
    assert m.stranded_ids() == []


def test_filled_in_full_by_hand():
    m, intent = stranded()
    qty = intent.quantity
    out = m.resolve_stranded(intent.client_order_id, qty, 101.5, now_ns=5)
    assert [r.kind for r in out] == [ExecKind.FILL]
    assert out[0].last_qty == qty and out[0].last_px == 101.5 and out[0].exec_id == "MANUAL-" + intent.client_order_id


def test_partly_filled_then_the_rest_canceled():
    m, intent = stranded()
    out = m.resolve_stranded(intent.client_order_id, 2.0, 100.0, now_ns=5)
    assert [(r.kind, r.cum_qty) for r in out] == [(ExecKind.PARTIAL_FILL, 2.0), (ExecKind.CANCELED, 2.0)]
    assert out[0].last_qty == 2.0 and m.orders[intent.client_order_id].state is OrderState.CANCELED
    # the lost broker's own word later on is a duplicate of nothing: a replayed cancel is ignored
    assert m.on_report(ExecutionReport(kind=ExecKind.CANCELED, client_order_id=intent.client_order_id)) is None


@pytest.mark.parametrize(
    ("filled", "px", "words"),
    [(-1.0, 1.0, "between"), (1e9, 1.0, "between"), (float("nan"), 1.0, "between"), (2.0, 0.0, "price")],
)
def test_impossible_numbers_are_refused(filled, px, words):
    m, intent = stranded()
    with pytest.raises(ValueError, match=words):
        m.resolve_stranded(intent.client_order_id, filled, px, now_ns=5)
    assert m.stranded_ids() == [intent.client_order_id]  # nothing changed


def test_only_a_stranded_order():
    m = NativeOrderManager()
    intent = m.on_signal(accepted("r1"))
    with pytest.raises(ValueError, match="not a stranded order"):
        m.resolve_stranded(intent.client_order_id, 0.0, 0.0, now_ns=5)
    with pytest.raises(ValueError, match="not a stranded order"):
        m.resolve_stranded("NAE-nope-0", 0.0, 0.0, now_ns=5)
