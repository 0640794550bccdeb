"""IBKR (TWS API through ib_async) <-> node mapping (pure: no I/O; time arrives as an argument).

- `contract_of(symbol)`: a US stock on SMART, or an OCC option symbol as an `Option` (multiplier 100).
- `order_of(intent, tif)`: the ib_async `Order`, `orderRef` = the client order id (TWS echoes it on
  every execution, so a sweep after a reconnect names our orders whatever connection placed them).
- `kind_of_status(status)`: TWS order status -> report kind (None: live, or fills tell the rest).
- `exec_key(exec_id)`: the id of an execution across its corrections. TWS names a correction of
  execution `X.01` as `X.02` (same stem, higher suffix): the stem is what a fill is deduped on, so
  a correction is never counted twice.
- `in_window(now, windows)`: whether a maintenance window (nightly reset, gateway restart) is on.
- `account_book(fills, positions, ours, ...)`: TWS's own view of the account (the day's executions,
  the positions) as the reconciler's `BrokerBook`: an execution names its order by `orderRef` (the
  node's client order id), else by permId (`IBKR-<permId>`: placed in TWS by hand or by another
  program); a correction replaces the execution it corrects. Its fills carry TWS's commissions;
  with the account values (`reqAccountUpdates`: TotalCashValue) its cash, and with the portfolio
  (updatePortfolio: marketPrice, averageCost, unrealizedPNL, realizedPNL) its PnL per stock and
  option, prices per share (an option's averageCost, per contract at TWS, over its multiplier).
- `symbol_of(contract)`: the node's symbol of a TWS contract (an option: the OCC symbol unpadded,
  TWS's localSymbol is padded); every position, fill and valuation is keyed by it.
- `intent_of(trade)`: an open order TWS lists (`reqAllOpenOrders`) as the node's order, by its
  orderRef (the client order id), for a restarted adapter to adopt it.
"""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

from ib_async import AccountValue, Contract, Fill, Option, Order, PortfolioItem, Position, Stock, Trade

from node.config import MaintenanceWindow
from node.instruments import DEFAULT_MULTIPLIERS, OCC_SYMBOL, Multipliers
from node.messages import ExecKind, OrderIntent, OrderType, Side, TimeInForce
from node.reasons import Reason
from node.reconcile import BrokerBook, BrokerPnl, is_finite_pnl
from node.reconcile import Fill as BookFill
from node.reconcile import Order as BookOrder

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


def symbol_of(contract: Contract) -> str:
    """The node's spelling of a TWS contract: an option as its OCC symbol without the padding
    ('AAPL250117C00150000'; TWS's localSymbol is the padded 'AAPL  250117C00150000'), built from
    the contract's fields when its localSymbol is not one; anything else its localSymbol or symbol."""
    local = contract.localSymbol or ""
    if contract.secType != "OPT":
        return local or contract.symbol
    if OCC_SYMBOL.match(local):
        return local.replace(" ", "")
    expiry, right = str(contract.lastTradeDateOrContractMonth or ""), str(contract.right or "")[:1].upper()
    try:
        strike = round(float(contract.strike) * 1000)
    except (TypeError, ValueError, OverflowError):  # not a number, NaN, infinite
        strike = -1
    built = "%s%s%s%08d" % (contract.symbol, expiry[2:8], right, strike) if 0 <= strike < 10**8 else ""
    return built if len(expiry) == 8 and OCC_SYMBOL.match(built) else local or contract.symbol


def multiplier_of(contract: Contract, symbol: str, mult: Multipliers = DEFAULT_MULTIPLIERS) -> float:
    """TWS's own multiplier of the contract (an option's "100"), else the node's for the symbol."""
    try:
        m = float(contract.multiplier or 0.0)
    except (TypeError, ValueError):
        m = 0.0
    return m if math.isfinite(m) and 0.0 < m < 1e9 else mult.of(symbol)


_ORDER_TYPES = {v: k for k, v in _TYPES.items()}


def intent_of(trade: Trade) -> OrderIntent | None:
    """An open order TWS lists (reqAllOpenOrders) as the node's order it was sent as: the client
    order id is its orderRef (None: no ref, an order the node did not place). What TWS does not
    keep (the strategy, the signal) is left empty; a type the node never sends reads as LIMIT."""
    o = trade.order
    ref = o.orderRef or ""
    qty = float(o.totalQuantity or 0.0)
    if not ref or not (math.isfinite(qty) and qty > 0.0):
        return None
    kind = _ORDER_TYPES.get(o.orderType, OrderType.LIMIT)
    lmt = float(o.lmtPrice) if 0.0 < float(o.lmtPrice or 0.0) < _UNSET else None
    aux = float(o.auxPrice) if 0.0 < float(o.auxPrice or 0.0) < _UNSET else None
    tif = o.tif if o.tif in TimeInForce.__members__ else "DAY"
    limited, stopped = kind in (OrderType.LIMIT, OrderType.STOP_LIMIT), kind in (OrderType.STOP, OrderType.STOP_LIMIT)
    return OrderIntent(client_order_id=ref, signal_id="", request_id="", strategy_id="",
                       symbol=symbol_of(trade.contract), side=Side.BUY if o.action == "BUY" else Side.SELL,
                       order_type=kind, quantity=qty, limit_price=lmt if limited else None,
                       stop_price=aux if stopped else None, time_in_force=TimeInForce(tif))


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


#: at or above this a TWS double is its "unset" value (UNSET_DOUBLE = sys.float_info.max)
_UNSET = 1e300

#: the client order id of an order the node did not place
FOREIGN_PREFIX = "IBKR-"
#: the day TWS answers `reqExecutions` for begins at midnight here
TWS_DAY_TZ = "America/New_York"


def day_start_ns(now: dt.datetime) -> int:
    """The start of TWS's trading day containing `now` (aware), in ns since the epoch."""
    local = now.astimezone(ZoneInfo(TWS_DAY_TZ))
    return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()) * 1_000_000_000


def cash_of(values: list[AccountValue]) -> float | None:
    """TotalCashValue in USD (or the account's BASE currency) from the account values; None when
    TWS gave none or it is not a number."""
    found = {v.currency: v.value for v in values if v.tag == "TotalCashValue"}
    text = found.get("USD", found.get("BASE"))
    try:
        cash = float(text) if text is not None else None
    except ValueError:
        return None
    return cash if cash is None or math.isfinite(cash) else None


def pnl_of(portfolio: list[PortfolioItem], mult: Multipliers = DEFAULT_MULTIPLIERS) -> dict[str, BrokerPnl]:
    """TWS's valuation of each stock and option position, by the node's symbol (`symbol_of`), every
    price per share: TWS gives an option's marketPrice per share but its averageCost per contract
    (x the multiplier), so that cost is divided by the contract's multiplier (`multiplier_of`);
    unrealizedPNL and realizedPNL are dollars either way."""
    out: dict[str, BrokerPnl] = {}
    for item in portfolio:
        c = item.contract
        if c.secType not in ("STK", "OPT") or not item.position:
            continue
        raw = (float(item.marketPrice), float(item.averageCost), float(item.unrealizedPNL), float(item.realizedPNL))
        # TWS sends its unset double (sys.float_info.max) before it has a price: not a valuation
        if not all(math.isfinite(x) and abs(x) < _UNSET for x in raw):
            continue
        symbol = symbol_of(c)
        per = multiplier_of(c, symbol, mult) if c.secType == "OPT" else 1.0
        line = BrokerPnl(qty=float(item.position), mark=raw[0], avg_cost=raw[1] / per, unrealised=raw[2],
                         realised=raw[3])
        if is_finite_pnl(line):
            out[symbol] = line
    return out


def account_book(fills: list[Fill], positions: list[Position], ours: dict[str, tuple[str, float, bool]],
                 by_perm: dict[int, str], fills_since_ns: int, as_of_ns: int,
                 values: list[AccountValue] | None = None, portfolio: list[PortfolioItem] | None = None,
                 commissions: dict[str, float] | None = None, mult: Multipliers = DEFAULT_MULTIPLIERS) -> BrokerBook:
    """See the module docstring. `ours`: client order id -> (strategy, quantity, still live) of the
    orders this session placed; `by_perm`: permId -> client order id; `commissions`: execution
    key -> commission, for the executions whose own report came apart from them."""
    known = commissions or {}
    # (a portfolio line whose position is not reqPositions' is a stale one from an earlier download:
    # not valued)
    latest: dict[str, Fill] = {}
    for f in fills:  # the day's executions, a correction after what it corrects
        latest[exec_key(f.execution.execId)] = f
    book_fills: list[BookFill] = []
    acc: dict[str, list] = {}  # coid -> [symbol, side, cum, px_sum, perm, last ts]
    for key, f in latest.items():
        ex = f.execution
        coid = ex.orderRef or by_perm.get(ex.permId, "") or FOREIGN_PREFIX + str(ex.permId)
        symbol = symbol_of(f.contract)
        side = side_of(ex.side)
        qty, px = float(ex.shares), float(ex.price)
        ts = int(ex.time.timestamp() * 1e9) if isinstance(ex.time, dt.datetime) else 0
        fee = (float(f.commissionReport.commission) if f.commissionReport and f.commissionReport.execId
               else known.get(key, 0.0))
        strategy = ours.get(coid, ("", 0.0, False))[0]
        book_fills.append(BookFill(key, coid, strategy, symbol, side, qty, px, ts, fee, str(ex.permId)))
        a = acc.setdefault(coid, [symbol, side, 0.0, 0.0, str(ex.permId), 0])
        a[2] += qty
        a[3] += qty * px
        a[5] = max(a[5], ts)
    orders: list[BookOrder] = []
    for coid, (symbol, side, cum, px_sum, perm, ts) in acc.items():
        strategy, total, live = ours.get(coid, ("", cum, False))
        total = total or cum
        done = cum >= total - 1e-9
        state = ExecKind.FILL if done else (ExecKind.PARTIAL_FILL if live else ExecKind.CANCELED)
        orders.append(BookOrder(coid, state, cum, max(total - cum, 0.0) if live else 0.0, strategy, symbol, side,
                                perm, px_sum / cum if cum else 0.0, ts))
    for coid, (strategy, total, live) in ours.items():  # live orders with no execution yet
        if live and coid not in acc:
            orders.append(BookOrder(coid, ExecKind.NEW, 0.0, total, strategy))
    held = {symbol_of(p.contract): float(p.position) for p in positions if p.position}
    return BrokerBook(broker="ibkr", fills=book_fills, orders=orders, positions=held, fills_since_ns=fills_since_ns,
                      as_of_ns=as_of_ns, cash=cash_of(values or []), fees_reported=True,
                      pnl={s: p for s, p in pnl_of(portfolio or [], mult).items()
                           if abs(held.get(s, 0.0) - p.qty) < 1e-9})
