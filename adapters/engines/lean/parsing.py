"""Pure mappings between the node's messages and the LEAN bridge protocol (no I/O).

- `KIND_OF_STATUS`: which LEAN `OrderStatus` becomes which execution report kind. Statuses with
  no report of their own (New, CancelPending, UpdateSubmitted, None) map to nothing: they only
  tell the bridge that LEAN has the order.
- `place_command`: an `OrderIntent` as a `PlaceOrder` (LEAN's signed quantity, LEAN's order type).
- `snapshot_kind`: a status in a `StatusReport` as the kind an `OrderSnapshot` carries; anything
  the bridge cannot vouch for is UNKNOWN, never a made-up REJECTED or CANCELED.
- `reject_reason`: LEAN's own message on an Invalid order, behind the VENUE_REJECT code.
"""

from __future__ import annotations

from adapters.engines.lean import protocol as p
from node.messages import ExecKind, OrderIntent, OrderType, Side
from node.reasons import Reason

#: LEAN status -> report kind (a timeout is UNKNOWN, see `book.LeanOrderBook.expire`).
KIND_OF_STATUS: dict[str, ExecKind] = {
    p.SUBMITTED: ExecKind.NEW,
    p.PARTIALLY_FILLED: ExecKind.PARTIAL_FILL,
    p.FILLED: ExecKind.FILL,
    p.CANCELED: ExecKind.CANCELED,
    p.INVALID: ExecKind.REJECTED,
}

FILL_STATUSES = frozenset({p.PARTIALLY_FILLED, p.FILLED})
DONE_STATUSES = frozenset({p.FILLED, p.CANCELED, p.INVALID})

#: node order type -> LEAN order type
LEAN_ORDER_TYPE: dict[OrderType, str] = {
    OrderType.MARKET: p.MARKET,
    OrderType.LIMIT: p.LIMIT,
    OrderType.STOP: p.STOP_MARKET,
    OrderType.STOP_LIMIT: p.STOP_LIMIT,
}

#: why an order went UNKNOWN when LEAN restarted and no longer lists it
LEAN_RESTARTED = "LEAN_RESTARTED"
_MAX_MESSAGE = 200


def kind_for_status(status: str) -> ExecKind | None:
    """The report kind of a LEAN order status, or None when that status carries no report."""
    return KIND_OF_STATUS.get(status)


def snapshot_kind(status: str, filled_quantity: float) -> ExecKind:
    """The kind an `OrderSnapshot` carries for a status in a `StatusReport`."""
    kind = KIND_OF_STATUS.get(status)
    if kind is not None:
        return kind
    if status in (p.NEW, p.CANCEL_PENDING, p.UPDATE_SUBMITTED):
        return ExecKind.PARTIAL_FILL if filled_quantity > 0.0 else ExecKind.NEW
    return ExecKind.UNKNOWN


def signed(side: Side, amount: float) -> float:
    return amount if side is Side.BUY else -amount


def place_command(intent: OrderIntent) -> p.PlaceOrder:
    """The LEAN command for one intent: tag = client order id, signed size, LEAN's order type."""
    otype = intent.order_type
    limit = intent.limit_price if otype is OrderType.LIMIT or otype is OrderType.STOP_LIMIT else None
    stop = intent.stop_price if otype is OrderType.STOP or otype is OrderType.STOP_LIMIT else None
    return p.PlaceOrder(
        client_order_id=intent.client_order_id,
        symbol=intent.symbol,
        order_type=LEAN_ORDER_TYPE[otype],
        quantity=signed(intent.side, intent.quantity) if intent.quantity is not None else 0.0,
        notional=signed(intent.side, intent.notional) if intent.quantity is None and intent.notional else 0.0,
        limit_price=limit or 0.0,
        stop_price=stop or 0.0,
    )


def reject_reason(message: str) -> str:
    """`VENUE_REJECT: <LEAN's message>`: the code first (clients act on it), LEAN's words after."""
    text = " ".join(message.split())[:_MAX_MESSAGE]
    return Reason.VENUE_REJECT.value + (": " + text if text else "")


def exec_id(session_id: str, order_id: int, event_id: int) -> str:
    """LEAN has no broker execution id on an OrderEvent: (session, order id, event id) is unique
    per event. LEAN numbers a replayed broker fill as a new event, so fills are also deduped by
    quantity in `book.LeanOrderBook`."""
    return session_id + ":" + str(order_id) + ":" + str(event_id)
