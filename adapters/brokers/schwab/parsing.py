"""Schwab Trader API <-> node mapping (pure: no I/O, no clock).

- `order_spec(intent)`: the JSON body of `POST /trader/v1/accounts/{hash}/orders` for one node
  order (equities; options when the symbol is an OCC symbol), or a reason code it cannot be sent.
- `order_id_from_location(url)`: Schwab answers a placed order with 201 and no body; the new
  order's id is the last path segment of its `Location` header.
- `read_order(obj)`: one order of `GET .../orders` as the node sees it: its kind (the status
  mapped), quantities, and its executions as fills with broker-stable exec ids
  (`<orderId>-<activityId>-<leg no.>`), so a fill seen on two sweeps is one fill.
- `matches(intent, obj)`: whether an order the node does not know by id is the one an UNKNOWN
  submit sent (Schwab keeps no client order id): same symbol, instruction, quantity and type.
- `activity_order_ids(data)`: the Schwab orderIds one ACCT_ACTIVITY data frame of the streamer
  names (`MESSAGE_DATA.SchwabOrderID`), and how many of its entries could not be read. The event is
  only a wake-up: the order itself is read (`read_order`), so a fill has one exec id however it is seen.
- `account_book(orders, account, ours, ...)`: Schwab's own view of the account as the reconciler's
  `BrokerBook`: every listed order with its executions (the node's under their client order ids,
  any other as `SCHWAB-<orderId>`: placed by hand or by another program), the positions and cash
  Schwab reports, and its valuation of each equity and option position (`pnl_of`: averagePrice,
  marketValue, long/shortOpenProfitLoss, prices per share at the option's multiplier; Schwab gives
  no realised PnL per position there).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import msgspec

from node.instruments import DEFAULT_MULTIPLIERS, OCC_SYMBOL, Multipliers
from node.messages import ExecKind, OrderIntent, OrderType, Side
from node.reasons import Reason
from node.reconcile import BrokerBook, BrokerPnl, Fill, Order, is_finite_pnl

_ORDER_TYPE = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP: "STOP",
    OrderType.STOP_LIMIT: "STOP_LIMIT",
}
_DURATION = {"DAY": "DAY", "GTC": "GOOD_TILL_CANCEL", "IOC": "IMMEDIATE_OR_CANCEL", "FOK": "FILL_OR_KILL"}

#: Schwab order status -> the node's report kind (None: still live, its fills say the rest)
_LIVE = frozenset({
    "AWAITING_PARENT_ORDER", "AWAITING_CONDITION", "AWAITING_STOP_CONDITION", "AWAITING_MANUAL_REVIEW",
    "ACCEPTED", "AWAITING_UR_OUT", "PENDING_ACTIVATION", "QUEUED", "WORKING", "PENDING_CANCEL",
    "PENDING_REPLACE", "NEW", "AWAITING_RELEASE_TIME", "PENDING_ACKNOWLEDGEMENT", "PENDING_RECALL",
})  # fmt: skip
_ENDED = {
    "FILLED": (ExecKind.FILL, ""),
    "CANCELED": (ExecKind.CANCELED, "CANCELED"),
    "REPLACED": (ExecKind.CANCELED, Reason.REPLACED.value),
    "EXPIRED": (ExecKind.CANCELED, Reason.EXPIRED.value),
    "REJECTED": (ExecKind.REJECTED, Reason.VENUE_REJECT.value),
}


class SchwabFill(msgspec.Struct, frozen=True, kw_only=True):
    exec_id: str
    qty: float
    price: float
    time: str = ""


class SchwabOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One order as Schwab lists it, in node terms."""

    order_id: str
    status: str
    kind: ExecKind | None  # None: live (NEW once acknowledged, fills tell the rest)
    reason: str
    symbol: str
    side: Side
    quantity: float
    filled: float
    remaining: float
    order_type: str
    entered_time: str
    fills: list[SchwabFill]


def is_option(symbol: str) -> bool:
    return OCC_SYMBOL.match(symbol) is not None


def schwab_symbol(symbol: str) -> str:
    """Schwab spells an OCC symbol with its root padded to 6 ('AAPL  250117C00150000')."""
    m = OCC_SYMBOL.match(symbol)
    return symbol if m is None else m.group(1).ljust(6) + "".join(m.groups()[1:])


def node_symbol(symbol: str) -> str:
    """The node's spelling: an OCC symbol without the padding ('AAPL250117C00150000')."""
    return symbol.replace(" ", "") if OCC_SYMBOL.match(symbol) else symbol


def order_spec(intent: OrderIntent, mult: Multipliers = DEFAULT_MULTIPLIERS) -> tuple[dict[str, Any] | None, str]:
    """(the order body, "") or (None, reason code). A notional is sized in whole contracts at the
    symbol's multiplier (`mult`: the node's)."""
    kind = intent.order_type
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) and not (intent.limit_price or 0.0) > 0.0:
        return None, Reason.PRICE_REQUIRED.value
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT) and not (intent.stop_price or 0.0) > 0.0:
        return None, Reason.PRICE_REQUIRED.value
    option = is_option(intent.symbol)
    qty = intent.quantity
    if qty is None:
        # Schwab takes whole shares or contracts; a notional needs a price to size it
        px = intent.limit_price or intent.stop_price
        notional = intent.notional or 0.0
        if not px or not notional > 0.0:
            return None, Reason.SIZE_SPEC.value
        qty = math.floor(notional / (px * mult.of(intent.symbol)))
    if not qty > 0.0 or qty != math.floor(qty) or math.isinf(qty):
        return None, Reason.SIZE_SPEC.value
    duration = _DURATION.get(intent.time_in_force.value)
    if duration is None:
        return None, Reason.SCHEMA_INVALID.value
    buy = intent.side is Side.BUY
    if option:
        instruction = "BUY_TO_OPEN" if buy else "SELL_TO_CLOSE"
    else:
        instruction = "BUY" if buy else "SELL"
    spec: dict[str, Any] = {
        "orderType": _ORDER_TYPE[kind],
        "session": "NORMAL",
        "duration": duration,
        "orderStrategyType": "SINGLE",
        "orderLegCollection": [{
            "instruction": instruction,
            "quantity": int(qty),
            "instrument": {"symbol": schwab_symbol(intent.symbol), "assetType": "OPTION" if option else "EQUITY"},
        }],
    }  # fmt: skip
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        spec["price"] = _price(intent.limit_price)
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT):
        spec["stopPrice"] = _price(intent.stop_price)
    return spec, ""


def order_id_from_location(location: str | None) -> str:
    """'.../accounts/HASH/orders/1234' -> '1234'; '' when there is no usable id."""
    if not location:
        return ""
    tail = location.rstrip("/").rsplit("/", 1)[-1]
    return tail if tail.isdigit() else ""


def read_order(obj: Any) -> SchwabOrder | None:
    """One order object of Schwab's answer, or None when it is not one we can read (counted by the caller)."""
    try:
        legs = obj["orderLegCollection"]
        leg = legs[0]
        status = str(obj["status"])
        instruction = str(leg.get("instruction", ""))
        fills = []
        for act in obj.get("orderActivityCollection") or ():
            if act.get("activityType") != "EXECUTION":
                continue
            for n, ex in enumerate(act.get("executionLegs") or ()):
                qty = float(ex["quantity"])
                if qty > 0.0:
                    exec_id = str(obj["orderId"]) + "-" + str(act.get("activityId", "")) + "-" + str(n)
                    fills.append(SchwabFill(exec_id=exec_id, qty=qty, price=float(ex["price"]), time=str(ex.get("time", ""))))
        ended = _ENDED.get(status)
        if ended is None and status not in _LIVE:
            ended = (ExecKind.REJECTED, Reason.VENUE_REJECT.value)  # a status we do not know is no live order
        return SchwabOrder(
            order_id=str(obj["orderId"]),
            status=status,
            kind=None if ended is None else ended[0],
            reason="" if ended is None else ended[1],
            symbol=node_symbol(str(leg["instrument"]["symbol"])),
            side=Side.BUY if instruction.startswith("BUY") else Side.SELL,
            quantity=float(obj.get("quantity", leg.get("quantity", 0.0))),
            filled=float(obj.get("filledQuantity", 0.0)),
            remaining=float(obj.get("remainingQuantity", 0.0)),
            order_type=str(obj.get("orderType", "")),
            entered_time=str(obj.get("enteredTime", "")),
            fills=fills,
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None


#: ACCT_ACTIVITY message types that name no order: the subscription's own confirmation
_NO_ORDER_TYPES = frozenset({"SUBSCRIBED"})
_MAX_ORDER_ID_DIGITS = 20


def activity_order_ids(data: Any) -> tuple[list[str], int]:
    """One ACCT_ACTIVITY data entry (as schwab-py's handler gets it: `content` entries with fields
    relabelled MESSAGE_TYPE / MESSAGE_DATA, or still numbered "2" / "3") -> (orderIds, unreadable).

    MESSAGE_DATA is a JSON object, or a string holding one, with `SchwabOrderID` (a string or an
    integer of digits). An entry with none, an ERROR entry, or anything else that is not this
    shape counts as unreadable; never raises."""
    ids: list[str] = []
    bad = 0
    try:
        content = data["content"]
    except (KeyError, TypeError, IndexError):
        return ids, 1
    if not isinstance(content, list):
        return ids, 1
    for entry in content:
        if not isinstance(entry, dict):
            bad += 1
            continue
        kind = entry.get("MESSAGE_TYPE", entry.get("2"))
        if kind in _NO_ORDER_TYPES:
            continue
        body = entry.get("MESSAGE_DATA", entry.get("3"))
        if isinstance(body, (str, bytes)):
            try:
                body = msgspec.json.decode(body)
            except msgspec.DecodeError:
                bad += 1
                continue
        oid = body.get("SchwabOrderID") if isinstance(body, dict) else None
        if isinstance(oid, bool) or not isinstance(oid, (str, int)):
            bad += 1
            continue
        text = str(oid)
        if not text.isascii() or not text.isdigit() or len(text) > _MAX_ORDER_ID_DIGITS:
            bad += 1
            continue
        ids.append(text)
    return ids, bad


def matches(intent: OrderIntent, order: SchwabOrder, mult: Multipliers = DEFAULT_MULTIPLIERS) -> bool:
    """Whether `order` (not known by id) can be the one an unanswered submit of `intent` placed."""
    spec, _ = order_spec(intent, mult)
    if spec is None:
        return False
    leg = spec["orderLegCollection"][0]
    return (
        order.symbol == intent.symbol
        and order.side is intent.side
        and order.quantity == float(leg["quantity"])
        and order.order_type == spec["orderType"]
    )


def positions_of(account: Any) -> dict[str, float]:
    """`GET /trader/v1/accounts/{hash}?fields=positions` -> net quantity per symbol."""
    out: dict[str, float] = {}
    try:
        for p in account["securitiesAccount"].get("positions") or ():
            qty = float(p.get("longQuantity", 0.0)) - float(p.get("shortQuantity", 0.0))
            if qty:
                out[node_symbol(str(p["instrument"]["symbol"]))] = qty
    except (KeyError, TypeError, ValueError, AttributeError):
        return {}
    return out


def pnl_of(account: Any, mult: Multipliers = DEFAULT_MULTIPLIERS) -> dict[str, BrokerPnl]:
    """Schwab's valuation of each equity and option position, by the node's symbol (an option's
    padded OCC symbol unpadded): the mark per share (marketValue / quantity / multiplier: Schwab's
    marketValue is dollars, an option's 100 shares a contract), the average price (per share, as
    Schwab quotes it), the open PnL (unrealised, dollars). The multiplier: the instrument's own
    `optionMultiplier` where Schwab gives one, else the node's (`node.instruments`). A position that
    cannot be read is left out."""
    out: dict[str, BrokerPnl] = {}
    try:
        held = account["securitiesAccount"].get("positions") or ()
    except (KeyError, TypeError, AttributeError):
        return out
    if not isinstance(held, list):  # `positions: true` or an object: nothing readable
        return out
    for p in held:
        try:
            instrument = p["instrument"]
            symbol = node_symbol(str(instrument["symbol"]))
            qty = float(p.get("longQuantity", 0.0)) - float(p.get("shortQuantity", 0.0))
            if not qty or "marketValue" not in p:
                continue
            per = _multiplier(instrument, symbol, mult) if is_option(symbol) else 1.0
            open_pl = p.get("longOpenProfitLoss") if qty > 0 else p.get("shortOpenProfitLoss")
            line = BrokerPnl(
                qty=qty, mark=float(p["marketValue"]) / qty / per,
                avg_cost=float(p["averagePrice"]) if p.get("averagePrice") is not None else None,
                unrealised=float(open_pl) if open_pl is not None else None)
        except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError, OverflowError):
            continue
        if is_finite_pnl(line):
            out[symbol] = line
    return out


def _multiplier(instrument: Any, symbol: str, mult: Multipliers) -> float:
    """An option position's contract multiplier: Schwab's `optionMultiplier` (its AccountOption
    schema) when it is a positive number, else the node's for the symbol."""
    given = instrument.get("optionMultiplier") if isinstance(instrument, dict) else None
    try:
        m = float(given) if given is not None and not isinstance(given, bool) else 0.0
    except (TypeError, ValueError):
        m = 0.0
    return m if math.isfinite(m) and 0.0 < m < 1e9 else mult.of(symbol)


def balances_of(account: Any) -> tuple[float, float, float]:
    """(cash, buying power, equity) from an account answer; zeros when absent."""
    try:
        cur = account["securitiesAccount"]["currentBalances"]
        return (
            float(cur.get("cashBalance", 0.0)),
            float(cur.get("buyingPower", 0.0)),
            float(cur.get("liquidationValue", 0.0)),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return 0.0, 0.0, 0.0


def _price(px: float | None) -> str:
    """Schwab takes prices as decimal strings: 2 places at or above $1, 4 below."""
    p = float(px or 0.0)
    return ("%.2f" if p >= 1.0 else "%.4f") % p


#: the client order id of an order the node did not place (Schwab keeps none of its own)
FOREIGN_PREFIX = "SCHWAB-"


def iso_ns(text: str) -> int:
    """Schwab's time ('2026-11-30T14:30:05+0000') in ns since the epoch; 0 when absent or unreadable."""
    try:
        return int(dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp()) * 1_000_000_000
    except (TypeError, ValueError):
        return 0


def account_book(orders: list[Any], account: Any, ours: dict[str, tuple[str, str]], fills_since_ns: int,
                 as_of_ns: int, mult: Multipliers = DEFAULT_MULTIPLIERS) -> tuple[BrokerBook, int]:
    """Schwab's answers (`GET .../orders`, `GET .../accounts/{hash}?fields=positions`) as a
    `BrokerBook`, and how many order objects could not be read. `ours`: Schwab orderId ->
    (client order id, strategy) of the orders the node placed; `mult`: the node's multipliers (an
    option position whose instrument names no `optionMultiplier` is valued at them)."""
    book_orders: list[Order] = []
    fills: list[Fill] = []
    unreadable = 0
    for obj in orders:
        order = read_order(obj)
        if order is None:
            unreadable += 1
            continue
        coid, strategy = ours.get(order.order_id, (FOREIGN_PREFIX + order.order_id, ""))
        last = iso_ns(order.entered_time)
        filled = 0.0
        for f in order.fills:
            ts = iso_ns(f.time)
            last = max(last, ts)
            filled += f.qty
            fills.append(Fill(f.exec_id, coid, strategy, order.symbol, order.side, f.qty, f.price, ts, 0.0,
                              order.order_id))
        state = order.kind if order.kind is not None else (ExecKind.PARTIAL_FILL if filled > 0.0 else ExecKind.NEW)
        leaves = order.remaining if order.kind is None else 0.0
        avg = sum(f.qty * f.price for f in order.fills) / filled if filled else 0.0
        book_orders.append(Order(coid, state, filled, leaves, strategy, order.symbol, order.side, order.order_id,
                                 avg, last))
    cash, _, _ = balances_of(account)
    book = BrokerBook(broker="schwab", fills=fills, orders=book_orders, positions=positions_of(account),
                      cash=cash, fills_since_ns=fills_since_ns, as_of_ns=as_of_ns, pnl=pnl_of(account, mult))
    return book, unreadable
