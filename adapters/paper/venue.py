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
(`positions`, `fills`, `snapshot`) moves as reports are handed out, so a reconciler comparing the
reports it received with the venue's positions never sees a fill in flight.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from adapters.paper.pricing import CHUNK, PricePath, symbol_streams
from node.config import PaperVenueConfig
from node.messages import ExecKind, ExecutionReport, OrderIntent, OrderSnapshot, OrderType, Side, TimeInForce
from node.reasons import Reason
from node.reconcile import Order
from node.venue import VenueBase

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
        "last_due", "thr", "thr_up", "view_kind", "view_cum", "view_leaves",
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


class PaperVenue(VenueBase):
    """The simulated venue behind the paper broker (see the module docstring); a `node.venue.Venue`."""

    def __init__(self, cfg: PaperVenueConfig) -> None:
        self._cfg = cfg
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
        qty, reason = (0.0, UNKNOWN_SYMBOL) if book is None else _size_of(intent, book.path.mid)
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
        out = []
        pop = heapq.heappop
        positions = self._positions
        fills = self._fills
        fills_of = self._fills_of
        while heap and heap[0][0] <= now_ns:
            _, _, order, rep = pop(heap)
            out.append(rep)
            order.view_kind = rep.kind
            order.view_cum = rep.cum_qty
            order.view_leaves = rep.leaves_qty
            if rep.last_qty:
                fills.append(rep)
                fills_of.setdefault(rep.client_order_id, []).append(rep)
                positions[rep.symbol] = positions.get(rep.symbol, 0.0) + order.sign * rep.last_qty
        return out

    def next_due_ns(self) -> int | None:
        """The earliest time `advance` has work: a report due, or the next tick while orders rest."""
        due = self._heap[0][0] if self._heap else None
        if self._n_resting and self._last_tick_ns is not None:
            tick = self._last_tick_ns + self._tick_ns
            due = tick if due is None or tick < due else due
        return due

    def snapshot(self) -> list[OrderSnapshot]:
        """Every order the venue knows, as the reports handed out so far describe it."""
        return [OrderSnapshot(o.coid, o.view_kind, o.view_cum, o.view_leaves) for o in self._orders.values()]

    def snapshot_of(self, client_order_ids) -> list[OrderSnapshot]:
        """`snapshot()` of just these orders (the unknown ids are left out)."""
        orders = self._orders
        return [OrderSnapshot(o.coid, o.view_kind, o.view_cum, o.view_leaves)
                for o in (orders.get(c) for c in client_order_ids) if o is not None]

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
                      o.intent.side, o.vid) for o in self._orders.values()]

    def adjust_position(self, symbol: str, qty: float) -> None:
        """A position change with no fill (a journal, a transfer, a hand edit at the venue): what the
        reconciler must find as drift."""
        self._positions[symbol] = self._positions.get(symbol, 0.0) + qty

    def status(self, client_order_id: str) -> OrderSnapshot | None:
        o = self._orders.get(client_order_id)
        return None if o is None else OrderSnapshot(o.coid, o.view_kind, o.view_cum, o.view_leaves)

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
                exec_id="E-" + order.vid + "-" + str(order.n_fills),
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
        for order in list(book.resting.values()):
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


def _size_of(intent: OrderIntent, mid: float) -> tuple[float, str]:
    """The order's quantity, or a reason it has none usable."""
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
        qty = math.floor(notional / mid * 1e4 + 1e-6) / 1e4
    if not qty > 0.0 or math.isinf(qty):
        return 0.0, SIZE_SPEC
    return qty, ""
