"""The paper venue: a simulated exchange good enough to exercise every path of the node.

Pure logic: no sockets, no threads, no wall clock (time arrives as `now_ns`), deterministic for a
seed. What it simulates:

- a random-walk mid price per symbol, one step every `tick_interval_ms`, stepped lazily;
- liquidity in levels of `top_size` shares, `level_spacing_bps` apart away from the mid: a market
  order walks the levels, one fill report per level (PARTIAL_FILL ... FILL), prices worsening;
  `max_slippage` caps how far it may walk and the rest is CANCELED ("SLIPPAGE");
- LIMIT orders fill their marketable part at once and rest; a resting limit fills when the price
  comes to it; STOP triggers when the mid crosses the stop, then trades as MARKET (STOP_LIMIT as
  LIMIT);
- `notional` orders sized at the current price (fractional shares, 4 decimals);
- venue latency (`latency_us` to the ack and first fill), `fill_interval_us` between the fills of
  one order, and a seeded `reject_rate`;
- a client order id is an order at most once: a second submit with the same id makes nothing.
"""

from __future__ import annotations

import heapq
import math
import random

from node.config import PaperVenueConfig
from node.messages import ExecKind, ExecutionReport, OrderIntent, OrderSnapshot, OrderType, Side

_EPS = 1e-9


class _Book:
    __slots__ = ("symbol", "mid", "vol", "top_size")

    def __init__(self, symbol: str, mid: float, vol_bps: float, top_size: float) -> None:
        self.symbol = symbol
        self.mid = mid
        self.vol = vol_bps * 1e-4
        self.top_size = top_size


class _Order:
    __slots__ = ("intent", "vid", "qty", "cum", "notional_px", "state", "triggered", "fills", "due")

    def __init__(self, intent: OrderIntent, vid: str, qty: float) -> None:
        self.intent = intent
        self.vid = vid
        self.qty = qty
        self.cum = 0.0
        self.notional_px = 0.0  # sum of qty * px, for avg_px
        self.state = ExecKind.NEW
        self.triggered = intent.order_type not in (OrderType.STOP, OrderType.STOP_LIMIT)
        self.fills = 0
        self.due = 0  # when this order's next report may be delivered


class PaperVenue:
    def __init__(self, cfg: PaperVenueConfig) -> None:
        self._cfg = cfg
        self._rng = random.Random(cfg.seed)
        self._books = {s.symbol: _Book(s.symbol, s.price, s.volatility_bps, s.top_size) for s in cfg.symbols}
        self._tick_ns = cfg.tick_interval_ms * 1_000_000
        self._latency_ns = cfg.latency_us * 1_000
        self._gap_ns = cfg.fill_interval_us * 1_000
        self._spacing = cfg.level_spacing_bps * 1e-4
        self._last_tick_ns: int | None = None
        self._orders: dict[str, _Order] = {}
        self._resting: dict[str, _Order] = {}
        self._heap: list[tuple[int, int, ExecutionReport]] = []
        self._seq = 0
        self._positions: dict[str, float] = {}
        self._fills: list[ExecutionReport] = []

    # ---------------------------------------------------------------- the venue's API

    def submit(self, intent: OrderIntent, now_ns: int) -> None:
        coid = intent.client_order_id
        if coid in self._orders:
            return
        self._step(now_ns)
        self._seq += 1
        vid = "P-%06d" % self._seq
        due = now_ns + self._latency_ns
        book = self._books.get(intent.symbol)
        if book is None:
            self._orders[coid] = order = _Order(intent, vid, 0.0)
            self._finish(order, ExecKind.REJECTED, "UNKNOWN_SYMBOL", due)
            return
        qty = intent.quantity
        if qty is None:
            qty = math.floor((intent.notional or 0.0) / book.mid * 1e4) / 1e4
        order = _Order(intent, vid, qty)
        self._orders[coid] = order
        if qty <= 0.0:
            self._finish(order, ExecKind.REJECTED, "SIZE_TOO_SMALL", due)
            return
        if self._cfg.reject_rate and self._rng.random() < self._cfg.reject_rate:
            self._finish(order, ExecKind.REJECTED, "VENUE_REJECT", due)
            return
        order.due = due
        self._emit(order, ExecKind.NEW, due)
        self._work(order, book)

    def cancel(self, client_order_id: str, now_ns: int) -> None:
        order = self._orders.get(client_order_id)
        if order is None or order.state in (ExecKind.FILL, ExecKind.CANCELED, ExecKind.REJECTED):
            return
        self._resting.pop(client_order_id, None)
        self._finish(order, ExecKind.CANCELED, "CANCELED", max(now_ns + self._latency_ns, order.due))

    def advance(self, now_ns: int) -> list[ExecutionReport]:
        self._step(now_ns)
        heap = self._heap
        if not heap or heap[0][0] > now_ns:
            return []
        out = []
        pop = heapq.heappop
        while heap and heap[0][0] <= now_ns:
            out.append(pop(heap)[2])
        return out

    def next_due_ns(self) -> int | None:
        due = self._heap[0][0] if self._heap else None
        if self._resting and self._last_tick_ns is not None:
            tick = self._last_tick_ns + self._tick_ns
            due = tick if due is None else min(due, tick)
        return due

    def snapshot(self) -> list[OrderSnapshot]:
        return [OrderSnapshot(coid, o.state, o.cum, max(o.qty - o.cum, 0.0)) for coid, o in self._orders.items()]

    def last_price(self, symbol: str) -> float:
        return self._books[symbol].mid

    def positions(self) -> dict[str, float]:
        return {s: q for s, q in self._positions.items() if abs(q) > _EPS}

    def fills(self) -> list[ExecutionReport]:
        return list(self._fills)

    # ---------------------------------------------------------------- matching

    def _work(self, order: _Order, book: _Book) -> None:
        """Trade what can trade now; rest the remainder of a limit or an untriggered stop."""
        intent = order.intent
        kind = intent.order_type
        buy = intent.side is Side.BUY
        if not order.triggered:
            stop = intent.stop_price
            if (buy and book.mid >= stop) or (not buy and book.mid <= stop):
                order.triggered = True
            else:
                self._resting[intent.client_order_id] = order
                return
        if kind in (OrderType.MARKET, OrderType.STOP):
            self._walk(order, book, None, intent.max_slippage)
            if order.state not in (ExecKind.FILL, ExecKind.CANCELED):
                self._finish(order, ExecKind.CANCELED, "NO_LIQUIDITY", order.due)
            return
        self._walk(order, book, intent.limit_price, None)
        if order.state is not ExecKind.FILL:
            self._resting[intent.client_order_id] = order
        else:
            self._resting.pop(intent.client_order_id, None)

    def _walk(self, order: _Order, book: _Book, limit: float | None, max_slippage: float | None) -> None:
        intent = order.intent
        sign = 1.0 if intent.side is Side.BUY else -1.0
        mid, top, spacing = book.mid, book.top_size, self._spacing
        level = 0
        while order.qty - order.cum > _EPS:
            offset = spacing * (level + 0.5)
            if max_slippage is not None and offset > max_slippage and level > 0:
                self._finish(order, ExecKind.CANCELED, "SLIPPAGE", order.due)
                return
            px = round(mid * (1.0 + sign * offset), 4)
            if limit is not None and (px > limit if sign > 0 else px < limit):
                return
            self._fill(order, min(top, order.qty - order.cum), px)
            level += 1
            if level >= 10_000:  # an absurd order against thin books: stop walking
                return

    def _fill(self, order: _Order, qty: float, px: float) -> None:
        leaves = order.qty - order.cum
        last = leaves - qty <= _EPS
        if last:
            qty = leaves
        order.cum = order.qty if last else order.cum + qty
        order.notional_px += qty * px
        order.fills += 1
        intent = order.intent
        kind = ExecKind.FILL if last else ExecKind.PARTIAL_FILL
        order.state = kind
        due = order.due
        if order.fills > 1:
            due = order.due = due + self._gap_ns
        rep = ExecutionReport(
            kind=kind,
            client_order_id=intent.client_order_id,
            venue_order_id=order.vid,
            exec_id="E-" + order.vid + "-" + str(order.fills),
            symbol=intent.symbol,
            side=intent.side,
            last_qty=qty,
            last_px=px,
            cum_qty=order.cum,
            leaves_qty=0.0 if last else order.qty - order.cum,
            avg_px=order.notional_px / order.cum,
            ts_ns=due,
        )
        self._push(due, rep)
        self._fills.append(rep)
        signed = qty if intent.side is Side.BUY else -qty
        self._positions[intent.symbol] = self._positions.get(intent.symbol, 0.0) + signed

    def _emit(self, order: _Order, kind: ExecKind, due: int, reason: str = "") -> None:
        intent = order.intent
        self._push(
            due,
            ExecutionReport(
                kind=kind,
                client_order_id=intent.client_order_id,
                venue_order_id=order.vid,
                symbol=intent.symbol,
                side=intent.side,
                cum_qty=order.cum,
                leaves_qty=0.0 if kind is not ExecKind.NEW else order.qty,
                avg_px=order.notional_px / order.cum if order.cum else 0.0,
                reason=reason,
                ts_ns=due,
            ),
        )

    def _finish(self, order: _Order, kind: ExecKind, reason: str, due: int) -> None:
        order.state = kind
        order.due = due
        self._emit(order, kind, due, reason)

    def _push(self, due: int, rep: ExecutionReport) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, rep))

    # ---------------------------------------------------------------- the price process

    def _step(self, now_ns: int) -> None:
        last = self._last_tick_ns
        if last is None:
            self._last_tick_ns = now_ns
            return
        ticks = (now_ns - last) // self._tick_ns
        if ticks <= 0:
            return
        gauss = self._rng.gauss
        if not self._resting or ticks > 1_000:
            # nothing to match tick by tick: one step with the variance of `ticks` steps
            scale = math.sqrt(ticks)
            for book in self._books.values():
                book.mid *= math.exp(book.vol * scale * gauss(0.0, 1.0))
            self._last_tick_ns = last + ticks * self._tick_ns
            self._match_resting()
            return
        for _ in range(ticks):
            for book in self._books.values():
                book.mid *= math.exp(book.vol * gauss(0.0, 1.0))
            self._last_tick_ns += self._tick_ns
            self._match_resting()

    def _match_resting(self) -> None:
        if not self._resting:
            return
        tick = self._last_tick_ns
        for order in list(self._resting.values()):
            order.due = max(order.due, tick + self._latency_ns)
            self._resting.pop(order.intent.client_order_id, None)
            self._work(order, self._books[order.intent.symbol])
