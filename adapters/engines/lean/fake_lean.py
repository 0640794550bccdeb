"""A faithful fake of `NaeBridgeAlgorithm.cs` running inside LEAN, for tests (LEAN cannot run here).

It speaks exactly the protocol the C# file speaks (the structs of `protocol.py`), over a DEALER
that connects to the bridge, with one thread owning the socket (the C# keeps one sender thread:
concurrent NetMQ sends crash, Lean#9790). It simulates what LEAN and its brokerage do:

- LEAN's event sequence per order: `Submitted`, then `PartiallyFilled`... `Filled` (market orders
  fill at once; limit/stop orders rest until `fill_resting` fills them, as a market move would);
  `Canceled` on a cancel; `Invalid` with the brokerage's message for a refused order.
- LEAN numbers each event of an order (`event_id` 1, 2, ...), and numbers orders per algorithm
  start from 1.
- `duplicate_fill`: the brokerage reports the same fill twice and LEAN emits a second Filled
  event under a new event id (Lean#2204 OANDA, Lean.Brokerages.Alpaca#61).
- Restart: `FakeBrokerage` and `FakeObjectStore` outlive a `FakeLean`; a new `FakeLean` on the
  same ones is a LEAN restart: a new session id, open orders reloaded from the brokerage under new
  LEAN order ids and with empty tags (Lean#5777), client order ids restored from the ObjectStore by
  broker id, exactly as the C# does.
- `silent`: the algorithm hangs (takes commands, answers nothing, no heartbeats).
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import deque
from typing import Any, Callable

import msgspec
import zmq

from adapters.engines.lean import protocol as p

#: the ObjectStore key the C# keeps its client order id -> broker ids map under
STORE_KEY = "nae-bridge/orders"


class FakeBrokerage:
    """The broker's own order book: it outlives LEAN restarts (orders live at the broker)."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}  # broker id -> {symbol, quantity, filled, open}
        self._ids = itertools.count(90_001)

    def place(self, symbol: str, quantity: float) -> str:
        bid = "B" + str(next(self._ids))
        self.orders[bid] = {"symbol": symbol, "quantity": quantity, "filled": 0.0, "open": True}
        return bid


class FakeObjectStore:
    """LEAN's ObjectStore: string values by key, kept across algorithm restarts."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def read(self, key: str) -> dict[str, list[str]]:
        raw = self.values.get(key)
        return msgspec.json.decode(raw) if raw else {}

    def save(self, key: str, value: dict[str, list[str]]) -> None:
        self.values[key] = msgspec.json.encode(value)


class FakeLeanBehaviour(msgspec.Struct, frozen=True, kw_only=True):
    prices: dict[str, float] = {}  # symbol -> fill price (default 100.0)
    partial_fills: bool = False  # market orders fill in two events (PartiallyFilled, Filled)
    duplicate_fill: bool = False  # the final Filled event is sent twice (new event id)
    invalid: dict[str, str] = {}  # symbol -> the brokerage's reject message (LEAN: Invalid)
    silent: bool = False  # a hung algorithm: reads commands, answers nothing
    heartbeat_ms: int = 200


class _LeanOrder:
    __slots__ = ("order_id", "coid", "symbol", "quantity", "filled", "last_fill", "status", "broker_ids", "events",
                 "order_type")

    def __init__(self, order_id: int, coid: str, symbol: str, quantity: float, order_type: str) -> None:
        self.order_id = order_id
        self.coid = coid
        self.symbol = symbol
        self.quantity = quantity
        self.filled = 0.0
        self.last_fill = 0.0
        self.status = p.NEW
        self.broker_ids: list[str] = []
        self.events = itertools.count(1)
        self.order_type = order_type


class FakeLean:
    """One run of the algorithm: `start()` connects and says Hello; `stop()` is the process dying."""

    def __init__(
        self,
        endpoint: str,
        brokerage: FakeBrokerage | None = None,
        store: FakeObjectStore | None = None,
        behaviour: FakeLeanBehaviour | None = None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.endpoint = endpoint
        self.brokerage = brokerage or FakeBrokerage()
        self.store = store or FakeObjectStore()
        self.behaviour = behaviour or FakeLeanBehaviour()
        self._clock_ms = clock_ms
        self.session_id = uuid.uuid4().hex
        self._order_ids = itertools.count(1)
        self.orders: dict[int, _LeanOrder] = {}
        self._by_coid: dict[str, int] = {}
        self._inbox: deque[Callable[[], None]] = deque()  # test-driven market moves, run on the socket thread
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self.received: list[Any] = []
        self.silent = self.behaviour.silent
        self._load_open_orders()

    # ---------------------------------------------------------------- Initialize() of the C#

    def _load_open_orders(self) -> None:
        """LEAN reloads the brokerage's open orders with new ids and no tags; the algorithm puts
        the client order ids back from its ObjectStore, matching on broker ids."""
        by_broker = {bid: coid for coid, bids in self.store.read(STORE_KEY).items() for bid in bids}
        for bid, bo in self.brokerage.orders.items():
            if not bo["open"]:
                continue
            coid = by_broker.get(bid, "")
            order = _LeanOrder(next(self._order_ids), coid, bo["symbol"], bo["quantity"], p.LIMIT)
            order.broker_ids = [bid]
            order.filled = bo["filled"]
            order.status = p.PARTIALLY_FILLED if bo["filled"] else p.SUBMITTED
            self.orders[order.order_id] = order
            if coid:
                self._by_coid[coid] = order.order_id

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "FakeLean":
        self._running.set()
        self._thread = threading.Thread(target=self._main, name="fake-lean", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running.clear()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def hang(self) -> None:
        """From now on the algorithm takes commands and answers nothing (a hung LEAN)."""
        self.silent = True

    def fill_resting(self, client_order_id: str, price: float) -> None:
        """The market reaches a resting order: the brokerage fills it (sent from the socket thread)."""
        self._inbox.append(lambda: self._fill_by_coid(client_order_id, price))

    # ---------------------------------------------------------------- the socket thread

    def _main(self) -> None:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        self._sock = sock
        seq = itertools.count(1)
        next_beat = 0
        try:
            self._emit(p.Hello(session_id=self.session_id, algorithm="FakeLean"))
            while self._running.is_set():
                if sock.poll(10):
                    for _ in range(1024):
                        try:
                            frame = sock.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._on_command(p.command_decoder.decode(frame))
                while self._inbox:
                    self._inbox.popleft()()
                now = self._clock_ms()
                if now >= next_beat and not self.silent:
                    self._emit(p.Heartbeat(session_id=self.session_id, seq=next(seq), utc_ms=now))
                    next_beat = now + self.behaviour.heartbeat_ms
        finally:
            sock.close(0)

    def _emit(self, msg: Any) -> None:
        if not self.silent or type(msg) is p.Hello:
            self._sock.send(p.encode(msg))

    def _on_command(self, cmd: Any) -> None:
        self.received.append(cmd)
        kind = type(cmd)
        if kind is p.PlaceOrder:
            self._place(cmd)
        elif kind is p.CancelOrder:
            self._cancel(cmd.client_order_id)
        elif kind is p.StatusQuery:
            self._emit(p.StatusReport(session_id=self.session_id, query_id=cmd.query_id, orders=self._states()))

    # ---------------------------------------------------------------- LEAN's order flow

    def _place(self, cmd: p.PlaceOrder) -> None:
        sent = self.store.read(STORE_KEY)
        if cmd.client_order_id in sent:
            return  # the C# drops a client order id it already placed (logs it)
        sent[cmd.client_order_id] = []
        self.store.save(STORE_KEY, sent)
        price = self.behaviour.prices.get(cmd.symbol, 100.0)
        qty = cmd.quantity or float(int(cmd.notional / price))
        order = _LeanOrder(next(self._order_ids), cmd.client_order_id, cmd.symbol, qty, cmd.order_type)
        self.orders[order.order_id] = order
        self._by_coid[order.coid] = order.order_id
        reject = self.behaviour.invalid.get(cmd.symbol)
        if reject is not None:
            order.status = p.INVALID
            self._event(order, p.INVALID, message=reject)
            return
        bid = self.brokerage.place(cmd.symbol, qty)
        order.broker_ids = [bid]
        sent[order.coid] = [bid]
        self.store.save(STORE_KEY, sent)
        order.status = p.SUBMITTED
        self._event(order, p.SUBMITTED)
        if cmd.order_type == p.MARKET:
            if self.behaviour.partial_fills and abs(qty) >= 2:
                half = float(int(qty / 2))
                self._fill(order, half, price)
            self._fill(order, qty - order.filled, price)
            if self.behaviour.duplicate_fill:  # the brokerage replays its last fill: LEAN emits it again
                self._event(order, p.FILLED, fill=order.last_fill, price=price)

    def _fill(self, order: _LeanOrder, qty: float, price: float) -> None:
        order.filled += qty
        bo = self.brokerage.orders[order.broker_ids[0]]
        bo["filled"] = order.filled
        done = abs(order.filled - order.quantity) < 1e-9
        bo["open"] = not done
        order.status = p.FILLED if done else p.PARTIALLY_FILLED
        order.last_fill = qty
        self._event(order, order.status, fill=qty, price=price)

    def _fill_by_coid(self, coid: str, price: float) -> None:
        oid = self._by_coid.get(coid)
        order = self.orders.get(oid) if oid is not None else None
        if order is not None and order.status in (p.SUBMITTED, p.PARTIALLY_FILLED):
            self._fill(order, order.quantity - order.filled, price)

    def _cancel(self, coid: str) -> None:
        oid = self._by_coid.get(coid)
        order = self.orders.get(oid) if oid is not None else None
        if order is None or order.status not in (p.SUBMITTED, p.PARTIALLY_FILLED):
            return  # LEAN: no open ticket for that tag; nothing to cancel
        self.brokerage.orders[order.broker_ids[0]]["open"] = False
        order.status = p.CANCELED
        self._event(order, p.CANCELED)

    def _event(self, order: _LeanOrder, status: str, fill: float = 0.0, price: float = 0.0, message: str = "") -> None:
        self._emit(p.OrderEvent(
            session_id=self.session_id,
            order_id=order.order_id,
            event_id=next(order.events),
            client_order_id=order.coid,
            symbol=order.symbol,
            status=status,
            fill_quantity=fill,
            fill_price=price,
            order_quantity=order.quantity,
            message=message,
            utc_ms=self._clock_ms(),
        ))

    def _states(self) -> list[p.OrderState]:
        out = []
        listed = set()
        for o in self.orders.values():
            if not o.coid:
                continue
            listed.add(o.coid)
            out.append(p.OrderState(client_order_id=o.coid, order_id=o.order_id, symbol=o.symbol, status=o.status,
                                    quantity=o.quantity, filled_quantity=abs(o.filled), broker_ids=list(o.broker_ids)))
        for coid, bids in self.store.read(STORE_KEY).items():
            if coid not in listed:
                out.append(p.OrderState(client_order_id=coid, order_id=-1, symbol="", status=p.UNKNOWN,
                                        quantity=0.0, broker_ids=bids))
        return out

