"""Pure mapping between the node's messages and what the Nautilus engine submits (no Nautilus import).

`plan_order` turns an accepted signal into the numbers of one order (whole shares, prices at the
instrument's precision), or a reason code when it cannot be sized. Nautilus objects are built from
the plan in `bridge_strategy.py`; keeping the arithmetic here keeps it testable without a kernel.
"""

from __future__ import annotations

import math
from typing import Mapping

import msgspec

from node.messages import OrderType, Side, Signal
from node.reasons import Reason


class OrderPlan(msgspec.Struct, frozen=True, gc=False):
    """One order to build with Nautilus's order factory; prices are None where the type has none."""

    symbol: str
    side: Side
    order_type: OrderType
    quantity: float
    limit_price: float | None
    stop_price: float | None


def reference_price(sig: Signal, last_px: Mapping[str, float], fallback: Mapping[str, float]) -> float | None:
    """The price a notional signal is sized at: its own limit/stop price, the last fill, the fallback."""
    if sig.order_type is OrderType.LIMIT or sig.order_type is OrderType.STOP_LIMIT:
        if sig.limit_price is not None:
            return sig.limit_price
    if sig.order_type is OrderType.STOP and sig.stop_price is not None:
        return sig.stop_price
    px = last_px.get(sig.symbol)
    if px is not None:
        return px
    return fallback.get(sig.symbol)


def plan_order(
    sig: Signal, last_px: Mapping[str, float], fallback: Mapping[str, float]
) -> OrderPlan | Reason:
    """The order for one signal, or why there is none (NO_PRICE, SIZE_SPEC, PRICE_REQUIRED)."""
    otype = sig.order_type
    if otype is OrderType.LIMIT or otype is OrderType.STOP_LIMIT:
        if sig.limit_price is None:
            return Reason.PRICE_REQUIRED
    if otype is OrderType.STOP or otype is OrderType.STOP_LIMIT:
        if sig.stop_price is None:
            return Reason.PRICE_REQUIRED
    qty = sig.quantity
    if qty is None:
        if sig.notional is None:
            return Reason.SIZE_SPEC
        px = reference_price(sig, last_px, fallback)
        if px is None:
            return Reason.NO_PRICE
        qty = float(math.floor(sig.notional / px))
        if qty < 1.0:
            return Reason.SIZE_SPEC
    limit = sig.limit_price if otype is OrderType.LIMIT or otype is OrderType.STOP_LIMIT else None
    stop = sig.stop_price if otype is OrderType.STOP or otype is OrderType.STOP_LIMIT else None
    return OrderPlan(sig.symbol, sig.side, otype, qty, limit, stop)


def quantity_precision(qty: float) -> int:
    """Decimals needed to write `qty` exactly (0 for whole shares, up to 9)."""
    if qty == int(qty):
        return 0
    text = repr(qty)
    if "e" in text or "E" in text:
        return 9
    return min(9, len(text.partition(".")[2]))
