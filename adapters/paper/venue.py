"""The paper venue: a simulated exchange good enough to exercise every path of the node.

Pure logic: no sockets, no threads, no wall clock (time arrives as `now_ns`), deterministic for a
seed. What it simulates:

- a geometric random-walk mid per symbol, one step every `tick_interval_ms` on a fixed time grid,
  stepped lazily (`pricing.PricePath`); the path depends on the seed and the clock only, never on
  the order flow or on how often the venue is polled;
- liquidity in levels of `top_size` shares, `level_spacing_bps` apart, the first half a spacing
  away from the mid, at most `DEPTH_LEVELS` levels a side, refreshed every tick: a market order
  walks the levels, one fill report per level (PARTIAL_FILL ... FILL), prices worsening;
  `max_slippage` (a fraction of the arrival mid) caps how far it may walk and the rest is CANCELED
  ("SLIPPAGE"); a market order deeper than the book gets the rest CANCELED ("NO_LIQUIDITY");
- LIMIT orders fill their marketable part at once and rest; a resting limit fills, at the tick's
  levels up to its limit, on every tick the price comes to it; STOP triggers when the mid reaches
  the stop, then trades as MARKET (STOP_LIMIT as LIMIT at `limit_price`);
- `notional` orders sized at the current mid (fractional shares, rounded down to 4 decimals);
- venue latency (`latency_us` to the NEW and the first fill), `fill_interval_us` between the fills
  of one order, and a seeded `reject_rate` ("VENUE_REJECT");
- a client order id is an order at most once: a second submit with the same id makes nothing.

Matching happens when an order arrives (or on the tick the price reaches it); its reports are
scheduled in a heap by due time and handed out by `advance`. What the venue shows outside
(`positions`, `fills`, `snapshot`, `cash`) moves as reports are handed out, so a reconciler comparing
the reports it received with the venue's positions never sees a fill in flight.

The account outlives the process, as a broker's does: given a `BookLog`, the venue writes down what
it is about to hand out before it does (`adapters.paper.records`: the order the first time it shows,
each report, each position edit), and `restore` rebuilds orders, fills, positions and cash from that
log at the next start; an order still open then works on at the current price. A log write that
fails hands nothing out: the reports stay due and go out (logged) at the next wake-up. A write the
store took but did not answer in time is so written twice: `restore` applies each report once.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from adapters.paper.pricing import CHUNK, PricePath, symbol_streams
from adapters.paper.records import BookLog, OrderTaken, PositionAdjusted, Record
from node.config import PaperVenueConfig
from node.instruments import Multipliers
from node.messages import ExecKind, ExecutionReport, OrderIntent, OrderSnapshot, OrderType, Side, TimeInForce
from node.reasons import Reason
from node.reconcile import Order
from node.venue import Balances, VenueBase

# ---------------------------------------------------------------- reason codes on venue reports

VENUE_REJECT = Reason.VENUE_REJECT.value
UNKNOWN_SYMBOL = Reason.UNKNOWN_SYMBOL.value
SIZE_SPEC = Reason.SIZE_SPEC.value  # no usable quantity (none, not positive, notional rounds to 0)
PRICE_REQUIRED = Reason.PRICE_REQUIRED.value  # a LIMIT / STOP without its price
SLIPPAGE = "SLIPPAGE"  # a market order stopped walking at max_slippage
NO_LIQUIDITY = "NO_LIQUIDITY"  # a market order deeper than the book
CANCELED = "CANCELED"  # canceled on request
IOC = "IOC"  # the part of an IOC limit order that did not fill at once
FOK = "FOK"  # a FOK limit order the book could not fill whole at once
REPLACED = Reason.REPLACED.value  # canceled because its replacement took its place

#: after a failed book-log write, the next try waits this long (the store is away: no busy loop)
LOG_RETRY_NS = 100_000_000
#: levels of liquidity on each side of the mid
DEPTH_LEVELS = 1_000
#: a remainder below this many shares is no remainder: the fill takes it all
_QTY_EPS = 1e-7
#: positions closer to zero than this are flat
_FLAT = 1e-9
#: slack on the log-space cross thresholds (the exact check at the tick decides)
_LOG_SLACK = 1e-9
_UNIFORM_BLOCK = 1_024
_DONE = frozenset({ExecKind.FILL, ExecKind.CANCELED, ExecKind.REJECTED})
_MARKET_LIKE = frozenset({OrderType.MARKET, OrderType.STOP})
_STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})


class _Book:
    """One symbol: its price path, level size and the orders resting on it (arrival order)."""

    __slots__ = ("symbol", "path", "top", "resting")

    def __init__(self, symbol: str, path: PricePath, top: float) -> None:
        self.symbol = symbol
        self.path = path
        self.top = top
        self.resting: dict[str, _Order] = {}


class _Order:
    """The venue's state of one order; `view_*` is what the reports handed out so far say."""

    __slots__ = (
        "intent", "coid", "vid", "qty", "sign", "cum", "px_sum", "state", "triggered", "n_fills",
        "last_due", "thr", "thr_up", "view_kind", "view_cum", "view_leaves", "logged", "shown",
    )

    def __init__(self, intent: OrderIntent, vid: str, qty: float) -> None:
        self.intent = intent
        self.coid = intent.client_order_id
        self.vid = vid
        self.qty = qty
        self.sign = 1.0 if intent.side is Side.BUY else -1.0
        self.cum = 0.0
        self.px_sum = 0.0  # sum of last_qty * last_px, for avg_px
        self.state = ExecKind.NEW
        self.triggered = intent.order_type not in _STOPS
        self.n_fills = 0
        self.last_due = 0  # due time of the last report scheduled for this order
        self.thr = 0.0  # log-mid threshold at which a resting order may trade
        self.thr_up = False  # True: trades when log mid >= thr; False: when <= thr
        self.view_kind = ExecKind.NEW
        self.view_cum = 0.0
        self.view_leaves = qty
        self.logged = False  # its OrderTaken is in the book log
        self.shown = False  # a report of it was handed out (an order with neither is not `listed`)

    @property
    def listed(self) -> bool:
        """What a listing shows (snapshot, status, order book): an order whose first report is out or
        in the book log; one taken and not reported yet is in flight, not acknowledged."""
        return self.logged or self.shown


class PaperVenue(VenueBase):
    """The simulated venue behind the paper broker (see the module docstring); a `node.venue.Venue`."""

    def __init__(self, cfg: PaperVenueConfig, log: BookLog | None = None, multipliers: Multipliers | None = None,
                 exec_prefix: str = "") -> None:
        self._cfg = cfg
        # in every exec id: two paper venues of one node (two groups, a paper and a live route) count
        # their orders from 1 each, and the ledger keys a fill by its exec id alone
        self._exec_prefix = exec_prefix
        # a notional buys contracts: its price is per share, one contract is `multiplier` shares (options: 100)
        self._multipliers = multipliers if multipliers is not None else Multipliers()
        self._log = log
        self.log_errors = 0  # book-log writes that failed (their reports went out on a later wake-up)
        self._log_retry_ns = 0  # after a failed write, nothing is handed out before this time
        self._cash = cfg.starting_cash_usd
        decide, streams = symbol_streams(cfg.seed, len(cfg.symbols))
        self._decide = decide
        self._books = {
            s.symbol: _Book(s.symbol, PricePath(s.price, s.volatility_bps, rng), s.top_size)
            for s, rng in zip(cfg.symbols, streams)
        }
        self._tick_ns = cfg.tick_interval_ms * 1_000_000
        self._latency_ns = cfg.latency_us * 1_000
        self._gap_ns = cfg.fill_interval_us * 1_000
        self._spacing = cfg.level_spacing_bps * 1e-4
        self._half = self._spacing * 0.5
        self._reject_rate = cfg.reject_rate
        self._uniforms: list[float] = []
        self._last_tick_ns: int | None = None
        self._orders: dict[str, _Order] = {}
        self._n_resting = 0
        self._heap: list[tuple[int, int, _Order, ExecutionReport]] = []
        self._seq = 0
        self._n_orders = 0
        self._positions: dict[str, float] = {}
        self._fills: list[ExecutionReport] = []
        self._fills_of: dict[str, list[ExecutionReport]] = {}  # client order id -> its fills

    # ---------------------------------------------------------------- the venue's API

    def submit(self, intent: OrderIntent, now_ns: int) -> None:
        """Take one order; its reports come out of `advance` from `now_ns + latency` on."""
        coid = intent.client_order_id
        if coid in self._orders:
            return
        self._step(now_ns)
        self._n_orders += 1
        book = self._books.get(intent.symbol)
        qty, reason = (0.0, UNKNOWN_SYMBOL) if book is None else _size_of(intent, book.path.mid, self._multipliers.of(intent.symbol))
        order = _Order(intent, "P-%06d" % self._n_orders, qty)
        self._orders[coid] = order
        due = now_ns + self._latency_ns
        if not reason and self._reject_rate and self._uniform() < self._reject_rate:
            reason = VENUE_REJECT
        if reason:
            order.view_kind = ExecKind.REJECTED
            order.view_leaves = 0.0
            self._finish(order, ExecKind.REJECTED, reason, due)
            return
        self._schedule(order, due, self._status(order, ExecKind.NEW, due, ""))
        self._work(order, book, book.path.mid, now_ns)

    def cancel(self, client_order_id: str, now_ns: int, reason: str = CANCELED) -> None:
        """Cancel a live order (CANCELED report); an unknown or finished order is a no-op."""
        order = self._orders.get(client_order_id)
        if order is None or order.state in _DONE:
            return
        self._step(now_ns)  # what the price did before the cancel arrived happens first
        if order.state in _DONE:
            return
        self._unrest(order)
        self._finish(order, ExecKind.CANCELED, reason, max(now_ns + self._latency_ns, order.last_due))

    def replace(self, client_order_id: str, intent: OrderIntent, now_ns: int) -> None:
        """Cancel a live order (reason REPLACED) and take `intent` in its place; a finished or unknown
        order is not replaced (its replacement is REJECTED UNKNOWN_ORDER)."""
        order = self._orders.get(client_order_id)
        if order is None or order.state in _DONE or intent.client_order_id in self._orders:
            if intent.client_order_id not in self._orders:
                self._step(now_ns)
                self._n_orders += 1
                new = _Order(intent, "P-%06d" % self._n_orders, 0.0)
                self._orders[intent.client_order_id] = new
                new.view_kind = ExecKind.REJECTED
                new.view_leaves = 0.0
                self._finish(new, ExecKind.REJECTED, Reason.UNKNOWN_ORDER.value, now_ns + self._latency_ns)
            return
        self.cancel(client_order_id, now_ns, REPLACED)
        self.submit(intent, now_ns)

    def advance(self, now_ns: int) -> list[ExecutionReport]:
        """Step the price to `now_ns` and hand out every report due by then, in due order."""
        self._step(now_ns)
        heap = self._heap
        if not heap or heap[0][0] > now_ns:
            return []
        if now_ns < self._log_retry_ns:
            return []
        pop = heapq.heappop
        due = []
        while heap and heap[0][0] <= now_ns:
            due.append(pop(heap))
        if self._log is not None and not self._write_ahead(due, now_ns):
            return []
        out = []
        for _, _, order, rep in due:
            out.append(rep)
            self._show(order, rep)
        return out

    def _write_ahead(self, due: list, now_ns: int) -> bool:
        """Log what is about to be handed out; on failure put it back (due again next wake-up)."""
        records: list[Record] = []
        new: list[_Order] = []
        for _, _, order, rep in due:
            if not order.logged:
                order.logged = True  # once per batch; undone below if the write fails
                new.append(order)
                records.append(OrderTaken(order.intent, order.vid, order.qty))
            records.append(rep)
        try:
            self._log.append(records)  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - the store's error: nothing shown, retried next wake-up
            self.log_errors += 1
            self._log_retry_ns = now_ns + LOG_RETRY_NS
            for order in new:
                order.logged = False
            for item in due:
                heapq.heappush(self._heap, item)
            return False
        return True

    def _show(self, order: _Order, rep: ExecutionReport) -> None:
        """What the outside sees moves with the report handed out."""
        order.shown = True
        order.view_kind = rep.kind
        order.view_cum = rep.cum_qty
        order.view_leaves = rep.leaves_qty
        if rep.last_qty:
            self._fills.append(rep)
            self._fills_of.setdefault(rep.client_order_id, []).append(rep)
            signed = order.sign * rep.last_qty
            self._positions[rep.symbol] = self._positions.get(rep.symbol, 0.0) + signed
            self._cash -= self._multipliers.value(rep.symbol, signed, rep.last_px)

    def next_due_ns(self) -> int | None:
        """The earliest time `advance` has work: a report due, or the next tick while orders rest."""
        due = self._heap[0][0] if self._heap else None
        if due is not None and due < self._log_retry_ns:
            due = self._log_retry_ns
        if self._n_resting and self._last_tick_ns is not None:
            tick = self._last_tick_ns + self._tick_ns
            due = tick if due is None or tick < due else due
        return due

    def snapshot(self) -> list[OrderSnapshot]:
        """Every order the venue has acknowledged, as the reports handed out so far describe it. An
        order taken whose first report is not out yet (nor in the book log) is left out: listed as NEW,
        an engine would take it for acknowledged and never send it again, and a venue that died before
        writing it would have lost it (a 30-kill run lost one order so). Its sender finds it in flight
        (the broker's gate knows it) and its reports come with the next wake-up."""
        return [OrderSnapshot(o.coid, o.view_kind, o.view_cum, o.view_leaves)
                for o in self._orders.values() if o.listed]

    def snapshot_of(self, client_order_ids) -> list[OrderSnapshot]:
        """`snapshot()` of just these orders (the unknown ids, and those not acknowledged yet, left out)."""
        orders = self._orders
        return [OrderSnapshot(o.coid, o.view_kind, o.view_cum, o.view_leaves)
                for o in (orders.get(c) for c in client_order_ids) if o is not None and o.listed]

    def fills_since(self, since_ns: int) -> list[ExecutionReport]:
        """The fills handed out at or after `since_ns`, in order, read from the newest back (and a
        second past it: fill times follow the hand-out order only nearly)."""
        fills = self._fills
        floor = since_ns - 1_000_000_000
        i = len(fills)
        while i and fills[i - 1].ts_ns >= floor:
            i -= 1
        return [f for f in fills[i:] if f.ts_ns >= since_ns]

    def fills_of(self, client_order_ids) -> list[ExecutionReport]:
        """Every fill of these orders."""
        fills_of = self._fills_of
        return [f for c in client_order_ids for f in fills_of.get(c, ())]

    def last_price(self, symbol: str) -> float:
        """The mid of `symbol` at the last tick the venue stepped to (KeyError if unknown)."""
        return self._books[symbol].path.mid

    def positions(self) -> dict[str, float]:
        """Net filled quantity per symbol (buys +, sells -) over the fills handed out; flat omitted."""
        return {s: q for s, q in self._positions.items() if abs(q) > _FLAT}

    def fills(self) -> list[ExecutionReport]:
        """Every fill report handed out so far, in order."""
        return list(self._fills)

    def order_book(self) -> list[Order]:
        """Every order with whose it is, what and where (the reconciler's view of the account), as the
        reports handed out so far describe it."""
        return [Order(o.coid, o.view_kind, o.view_cum, o.view_leaves, o.intent.strategy_id, o.intent.symbol,
                      o.intent.side, o.vid) for o in self._orders.values() if o.listed]

    def adjust_position(self, symbol: str, qty: float) -> None:
        """A position change with no fill (a journal, a transfer, a hand edit at the venue): what the
        reconciler must find as drift. Logged like a fill (a store error raises, nothing changed)."""
        if self._log is not None:
            self._log.append([PositionAdjusted(symbol, qty)])
        self._positions[symbol] = self._positions.get(symbol, 0.0) + qty

    def stats(self) -> dict:
        """The broker adapter shows these under `venue` in its stats (`execnode status --json`)."""
        return {"orders": len(self._orders), "fills": len(self._fills), "book_log": self._log is not None,
                "book_log_errors": self.log_errors}

    def cash(self) -> float:
        """`starting_cash_usd` less what the fills handed out cost (buys), plus what they brought (sells),
        at each symbol's contract multiplier."""
        return self._cash

    def balances(self) -> Balances:
        value = self._multipliers.value
        equity = self._cash + sum(value(s, q, self._books[s].path.mid) for s, q in self._positions.items() if s in self._books)
        return Balances(cash=self._cash, buying_power=self._cash, equity=equity)

    # ---------------------------------------------------------------- the book across restarts

    def restore(self, records: list[Record], now_ns: int) -> int:
        """Rebuild the account from its log (`records`, oldest first) on a venue that has taken
        nothing yet: orders with what their reports said, fills, positions, cash; each symbol's
        price from its last fill; then every order still open works on at the current price (its
        reports come out of `advance`). Returns the number of orders restored."""
        if self._orders:
            raise RuntimeError("PaperVenue.restore: the venue has taken orders already")
        orders = self._orders
        last_px: dict[str, float] = {}
        # a write the store took but did not answer in time is written again with the next wake-up's
        # (`_write_ahead`): the log may hold a report twice; each is applied once
        seen: set[tuple] = set()
        for rec in records:
            if type(rec) is ExecutionReport:
                order = orders.get(rec.client_order_id)
                if order is None:
                    continue  # a report of an order never logged (cannot happen: logged with its first report)
                key = (rec.client_order_id, rec.kind, rec.exec_id, rec.cum_qty, rec.leaves_qty, rec.ts_ns)
                if key in seen:
                    continue
                seen.add(key)
                self._show(order, rec)
                order.state = rec.kind
                if rec.last_qty:
                    order.cum = rec.cum_qty
                    order.px_sum += rec.last_qty * rec.last_px
                    order.n_fills += 1
                    order.triggered = True
                    last_px[rec.symbol] = rec.last_px
            elif type(rec) is OrderTaken:
                if rec.intent.client_order_id in orders:
                    continue
                order = _Order(rec.intent, rec.venue_order_id, rec.qty)
                order.logged = True
                orders[order.coid] = order
                self._n_orders = max(self._n_orders, _vid_number(rec.venue_order_id))
            elif type(rec) is PositionAdjusted:
                self._positions[rec.symbol] = self._positions.get(rec.symbol, 0.0) + rec.qty
        for symbol, px in last_px.items():
            book = self._books.get(symbol)
            if book is not None and px > 0.0:
                book.path.reset(px)
        self._step(now_ns)
        for order in list(orders.values()):
            if order.state in _DONE:
                continue
            book = self._books.get(order.intent.symbol)
            if book is None:
                continue
            order.last_due = now_ns
            self._work(order, book, book.path.mid, now_ns)
        return len(orders)

    def compacted(self) -> list[Record]:
        """The shortest log that restores this account: each order, its fills, its last status; the
        position edits as one per symbol."""
        out: list[Record] = []
        from_fills: dict[str, float] = {}
        for order in self._orders.values():
            if not order.logged:
                continue
            out.append(OrderTaken(order.intent, order.vid, order.qty))
            fills = self._fills_of.get(order.coid, ())
            out.extend(fills)
            for f in fills:
                from_fills[f.symbol] = from_fills.get(f.symbol, 0.0) + order.sign * f.last_qty
            if not fills or fills[-1].kind is not order.view_kind or fills[-1].leaves_qty != order.view_leaves:
                intent = order.intent
                out.append(ExecutionReport(
                    kind=order.view_kind, client_order_id=order.coid, venue_order_id=order.vid, symbol=intent.symbol,
                    side=intent.side, cum_qty=order.view_cum, leaves_qty=order.view_leaves,
                    avg_px=order.px_sum / order.cum if order.cum else 0.0, ts_ns=order.last_due))
        for symbol, qty in self._positions.items():
            edit = qty - from_fills.get(symbol, 0.0)
            if abs(edit) > _FLAT:
                out.append(PositionAdjusted(symbol, edit))
        return out

    def status(self, client_order_id: str) -> OrderSnapshot | None:
        o = self._orders.get(client_order_id)
        if o is None or not o.listed:
            return None
        return OrderSnapshot(o.coid, o.view_kind, o.view_cum, o.view_leaves)

    def sent_ids(self) -> list[str]:
        return list(self._orders)

    # ---------------------------------------------------------------- matching

    def _work(self, order: _Order, book: _Book, mid: float, t_ns: int) -> None:
        """Trade what can trade at `mid` (time `t_ns`); rest a limit remainder or an untriggered stop."""
        intent = order.intent
        if not order.triggered:
            stop = intent.stop_price
            if (mid >= stop) if order.sign > 0.0 else (mid <= stop):
                order.triggered = True
            else:
                self._rest(order, book, math.log(stop), order.sign > 0.0)
                return
        if intent.order_type in _MARKET_LIKE:
            cap = intent.max_slippage
            why = self._walk(order, book, mid, t_ns, None, cap)
            self._unrest(order)  # a triggered stop leaves the book either way
            if why:
                self._finish(order, ExecKind.CANCELED, why, max(t_ns + self._latency_ns, order.last_due))
            return
        limit = intent.limit_price
        tif = intent.time_in_force
        if tif is TimeInForce.FOK and not self._fillable(order, book, mid, limit):
            self._unrest(order)
            self._finish(order, ExecKind.CANCELED, FOK, max(t_ns + self._latency_ns, order.last_due))
            return
        self._walk(order, book, mid, t_ns, limit, None)
        if order.state is ExecKind.FILL:
            self._unrest(order)
            return
        if tif is TimeInForce.IOC or tif is TimeInForce.FOK:  # what did not fill at once is canceled
            self._unrest(order)
            self._finish(order, ExecKind.CANCELED, IOC, max(t_ns + self._latency_ns, order.last_due))
            return
        if order.sign > 0.0:
            thr = math.log((limit + 5e-5) / (1.0 + self._half)) + _LOG_SLACK
            self._rest(order, book, thr, False)
        else:
            floor = limit - 5e-5
            thr = math.log(floor / (1.0 - self._half)) - _LOG_SLACK if floor > 0.0 and self._half < 1.0 else -math.inf
            self._rest(order, book, thr, True)

    def _walk(
        self, order: _Order, book: _Book, mid: float, t_ns: int, limit: float | None, cap: float | None
    ) -> str:
        """Take levels from the top until done, the limit, the slippage cap or the book's end.

        Returns "" when the order is filled or stopped at its limit, else the reason it stopped.
        """
        sign = order.sign
        spacing, half, top = self._spacing, self._half, book.top
        for level in range(DEPTH_LEVELS):
            offset = half + spacing * level
            if cap is not None and offset > cap + 1e-12:
                return SLIPPAGE
            px = round(mid * (1.0 + sign * offset), 4)
            if px <= 0.0:
                return NO_LIQUIDITY
            if limit is not None and (px > limit if sign > 0.0 else px < limit):
                return ""
            self._fill(order, top, px, t_ns)
            if order.state is ExecKind.FILL:
                return ""
        return NO_LIQUIDITY

    def _fillable(self, order: _Order, book: _Book, mid: float, limit: float) -> bool:
        """Whether the levels within `limit` hold the order's whole remainder now (FOK)."""
        sign = order.sign
        need = order.qty - order.cum - _QTY_EPS
        have = 0.0
        for level in range(DEPTH_LEVELS):
            px = round(mid * (1.0 + sign * (self._half + self._spacing * level)), 4)
            if px <= 0.0 or (px > limit if sign > 0.0 else px < limit):
                return False
            have += book.top
            if have >= need:
                return True
        return False

    def _fill(self, order: _Order, size: float, px: float, t_ns: int) -> None:
        leaves = order.qty - order.cum
        if leaves - size <= _QTY_EPS:  # the last fill is exactly the remainder
            qty = leaves
            cum = order.qty
            kind = ExecKind.FILL
            rest = 0.0
        else:
            qty = size
            cum = order.cum + size
            kind = ExecKind.PARTIAL_FILL
            rest = order.qty - cum
        order.cum = cum
        order.px_sum += qty * px
        order.n_fills += 1
        order.state = kind
        due = t_ns + self._latency_ns
        floor = order.last_due + self._gap_ns if order.n_fills > 1 else order.last_due
        if due < floor:
            due = floor
        intent = order.intent
        self._schedule(
            order,
            due,
            ExecutionReport(
                kind=kind,
                client_order_id=order.coid,
                venue_order_id=order.vid,
                exec_id="E-" + self._exec_prefix + order.vid + "-" + str(order.n_fills),
                symbol=intent.symbol,
                side=intent.side,
                last_qty=qty,
                last_px=px,
                cum_qty=cum,
                leaves_qty=rest,
                avg_px=order.px_sum / cum,
                ts_ns=due,
            ),
        )

    def _status(self, order: _Order, kind: ExecKind, due: int, reason: str) -> ExecutionReport:
        """A report with no fill in it: NEW, CANCELED, REJECTED."""
        intent = order.intent
        cum = order.cum
        return ExecutionReport(
            kind=kind,
            client_order_id=order.coid,
            venue_order_id=order.vid,
            symbol=intent.symbol,
            side=intent.side,
            cum_qty=cum,
            leaves_qty=order.qty if kind is ExecKind.NEW else 0.0,
            avg_px=order.px_sum / cum if cum else 0.0,
            reason=reason,
            ts_ns=due,
        )

    def _finish(self, order: _Order, kind: ExecKind, reason: str, due: int) -> None:
        order.state = kind
        self._schedule(order, due, self._status(order, kind, due, reason))

    def _schedule(self, order: _Order, due: int, rep: ExecutionReport) -> None:
        self._seq += 1
        order.last_due = due
        heapq.heappush(self._heap, (due, self._seq, order, rep))

    def _rest(self, order: _Order, book: _Book, thr: float, up: bool) -> None:
        order.thr = thr
        order.thr_up = up
        if order.coid not in book.resting:
            book.resting[order.coid] = order
            self._n_resting += 1

    def _unrest(self, order: _Order) -> None:
        book = self._books.get(order.intent.symbol)
        if book is not None and book.resting.pop(order.coid, None) is not None:
            self._n_resting -= 1

    def _uniform(self) -> float:
        """The next draw of the venue-decision stream (drawn in blocks, same sequence either way)."""
        buf = self._uniforms
        if not buf:
            buf.extend(reversed(self._decide.random(_UNIFORM_BLOCK).tolist()))
        return buf.pop()

    # ---------------------------------------------------------------- the clock

    def _step(self, now_ns: int) -> None:
        """Move every price path to the last grid tick at or before `now_ns`, matching resting orders."""
        last = self._last_tick_ns
        tick = self._tick_ns
        if last is None:
            self._last_tick_ns = now_ns - now_ns % tick
            return
        n = (now_ns - last) // tick
        if n <= 0:
            return
        if not self._n_resting:
            for book in self._books.values():
                book.path.step(n)
            self._last_tick_ns = last + n * tick
            return
        while n > 0:
            k = n if n < CHUNK else CHUNK
            for book in self._books.values():
                if book.resting:
                    self._match(book, book.path.path(k), last)
                else:
                    book.path.step(k)
            last += k * tick
            n -= k
        self._last_tick_ns = last

    def _match(self, book: _Book, logs: np.ndarray, t0_ns: int) -> None:
        """Trade the resting orders of `book` over the log mids `logs` of the ticks after `t0_ns`."""
        tick = self._tick_ns
        n = logs.shape[0]
        hi, lo = float(logs.max()), float(logs.min())
        for order in list(book.resting.values()):
            if (order.thr > hi) if order.thr_up else (order.thr < lo):
                continue  # no tick of the chunk reaches its threshold (one comparison, not an array scan)
            start = 0
            while start < n and order.coid in book.resting:
                seg = logs[start:]
                hits = np.flatnonzero(seg >= order.thr if order.thr_up else seg <= order.thr)
                if hits.shape[0] == 0:
                    break
                triggered = order.triggered
                for i in (hits + start).tolist():
                    self._work(order, book, math.exp(float(logs[i])), t0_ns + (i + 1) * tick)
                    start = i + 1
                    if order.coid not in book.resting or order.triggered is not triggered:
                        break  # done, or a stop became a limit: scan again with its new threshold
                else:
                    break


def _vid_number(vid: str) -> int:
    """The sequence number in a venue order id "P-000042" (0 if it has none)."""
    digits = vid.rpartition("-")[2]
    return int(digits) if digits.isdigit() else 0


def _size_of(intent: OrderIntent, mid: float, multiplier: float = 1.0) -> tuple[float, str]:
    """The order's quantity (contracts of `multiplier` shares at `mid` a share, for a notional), or a
    reason it has none usable."""
    kind = intent.order_type
    if kind is not OrderType.MARKET and kind is not OrderType.STOP:
        if intent.limit_price is None or not intent.limit_price > 0.0:
            return 0.0, PRICE_REQUIRED
    if kind in _STOPS and (intent.stop_price is None or not intent.stop_price > 0.0):
        return 0.0, PRICE_REQUIRED
    qty = intent.quantity
    if qty is None:
        notional = intent.notional
        if notional is None or not notional > 0.0:
            return 0.0, SIZE_SPEC
        qty = math.floor(notional / (mid * multiplier) * 1e4 + 1e-6) / 1e4
    if not qty > 0.0 or math.isinf(qty):
        return 0.0, SIZE_SPEC
    return qty, ""
