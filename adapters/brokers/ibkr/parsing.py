"""IBKR (TWS API through ib_async) <-> node mapping (pure: no I/O; time arrives as an argument).

- `contract_of(symbol)`: a US stock on SMART, or an OCC option symbol as an `Option` (multiplier 100).
- `order_of(intent, tif)`: the ib_async `Order`, `orderRef` = the client order id (TWS echoes it on
  every execution, so a sweep after a reconnect names our orders whatever connection placed them).
- `kind_of_status(status)`: TWS order status -> report kind (None: live, or fills tell the rest).
- `exec_key(exec_id)`: the id of an execution across its corrections. TWS names a correction of
  execution `X.01` as `X.02` (same stem, higher suffix): the stem is what a fill is deduped on, so
  a correction is never counted twice.
- `in_window(now, windows)`: whether a maintenance window (nightly reset, gateway restart) is on.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from ib_async import Contract, Option, Order, Stock

from node.config import MaintenanceWindow
from node.messages import ExecKind, OrderIntent, OrderType, Side
from node.reasons import Reason

OCC_SYMBOL = re.compile(r"^([A-Z0-9.]{1,6}) *(\d{6})([CP])(\d{8})$")
OPTION_MULTIPLIER = "100"

_TYPES = {OrderType.MARKET: "MKT", OrderType.LIMIT: "LMT", OrderType.STOP: "STP", OrderType.STOP_LIMIT: "STP LMT"}
LIVE_STATUSES = frozenset({"PendingSubmit", "ApiPending", "PreSubmitted", "Submitted", "PendingCancel", "ValidationError"})
_ENDED = {
    "Cancelled": (ExecKind.CANCELED, "CANCELED"),
    "ApiCancelled": (ExecKind.CANCELED, "CANCELED"),
    "Inactive": (ExecKind.REJECTED, Reason.VENUE_REJECT.value),
}


def contract_of(symbol: str) -> Contract:
    m = OCC_SYMBOL.match(symbol)
    if m is None:
        return Stock(symbol, "SMART", "USD")
    root, yymmdd, right, strike = m.groups()
    return Option(root, "20" + yymmdd, int(strike) / 1000, right, "SMART", OPTION_MULTIPLIER, "USD")


def order_of(intent: OrderIntent, account: str = "") -> tuple[Order | None, str]:
    """(the order, "") or (None, reason code)."""
    kind = intent.order_type
    qty = intent.quantity
    if qty is None or not qty > 0.0:
        return None, Reason.SIZE_SPEC.value  # TWS sizes in shares / contracts; a notional has no size here
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) and not (intent.limit_price or 0.0) > 0.0:
        return None, Reason.PRICE_REQUIRED.value
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT) and not (intent.stop_price or 0.0) > 0.0:
        return None, Reason.PRICE_REQUIRED.value
    order = Order(
        action="BUY" if intent.side is Side.BUY else "SELL", totalQuantity=qty, orderType=_TYPES[kind],
        tif=intent.time_in_force.value, orderRef=intent.client_order_id, account=account,
    )  # fmt: skip
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        order.lmtPrice = float(intent.limit_price)
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT):
        order.auxPrice = float(intent.stop_price)
    return order, ""


def kind_of_status(status: str) -> tuple[ExecKind, str] | None:
    """An ended order's (kind, reason); None while live (and for Filled: its fills end it)."""
    return _ENDED.get(status)


def exec_key(exec_id: str) -> str:
    """'0000e0d5.6557a1b2.01.01' -> '0000e0d5.6557a1b2.01' (the execution, whatever its correction)."""
    stem, dot, suffix = exec_id.rpartition(".")
    return stem if dot and suffix.isdigit() else exec_id


def in_window(now: dt.datetime, windows: list[MaintenanceWindow]) -> MaintenanceWindow | None:
    """The window `now` (aware) falls in, or None. A window may run past midnight."""
    for w in windows:
        local = now.astimezone(ZoneInfo(w.tz))
        hh, mm = int(w.start_hhmm[:2]), int(w.start_hhmm[3:])
        for day in (local.date() - dt.timedelta(days=1), local.date()):
            start = dt.datetime.combine(day, dt.time(hh, mm), ZoneInfo(w.tz))
            if start <= local < start + dt.timedelta(minutes=w.duration_min):
                return w
    return None


def side_of(exec_side: str) -> Side:
    """TWS execution side: BOT / SLD."""
    return Side.BUY if exec_side in ("BOT", "BUY") else Side.SELL
