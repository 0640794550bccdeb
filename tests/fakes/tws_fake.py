"""A socket server speaking the TWS API framing to ib_async, for tests (no TWS / IB Gateway here).

The framing, from ib_async's `client.py` / `decoder.py`: the client opens with `API\\0` and a
length-prefixed `v<min>..<max>`; the server answers `<version>\\0<time>\\0` (length-prefixed);
after that every message both ways is a 4-byte big-endian length and NUL-terminated text fields,
the first the message id. Server version 157 (ib_async's minimum: the fewest fields).

What it does:
- startApi (71) -> nextValidId (9), managedAccounts (15); reqPositions (61) -> position (61) and
  positionEnd (62); reqOpenOrders (5: the connection's client id's) and reqAllOpenOrders (16:
  every client's) -> per open order an openOrder (5, every field ib_async reads at version 157)
  and its orderStatus (3), then openOrderEnd (53); reqIds (8) -> nextValidId;
  reqExecutions (7) -> every execution of the day (11), its commission (59), execDetailsEnd (55).
- placeOrder (3): a MKT order fills at once (`fill_legs` executions, each an execDetails with the
  order's orderRef and permId, a commissionReport, then orderStatus Filled); LMT / STP rest
  (orderStatus Submitted) until `fill(perm_id, qty, px)`; a symbol in `reject_symbols` gets
  error 201 (order rejected). cancelOrder (4) of an order id of the connection's client id:
  orderStatus Cancelled and error 202; of no such open order: error 10147 (as TWS: "OrderId ...
  that needs to be cancelled is not found"). `cancels` counts the cancels carried out.
- reqAccountUpdates (6) -> updatePortfolio (7) per position (position, marketPrice at `prices`,
  marketValue, averageCost with commissions in it as TWS keeps it, unrealizedPNL, realizedPNL),
  updateAccountValue (6: TotalCashValue, CashBalance), accountDownloadEnd (54); reqAccountSummary
  (62) -> accountSummary (63: TotalCashValue) and accountSummaryEnd (64). Cash starts at `cash` and
  moves with every execution (bought - sold) and its `commission`.
- `edit_position`, `adjust_cash`, `adjust_cost`: changes at the broker with no execution (a
  journal, a fee charged apart, a cost-basis correction).
- Faults: `drop_on_next_place` (the order IS taken and filled, then the connection is closed
  before a word goes back: a drop mid-order); `correct_next_fill` (the fill is reported, then
  corrected: same execution stem, suffix .02); `refuse_connections` (the gateway is down).

Options: placeOrder of an `Option` contract (secType OPT, lastTradeDateOrContractMonth yyyymmdd,
strike, right C/P, multiplier "" or `option_multiplier`) is the option the node calls by its OCC
symbol (`AAPL250117C00150000`: `prices`, `executions`, positions keyed by it); an OPT contract with a
field missing or another multiplier gets error 200 (no security definition), nothing placed. Every
message names it as TWS does: secType OPT, its expiry, strike, right, multiplier "100", the padded
localSymbol (`AAPL  250117C00150000`). Prices per share; cash x the multiplier; updatePortfolio's
marketValue and PnL dollars and its averageCost per contract (x the multiplier, commission in), as
TWS reports an option.

`executions` is the broker's own record of fills (exec id, order ref, shares, price).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import struct
import threading
import time
from typing import Any

SERVER_VERSION = 157
ACCOUNT = "DU1234567"
#: the node's option symbol: root, yymmdd, C/P, strike x 1000 in 8 digits
_OCC = re.compile(r"^([A-Z0-9.]{1,6})(\d{6})([CP])(\d{8})$")


class TwsFake:
    def __init__(self, prices: dict[str, float] | None = None) -> None:
        self.prices = prices or {}
        self.port = 0
        self.fill_legs = 1
        self.reject_symbols: set[str] = set()
        self.drop_on_next_place = False
        self.correct_next_fill = False
        self.refuse_connections = False
        self.orders: dict[int, dict[str, Any]] = {}  # permId -> order
        self.executions: list[dict[str, Any]] = []
        self.position_edits: dict[str, float] = {}
        self.cash = 1_000_000.0
        self.commission = 1.0
        self.option_multiplier = 100.0
        self._book: dict[str, list[float]] = {}  # symbol -> [position, average cost, realised]
        self._con_ids: dict[str, int] = {}
        self.received: list[list[str]] = []
        self.connections = 0
        self.cancels = 0
        self._client_ids: dict[asyncio.StreamWriter, int] = {}
        self._perm = itertools.count(700_001)
        self._exec = itertools.count(1)
        self._next_id = 1
        self._writers: list[asyncio.StreamWriter] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    # ---------------------------------------------------------------- lifecycle and controls

    def start(self, port: int = 0) -> "TwsFake":
        self._thread = threading.Thread(target=self._main, args=(port,), daemon=True, name="tws-fake")
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._shutdown)
            self._thread.join(10)

    def drop_connections(self) -> None:
        """Close every client connection (the gateway's nightly restart, a network blip)."""
        self._loop.call_soon_threadsafe(self._drop_all)

    def fill(self, perm_id: int, qty: float, price: float) -> None:
        self._loop.call_soon_threadsafe(self._fill_resting, perm_id, qty, price)

    def place(self, symbol: str, action: str, qty: float) -> int:
        """An order placed in TWS by someone else (by hand, another client id): a MKT order filled at
        once, in the day's executions, never sent to this client. Returns its permId."""
        done = threading.Event()
        out: list[int] = []

        def make() -> None:
            order = {"order_id": 0, "perm_id": next(self._perm), "symbol": symbol, "action": action, "qty": qty,
                     "type": "MKT", "lmt": 0.0, "ref": "", "filled": 0.0, "px_sum": 0.0, "status": "Submitted",
                     "client_id": 99}  # fmt: skip
            self.orders[order["perm_id"]] = order
            self._execute(None, order, qty, self.prices.get(symbol, 100.0))
            out.append(order["perm_id"])
            done.set()

        self._loop.call_soon_threadsafe(make)
        done.wait(10)
        return out[0]

    def edit_position(self, symbol: str, qty: float) -> None:
        """A position change with no execution (a journal, a transfer): reqPositions and the
        portfolio show it (a journal in at the market price as its cost)."""
        self._loop.call_soon_threadsafe(self._edit_position, symbol, qty)

    def _edit_position(self, symbol: str, qty: float) -> None:
        self.position_edits[symbol] = self.position_edits.get(symbol, 0.0) + qty
        b = self._book.setdefault(symbol, [0.0, 0.0, 0.0])
        new = b[0] + qty
        if b[0] * qty >= 0 and new:
            b[1] = (b[1] * b[0] + self.prices.get(symbol, 100.0) * self.multiplier_of(symbol) * qty) / new
        b[0] = new

    def adjust_cash(self, amount: float) -> None:
        self._loop.call_soon_threadsafe(self._adjust_cash, amount)

    def _adjust_cash(self, amount: float) -> None:
        self.cash += amount

    def adjust_cost(self, symbol: str, delta: float) -> None:
        self._loop.call_soon_threadsafe(self._adjust_cost, symbol, delta)

    def _adjust_cost(self, symbol: str, delta: float) -> None:
        self._book.setdefault(symbol, [0.0, 0.0, 0.0])[1] += delta

    def multiplier_of(self, symbol: str) -> float:
        """Dollars per unit of price for one contract: an option's `option_multiplier`, else 1."""
        return self.option_multiplier if _OCC.match(symbol) else 1.0

    def contract_fields(self, symbol: str, exchange: str = "SMART") -> tuple:
        """symbol, secType, lastTradeDateOrContractMonth, strike, right, multiplier, exchange,
        currency, localSymbol, tradingClass of the node's `symbol`, as TWS names the contract."""
        m = _OCC.match(symbol)
        if m is None:
            return (symbol, "STK", "", 0.0, "", "", exchange, "USD", symbol, "")
        root, yymmdd, right, strike = m.groups()
        return (root, "OPT", "20" + yymmdd, int(strike) / 1000, right, "%g" % self.option_multiplier, exchange, "USD",
                root.ljust(6) + yymmdd + right + strike, root)

    def _option_symbol(self, f: list[str]) -> str:
        """The OCC symbol of placeOrder's OPT contract (fields 3..8), or "" when TWS would find none."""
        root, expiry, strike, right, mult = f[3], f[5], f[6], f[7][:1].upper(), f[8]
        try:
            strike_k = round(float(strike) * 1000)
            size_ok = not mult or float(mult) == self.option_multiplier
        except ValueError:
            return ""
        symbol = "%s%s%s%08d" % (root, expiry[2:], right, strike_k) if len(expiry) == 8 and 0 < strike_k < 10**8 else ""
        return symbol if size_ok and _OCC.match(symbol) else ""

    def by_ref(self, order_ref: str) -> dict[str, Any] | None:
        return next((o for o in self.orders.values() if o["ref"] == order_ref), None)

    # ---------------------------------------------------------------- the server

    def _main(self, port: int) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", port))
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        loop.run_forever()
        loop.close()

    def _shutdown(self) -> None:
        self._drop_all()
        self._server.close()
        self._loop.stop()

    def _drop_all(self) -> None:
        for w in self._writers:
            w.close()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse_connections:
            writer.close()
            return
        try:
            head = await reader.readexactly(4)
            if head != b"API\0":
                writer.close()
                return
            await _read_frame(reader)  # "v157..178"
            self.connections += 1
            self._writers.append(writer)
            _send_raw(writer, str(SERVER_VERSION).encode() + b"\0" + time.strftime("%Y%m%d %H:%M:%S").encode() + b" UTC\0")
            while True:
                fields = (await _read_frame(reader)).decode().split("\0")[:-1]
                self.received.append(fields)
                self._handle(writer, fields)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if writer in self._writers:
                self._writers.remove(writer)
            self._client_ids.pop(writer, None)
            writer.close()

    def _handle(self, w: asyncio.StreamWriter, f: list[str]) -> None:
        msg = int(f[0])
        if msg == 71:  # startApi
            self._client_id = int(f[2])
            self._client_ids[w] = self._client_id
            _send(w, 9, 1, self._next_id)
            _send(w, 15, 1, ACCOUNT)
        elif msg == 61:  # reqPositions
            for sym, qty in self._positions().items():
                _send(w, 61, 3, ACCOUNT, 0, *self.contract_fields(sym), qty, 0.0)
            _send(w, 62, 1)
        elif msg == 6 and f[2] in ("0", "False"):  # reqAccountUpdates unsubscribed: nothing more sent
            pass
        elif msg == 6:  # reqAccountUpdates (subscribe, account)
            for sym, (pos, avg, realised) in self._portfolio().items():
                mark, per = self.prices.get(sym, 100.0), self.multiplier_of(sym)
                con_id = self._con_ids.setdefault(sym, 265_000 + len(self._con_ids))
                c = self.contract_fields(sym, "NYSE")
                c = c if c[1] == "OPT" else c[:9] + (sym,)
                _send(w, 7, 8, con_id, *c, pos, mark, pos * mark * per, avg, (mark * per - avg) * pos, realised, ACCOUNT)
            _send(w, 6, 2, "TotalCashValue", self.cash, "USD", ACCOUNT)
            _send(w, 6, 2, "CashBalance", self.cash, "USD", ACCOUNT)
            _send(w, 54, 1, ACCOUNT)
        elif msg == 62:  # reqAccountSummary (reqId, group, tags)
            req_id = int(f[2])
            _send(w, 63, 1, req_id, ACCOUNT, "TotalCashValue", self.cash, "USD")
            _send(w, 64, 1, req_id)
        elif msg in (5, 16):  # reqOpenOrders (this client id's), reqAllOpenOrders (every client's)
            mine = self._client_ids.get(w)
            for order in list(self.orders.values()):
                if order["status"] == "Submitted" and (msg == 16 or order["client_id"] == mine):
                    self._open_order(w, order)
                    self._status(w, order)
            _send(w, 53, 1)
        elif msg == 8:  # reqIds
            _send(w, 9, 1, self._next_id)
        elif msg == 7:  # reqExecutions
            req_id = int(f[2])
            for ex in self.executions:
                self._send_exec(w, req_id, ex)
            _send(w, 55, 1, req_id)
            for ex in self.executions:
                _send(w, 59, 1, ex["exec_id"], ex["commission"], "USD", "", "", "")
        elif msg == 3:
            self._place(w, f)
        elif msg == 4:  # cancelOrder
            mine = self._client_ids.get(w)
            order = next((o for o in self.orders.values() if o["order_id"] == int(f[2]) and o["client_id"] == mine
                          and o["status"] == "Submitted"), None)  # fmt: skip
            if order is None:
                _send(w, 4, 2, int(f[2]), 10147, "OrderId %s that needs to be cancelled is not found." % f[2], "")
                return
            order["status"] = "Cancelled"
            self.cancels += 1
            self._status(w, order)
            _send(w, 4, 2, order["order_id"], 202, "Order Canceled - reason:")

    def _place(self, w: asyncio.StreamWriter, f: list[str]) -> None:
        order_id = int(f[1])
        self._next_id = max(self._next_id, order_id + 1)
        symbol, action, qty, otype, ref = f[3], f[16], float(f[17]), f[18], f[26]
        lmt = float(f[19]) if f[19] else 0.0
        root = symbol
        if f[4] == "OPT":
            symbol = self._option_symbol(f)
            if not symbol:
                _send(w, 4, 2, order_id, 200, "No security definition has been found for the request")
                return
        if symbol in self.reject_symbols:
            _send(w, 4, 2, order_id, 201, "Order rejected - reason: symbol not tradable")
            return
        order = {"order_id": order_id, "perm_id": next(self._perm), "symbol": symbol, "action": action, "qty": qty,
                 "type": otype, "lmt": lmt, "ref": ref, "filled": 0.0, "px_sum": 0.0, "status": "Submitted",
                 "client_id": self._client_ids.get(w, self._client_id), "contract": f[4:14], "aux": f[20],
                 "tif": f[21], "account": f[23] or ACCOUNT, "root": root}  # fmt: skip
        self.orders[order["perm_id"]] = order
        drop = self.drop_on_next_place
        self.drop_on_next_place = False
        if drop:  # carried out, then the line goes dead before a word goes back
            if otype == "MKT":
                self._execute(None, order, qty, self.prices.get(symbol, 100.0))
            w.close()
            return
        self._status(w, order)
        if otype == "MKT":
            legs = max(1, self.fill_legs)
            each = qty / legs
            for _ in range(legs):
                self._execute(w, order, each, self.prices.get(symbol, 100.0))

    def _fill_resting(self, perm_id: int, qty: float, price: float) -> None:
        order = self.orders[perm_id]
        w = self._writers[-1] if self._writers else None
        self._execute(w, order, qty, price)

    def _execute(self, w: asyncio.StreamWriter | None, order: dict, qty: float, price: float) -> None:
        qty = min(qty, order["qty"] - order["filled"])
        order["filled"] += qty
        order["px_sum"] += qty * price
        self._account(order["symbol"], qty if order["action"] == "BUY" else -qty, price)
        if order["filled"] >= order["qty"] - 1e-9:
            order["status"] = "Filled"
        stem = "0000e%03d.%08x.01" % (next(self._exec), order["perm_id"])
        ex = {"exec_id": stem + ".01", "ref": order["ref"], "perm_id": order["perm_id"], "order_id": order["order_id"],
              "symbol": order["symbol"], "side": "BOT" if order["action"] == "BUY" else "SLD", "shares": qty,
              "price": price, "cum": order["filled"], "avg": order["px_sum"] / order["filled"], "commission": 1.0,
              "client_id": order["client_id"]}  # fmt: skip
        self.executions.append(ex)
        if w is None:
            return
        self._send_exec(w, -1, ex)
        _send(w, 59, 1, ex["exec_id"], ex["commission"], "USD", "", "", "")
        if self.correct_next_fill:
            self.correct_next_fill = False
            corrected = dict(ex, exec_id=stem + ".02", price=price + 0.01)
            self.executions[-1] = corrected  # TWS lists the corrected execution from now on
            self._send_exec(w, -1, corrected)
        self._status(w, order)

    def _send_exec(self, w: asyncio.StreamWriter, req_id: int, ex: dict) -> None:
        _send(w, 11, req_id, ex["order_id"], 0, *self.contract_fields(ex["symbol"]),
              ex["exec_id"], str(int(time.time())), ACCOUNT, "NYSE", ex["side"], ex["shares"], ex["price"],
              ex["perm_id"], ex["client_id"], 0, ex["cum"], ex["avg"], ex["ref"], "", "", "", 0)  # fmt: skip

    def _status(self, w: asyncio.StreamWriter, order: dict) -> None:
        avg = order["px_sum"] / order["filled"] if order["filled"] else 0.0
        _send(w, 3, order["order_id"], order["status"], order["filled"], order["qty"] - order["filled"], avg,
              order["perm_id"], 0, avg, order["client_id"], "", 0.0)

    def _open_order(self, w: asyncio.StreamWriter, order: dict) -> None:
        """openOrder (5) as TWS sends it at server version 157 (no version field; the fields in
        ib_async's `Decoder.openOrder` order): the contract as placed, the order, its state."""
        sec, expiry, strike, right, mult, exchange, _primary, currency, local, trading_class = order.get(
            "contract", ["STK", "", 0.0, "", "", "SMART", "", "USD", order["symbol"], ""])
        _send(w, 5, order["order_id"], 0, order.get("root", order["symbol"]), sec, expiry, strike, right, mult, exchange, currency,
              local or self.contract_fields(order["symbol"])[8], trading_class, order["action"], order["qty"], order["type"], order["lmt"] or "",
              order.get("aux", ""), order.get("tif", "DAY"), "", order.get("account", ACCOUNT), "O", 0, order["ref"],
              order["client_id"], order["perm_id"], 0, 0, 0.0, "", "",  # ... goodAfterTime, sharesAllocation
              "", "", "", "",  # faGroup, faMethod, faPercentage, faProfile
              "", "", "", "", "", 0, "", "", 0,  # modelCode .. auctionStrategy
              "", "", "", "", "", "", 0, 0, 0, "", 0, 0, 0, 0, 0, 0, "", 0, "", "",  # startingPrice .. dnAuxPrice
              0, 0, "", "", "", "", "",  # continuousUpdate .. comboLegsDescrip
              0, 0, 0,  # combo legs, order combo legs, smart combo routing params
              "", "", "",  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
              "",  # hedgeType
              0, "", "", 0, 0,  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld, no delta-neutral
              "",  # algoStrategy
              0, 0, order["status"], "", "", "", "", "", "", "", "", "", "", "", "", "", "", 0, 0,  # .. randomizePrice
              0,  # conditions
              "", "", "", "", "", "", "", 0, "", "", "", "", 0, 0, "", 0)  # adjustedOrderType .. usePriceMgmtAlgo

    def _account(self, symbol: str, q: float, price: float) -> None:
        """Cash and the symbol's average cost (commissions in it, as TWS keeps it; an option's per
        contract) after one execution."""
        fee = self.commission
        price = price * self.multiplier_of(symbol)  # dollars a contract
        self.cash -= q * price + fee
        b = self._book.setdefault(symbol, [0.0, 0.0, 0.0])
        pos, avg = b[0], b[1]
        if pos * q >= 0:  # opening or adding: the commission goes into the cost
            b[1] = (avg * pos + price * q + fee) / (pos + q)  # a short: the fee lowers its sale price
            b[0] = pos + q
            return
        closed = min(abs(q), abs(pos))
        b[2] += (price - avg) * closed * (1.0 if pos > 0 else -1.0) - fee
        b[0] = pos + q
        if abs(b[0]) < 1e-9:
            b[0] = b[1] = 0.0
        elif b[0] * pos < 0:
            b[1] = price

    def _portfolio(self) -> dict[str, tuple[float, float, float]]:
        return {sym: (pos, avg, realised) for sym, (pos, avg, realised) in self._book.items() if pos}

    def _positions(self) -> dict[str, float]:
        return {sym: pos for sym, (pos, _, _) in self._book.items() if pos}


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (n,) = struct.unpack(">I", await reader.readexactly(4))
    return await reader.readexactly(n)


def _send_raw(w: asyncio.StreamWriter, payload: bytes) -> None:
    w.write(struct.pack(">I", len(payload)) + payload)


def _send(w: asyncio.StreamWriter, *fields: Any) -> None:
    _send_raw(w, b"".join(str(f).encode() + b"\0" for f in fields))
