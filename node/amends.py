"""Cancel and replace signals: what an engine does with one (pure logic, no I/O).

A signal with `amend` (node.messages.Amend) names an earlier signal's order by its `request_id`.
The validator passes a cancel without risk (it takes none: it passes the kill switch, a halt and an
UNKNOWN symbol) and a replace through risk as the new order it is. The engine that holds the order
plans it here:

- **cancel**: the original order, if it is not finished, is canceled at the broker (CancelOrder,
  which every venue takes as a no-op for an order already finished: sending it again is safe).
  The broker's CANCELED report of the original order is the answer.
- **replace**: the original, live at the broker (acknowledged, maybe partly filled), is replaced by
  the replace signal's own order (ReplaceOrder; a new client order id the broker adapter sends at
  most once). The original ends CANCELED, reason REPLACED; the new order lives on.

Anything else is refused with a REJECTED report on the amend's own client order id (never on the
original's, whose state only the broker moves), with an AMEND_* reason code.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import msgspec

from node.config import EngineKind, NodeConfig
from node.messages import AmendKind, ExecKind, ExecutionReport, OrderIntent
from node.orders import DONE_STATES, Order, OrderState, client_order_id_for, signal_id_for
from node.reasons import Reason

#: a replace needs the order live at the broker: an unacknowledged or UNKNOWN one may not be there
_REPLACEABLE = frozenset({OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED})


class CancelPlan(msgspec.Struct, frozen=True):
    client_order_id: str  # the original order's


class ReplacePlan(msgspec.Struct, frozen=True):
    client_order_id: str  # the original order's
    intent: OrderIntent  # the new order (the replace signal's own client order id)


class RefusePlan(msgspec.Struct, frozen=True):
    report: ExecutionReport  # REJECTED, on the amend's own client order id


AmendPlan = CancelPlan | ReplacePlan | RefusePlan


def original_order_id(original_request_id: str) -> str:
    """The client order id of the signal whose `request_id` is given (leg 0)."""
    return client_order_id_for(signal_id_for(original_request_id))


def refusal(intent: OrderIntent, reason: Reason, now_ns: int) -> ExecutionReport:
    return ExecutionReport(
        kind=ExecKind.REJECTED, client_order_id=intent.client_order_id, symbol=intent.symbol, side=intent.side,
        reason=reason.value, ts_ns=now_ns, strategy_id=intent.strategy_id, request_id=intent.request_id,
        signal_id=intent.signal_id,
    )  # fmt: skip


def plan_amend(kind: AmendKind, original_request_id: str, amend: OrderIntent, orders: Mapping[str, Order],
               now_ns: int) -> AmendPlan:
    """What to do with an amend whose own order would be `amend`, given the engine's orders."""
    coid = original_order_id(original_request_id)
    order = orders.get(coid)
    if order is None:
        return RefusePlan(refusal(amend, Reason.AMEND_UNKNOWN_ORIGINAL, now_ns))
    old = order.intent
    if (old.strategy_id, old.symbol, old.side) != (amend.strategy_id, amend.symbol, amend.side) or (
        kind is AmendKind.REPLACE and old.order_type is not amend.order_type
    ):
        return RefusePlan(refusal(amend, Reason.AMEND_MISMATCH, now_ns))
    if order.state in DONE_STATES:
        return RefusePlan(refusal(amend, Reason.AMEND_ORDER_DONE, now_ns))
    if kind is AmendKind.CANCEL:
        return CancelPlan(coid)
    if order.state not in _REPLACEABLE:
        return RefusePlan(refusal(amend, Reason.AMEND_NOT_LIVE, now_ns))
    return ReplacePlan(coid, amend)


#: engine kinds that replace an order (the native engine by ReplaceOrder; a Nautilus kernel by a cancel,
#: then the new order once the original's CANCELED is in: never both live)
_REPLACING = frozenset({EngineKind.NATIVE, EngineKind.NAUTILUS})


def amendable_by(
    cfg: NodeConfig, group_of: Callable[[str, str], str | None], mode_entry: Callable[[str], Any] | None = None
) -> Callable[[str, str], bool] | None:
    """(strategy_id, symbol) -> whether the engines of its group replace an order (the native
    engine does; so does the Nautilus host, by cancel then new order). None: every group does, no
    check needed. A strategy in modes (`mode_entry`, node.modes) is amendable when both its groups are."""
    native = {g.name for g in cfg.group_list() if all(e.kind in _REPLACING for e in g.engines)}
    if len(native) == len(cfg.group_list()):
        return None

    def amendable(strategy_id: str, symbol: str) -> bool:
        entry = mode_entry(strategy_id) if mode_entry is not None else None
        if entry is not None:
            return entry.paper_group in native and entry.live_group in native
        return group_of(strategy_id, symbol) in native

    return amendable
