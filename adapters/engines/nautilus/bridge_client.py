"""The Nautilus execution client that bridges to a node broker adapter over ZeroMQ, and its factory.

`BridgeExecutionClient` is a `LiveExecutionClient` on the kernel's loop. It connects a DEALER
(zmq.asyncio) to the broker adapter's ROUTER and speaks the node's broker protocol:

- submit: Nautilus's `SubmitOrder` -> our `SubmitOrder(epoch, engine, OrderIntent)`, then
  `generate_order_submitted`; cancel -> `CancelOrder`.
- the receive loop turns each broker `ExecutionReport` into `generate_order_accepted / filled /
  canceled / rejected`, dedupes fills on exec_id, and leaves the raw report in the shared
  `BridgeBook` so the strategy publishes the broker's own numbers once Nautilus applied the event.
  An UNKNOWN report has no Nautilus state: it is published as is and Nautilus is left unchanged.
- `generate_order_status_report(s)` answer from the broker's own `OrdersReport` (QueryOrders), so
  Nautilus's in-flight checks resolve an order from the broker's word; an order the broker calls
  UNKNOWN, or does not answer about, gets no report (never an invented state). The in-flight check
  asks about its one order, not the whole book; each answer goes to its own query (`queries.py`).

Instruments (equities, whole shares, USD) are added to the cache in `_connect`, then a MARGIN
account state is emitted and awaited, as Nautilus's own adapters do.

Standby (`role = "standby"`): the client sends nothing to the broker (no submit, cancel or query:
a query would re-route the leader's reports here). It holds each submitted intent and follows the
node's events feed instead (see `standby.py`); `promote(epoch)` asks the broker under the new
epoch (about the held amends' orders too), adopts or sends the held orders, plans the held cancels
and replaces (`held_amends.py`: the strategy carries the plan out) and starts submitting; `demote()`
goes back to holding.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import zmq
import zmq.asyncio
from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.execution.messages import (
    GenerateFillReports,
    GenerateOrderStatusReport,
    GenerateOrderStatusReports,
    GeneratePositionStatusReports,
)
from nautilus_trader.execution.messages import CancelOrder as NtCancelOrder
from nautilus_trader.execution.messages import SubmitOrder as NtSubmitOrder
from nautilus_trader.execution.reports import FillReport, OrderStatusReport, PositionStatusReport
from nautilus_trader.live.config import LiveExecClientConfig
from nautilus_trader.live.execution_client import LiveExecutionClient
from nautilus_trader.live.factories import LiveExecClientFactory
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.enums import (
    AccountType,
    LiquiditySide,
    OmsType,
    OrderSide,
    OrderStatus,
    OrderType,
)
from nautilus_trader.model.identifiers import (
    AccountId,
    ClientId,
    ClientOrderId,
    InstrumentId,
    Symbol,
    TradeId,
    Venue,
    VenueOrderId,
)
from nautilus_trader.model.instruments import Equity
from nautilus_trader.model.objects import AccountBalance, Money, Price, Quantity

from adapters.engines.nautilus.bridge_strategy import BridgeBook
from adapters.engines.nautilus.queries import BrokerQueries
from adapters.engines.nautilus.held_amends import Adopted, Takeover, plan_takeover
from adapters.engines.nautilus.standby import ShadowBook, plan_promotion
from node.followed import FollowedFills
from node.open_orders import BookedOrphans
from node.messages import (
    CancelOrder,
    ExecKind,
    ExecutionReport,
    OrderIntent,
    OrderSnapshot,
    OrdersReport,
    QueryOrders,
    Side,
    SubmitOrder,
    broker_event_decoder,
    encode,
    report_decoder,
    topic_prefixes,
)
from node.messages import OrderType as OurOrderType
from node.orders import client_order_id_for

_SIDE = {OrderSide.BUY: Side.BUY, OrderSide.SELL: Side.SELL}
_TYPE = {
    OrderType.MARKET: OurOrderType.MARKET,
    OrderType.LIMIT: OurOrderType.LIMIT,
    OrderType.STOP_MARKET: OurOrderType.STOP,
    OrderType.STOP_LIMIT: OurOrderType.STOP_LIMIT,
}
_STATUS = {
    ExecKind.NEW: OrderStatus.ACCEPTED,
    ExecKind.PARTIAL_FILL: OrderStatus.PARTIALLY_FILLED,
    ExecKind.FILL: OrderStatus.FILLED,
    ExecKind.CANCELED: OrderStatus.CANCELED,
    ExecKind.REJECTED: OrderStatus.REJECTED,
}
_MAX_SEEN_EXEC_IDS = 1_000_000
_MAX_RAW = 100_000
_STALE_EPOCH = "STALE_EPOCH"  # a fenced engine's refusal: says nothing about the order
_QUERY_MARGIN_NS = 60_000_000_000  # a promotion asks for activity this far back (and all it holds)


class BridgeExecClientConfig(LiveExecClientConfig, frozen=True, kw_only=True):
    """The exec client's settings (a Nautilus config, so the node builder can pass it)."""

    broker_endpoint: str
    engine_name: str = "nautilus"
    epoch: int = 1
    group: str = "default"
    venue: str = "NAE"
    symbols: list[str] = []
    price_precision: int = 2
    starting_cash_usd: float = 10_000_000.0
    query_timeout_ms: int = 2_000
    role: str = "leader"
    follow_endpoint: str = ""


def make_equity(symbol: str, venue: str, price_precision: int) -> Equity:
    """A USD equity in whole shares on `venue`."""
    return Equity(
        instrument_id=InstrumentId(Symbol(symbol), Venue(venue)),
        raw_symbol=Symbol(symbol),
        currency=USD,
        price_precision=price_precision,
        price_increment=Price(10.0**-price_precision, price_precision),
        lot_size=Quantity.from_int(1),
        ts_event=0,
        ts_init=0,
    )


class BridgeExecutionClient(LiveExecutionClient):
    """Nautilus <-> node broker adapter, over one DEALER socket on the kernel's loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
        config: BridgeExecClientConfig,
    ) -> None:
        venue = Venue(config.venue)
        super().__init__(
            loop=loop,
            client_id=ClientId(config.venue),
            venue=venue,
            oms_type=OmsType.NETTING,
            account_type=AccountType.MARGIN,
            base_currency=USD,
            instrument_provider=InstrumentProvider(),
            msgbus=msgbus,
            cache=cache,
            clock=clock,
            config=config,
        )
        self._set_account_id(AccountId(config.venue + "-001"))
        self._cfg = config
        self._epoch = config.epoch
        self._engine = config.engine_name
        self._group = config.group
        self._dealer: zmq.asyncio.Socket | None = None
        self._ctx: zmq.asyncio.Context | None = None
        self._seen_exec_ids: set[str] = set()
        self._accepted: set[str] = set()  # client order ids we generated an OrderAccepted for
        self.queries = BrokerQueries()  # each QueryOrders' answer to its own asker
        self.book: BridgeBook | None = None
        self.standby = config.role == "standby"
        self.shadow = ShadowBook()
        #: the newest fills followed (published by the leader): handed to the host by a promotion, which
        #: appends to `execution.events` those the old leader never logged (`node.followed`)
        self.followed_fills = FollowedFills()
        self._follow: zmq.asyncio.Socket | None = None
        self._follow_task: asyncio.Task | None = None
        self.held_sends = 0  # submits a standby held back (never sent)
        self.resent = 0  # held orders a promotion sent (the broker did not have them)
        self.adopted = 0  # held orders a promotion found at the broker
        self.swept = 0  # fills a promotion took from the broker's list
        self.in_flight_kept = 0  # held orders the broker's gate took, not listed yet: not sent again
        self.promotions = 0
        self.sent = 0
        self.reports = 0
        self.duplicate_fills = 0
        self.orphan_reports = 0  # reports of orders not in the cache: booked once each (BookedOrphans)
        self._orphans = BookedOrphans()
        self.passthrough_reports = 0
        self.bad_frames = 0
        #: a promotion's plan for the held amends (held_amends.py), carried out by the strategy after it
        self.takeover = Takeover()
        #: replacements the broker already has (a promotion found them): adopted when submitted, never sent
        self._at_broker: dict[str, Adopted] = {}
        self.adopted_replacements = 0

    def attach(self, book: BridgeBook) -> None:
        """Share the strategy's book (raw reports, last prices, signal ids); a standby's is muted."""
        self.book = book
        book.muted = self.standby
        book.send_cancel = self.send_cancel

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    # ---------------------------------------------------------------- connection

    async def _connect(self) -> None:
        for symbol in self._cfg.symbols:
            self._cache.add_instrument(make_equity(symbol, self._cfg.venue, self._cfg.price_precision))
        self._ctx = zmq.asyncio.Context()
        dealer = self._ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.SNDHWM, 1_000_000)
        dealer.setsockopt(zmq.RCVHWM, 1_000_000)
        dealer.connect(self._cfg.broker_endpoint)
        self._dealer = dealer
        self.create_task(self._recv_loop(), log_msg="bridge_recv_loop")
        if self.standby:
            self._open_follow()
        cash = Money(self._cfg.starting_cash_usd, USD)
        self.generate_account_state(
            balances=[AccountBalance(cash, Money(0, USD), cash)],
            margins=[],
            reported=True,
            ts_event=self._clock.timestamp_ns(),
        )
        await self._await_account_registered()

    async def _disconnect(self) -> None:
        self._close_follow()
        if self._dealer is not None:
            self._dealer.close(0)
            self._dealer = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # ---------------------------------------------------------------- commands out

    def submit_order(self, command: NtSubmitOrder) -> None:
        """Send at once on the loop thread (no task per order): the DEALER never blocks here."""
        order = command.order
        coid = order.client_order_id.value
        book = self.book
        meta = book.meta.get(coid) if book is not None else None
        intent = OrderIntent(
            client_order_id=coid,
            signal_id=meta.signal_id if meta is not None else "",
            request_id=meta.request_id if meta is not None else "",
            strategy_id=meta.strategy_id if meta is not None else order.strategy_id.value,
            symbol=order.instrument_id.symbol.value,
            side=_SIDE[order.side],
            order_type=_TYPE.get(order.order_type, OurOrderType.MARKET),
            quantity=float(order.quantity),
            limit_price=float(order.price) if order.has_price else None,
            stop_price=float(order.trigger_price) if order.has_trigger_price else None,
        )
        now = self._clock.timestamp_ns()
        if self.standby:  # held, not sent: the leader's reports (or a promotion) move it on
            self.held_sends += 1
            self.generate_order_submitted(order.strategy_id, order.instrument_id, order.client_order_id, now)
            for rep in self.shadow.hold(intent):
                self._apply_followed(rep)
            return
        if self._at_broker:
            adopted = self._at_broker.pop(coid, None)
            if adopted is not None:  # a replacement the old leader sent: the broker's word, not a second send
                self.adopted_replacements += 1
                self.generate_order_submitted(order.strategy_id, order.instrument_id, order.client_order_id, now)
                for rep in adopted.reports:
                    self._on_report(rep)
                return
        try:
            self._dealer.send(encode(SubmitOrder(self._epoch, self._engine, intent, self._group)), zmq.NOBLOCK)
        except (zmq.ZMQError, AttributeError) as exc:
            # nothing left the process: the broker cannot have it, so a rejection is the truth
            self.generate_order_rejected(
                order.strategy_id, order.instrument_id, order.client_order_id, "SEND_FAILED: " + str(exc), now
            )
            return
        self.sent += 1
        self.generate_order_submitted(order.strategy_id, order.instrument_id, order.client_order_id, now)

    async def _cancel_order(self, command: NtCancelOrder) -> None:
        if self._dealer is not None and not self.standby:
            self._dealer.send(encode(CancelOrder(self._epoch, self._engine, command.client_order_id.value, self._group)))

    def send_cancel(self, client_order_id: str) -> None:
        """Our CancelOrder straight to the broker, past Nautilus (an order it will not cancel again:
        PENDING_CANCEL, or closed by itself while the broker's word is unknown). A standby sends none."""
        if self._dealer is not None and not self.standby:
            self._dealer.send(encode(CancelOrder(self._epoch, self._engine, client_order_id, self._group)))

    async def _cancel_all_orders(self, command) -> None:  # noqa: ANN001 - Nautilus command type
        if self._dealer is None or self.standby:
            return
        for order in self._cache.orders_open(venue=self.venue):
            self._dealer.send(encode(CancelOrder(self._epoch, self._engine, order.client_order_id.value, self._group)))

    # ---------------------------------------------------------------- reports in

    async def _recv_loop(self) -> None:
        dealer = self._dealer
        recv = dealer.recv
        decode = broker_event_decoder.decode
        while True:
            frame = await recv()
            try:
                msg = decode(frame)
            except Exception:  # noqa: BLE001 - a bad frame from a peer is counted, never fatal
                self.bad_frames += 1
                continue
            kind = type(msg)
            try:
                if kind is ExecutionReport:
                    self._on_report(msg)
                elif kind is OrdersReport:
                    self._on_orders(msg)
            except Exception:  # noqa: BLE001 - loop boundary: count and carry on
                self.bad_frames += 1

    def _on_report(self, rep: ExecutionReport) -> None:
        self.reports += 1
        coid_s = rep.client_order_id
        coid = ClientOrderId(coid_s)
        order = self._cache.order(coid)
        book = self.book
        kind = rep.kind
        if order is None:
            # an order this kernel never placed nor adopted (placed by an engine before it): booked
            # as the broker says, once, never dropped (the ledger, risk and subscribers need the fill)
            self.orphan_reports += 1
            if book is not None and not self.standby and self._orphans.first_time(rep):
                book.publish(rep)
            return
        if book is not None and (kind is ExecKind.UNKNOWN or coid_s in book.unknown):
            # no Nautilus state for UNKNOWN, and Nautilus already closed an order it resolved by
            # itself: the broker's own report is the truth, published as is
            book.publish(rep)
            if kind is ExecKind.FILL or kind is ExecKind.CANCELED or kind is ExecKind.REJECTED:
                book.unknown.discard(coid_s)
                book.deadlines.finished(coid_s)
            self.passthrough_reports += 1
            return
        ts = rep.ts_ns or self._clock.timestamp_ns()
        vid = VenueOrderId(rep.venue_order_id or coid_s)
        sid, iid = order.strategy_id, order.instrument_id
        if kind is ExecKind.PARTIAL_FILL or kind is ExecKind.FILL:
            exec_id = rep.exec_id or (coid_s + "-" + str(rep.cum_qty))
            seen = self._seen_exec_ids
            if exec_id in seen:
                self.duplicate_fills += 1
                return
            if len(seen) >= _MAX_SEEN_EXEC_IDS:
                seen.clear()
            seen.add(exec_id)
            if coid_s not in self._accepted:
                self._accepted.add(coid_s)
                self.generate_order_accepted(sid, iid, coid, vid, ts)
            if book is not None:
                self._keep_raw(exec_id, rep)
                book.last_px[order.instrument_id.symbol.value] = rep.last_px
            self.generate_order_filled(
                sid,
                iid,
                coid,
                vid,
                None,
                TradeId(exec_id),
                order.side,
                order.order_type,
                Quantity(rep.last_qty, order.quantity.precision),
                Price(rep.last_px, self._cfg.price_precision),
                USD,
                Money(0, USD),
                LiquiditySide.TAKER,
                ts,
            )
            if kind is ExecKind.FILL:
                self._accepted.discard(coid_s)
            return
        if book is not None:
            self._keep_raw((coid_s, kind), rep)
        if kind is ExecKind.NEW:
            if coid_s not in self._accepted:
                self._accepted.add(coid_s)
                self.generate_order_accepted(sid, iid, coid, vid, ts)
        elif kind is ExecKind.CANCELED:
            self._accepted.discard(coid_s)
            self.generate_order_canceled(sid, iid, coid, vid, ts)
        elif kind is ExecKind.REJECTED:
            self._accepted.discard(coid_s)
            self.generate_order_rejected(sid, iid, coid, rep.reason or "VENUE_REJECT", ts)

    def _keep_raw(self, key: object, rep: ExecutionReport) -> None:
        raw = self.book.raw
        if len(raw) >= _MAX_RAW:
            del raw[next(iter(raw))]
        raw[key] = rep

    def _on_orders(self, msg: OrdersReport) -> None:
        self.queries.answer(msg)

    async def query_broker(self) -> list[OrderSnapshot] | None:
        """Ask the broker for every order it knows; None when it does not answer in time (and
        always for a standby: a query would make the broker route the leader's reports here)."""
        if self.standby:
            return None
        answer = await self._query(QueryOrders(self._epoch, self._engine, group=self._group), self._cfg.query_timeout_ms)
        return answer.orders if answer is not None else None

    async def ask_about_order(self, client_order_id: str) -> OrdersReport | None:
        """Ask the broker about one order: its line and its fills, not the whole book. None when
        the broker does not answer in time, and always for a standby."""
        if self.standby:
            return None
        query = QueryOrders(self._epoch, self._engine, time.time_ns(), [client_order_id], group=self._group)
        return await self._query(query, self._cfg.query_timeout_ms)

    async def _query(self, query: QueryOrders, timeout_ms: int) -> OrdersReport | None:
        if self._dealer is None:
            return None
        fut = self._loop.create_future()
        qid, tagged = self.queries.open(query, fut)
        if tagged is not None:
            self._dealer.send(encode(tagged))
        try:
            return await asyncio.wait_for(fut, timeout_ms / 1000.0)
        except asyncio.TimeoutError:
            self.queries.give_up(qid, fut)
            return None

    # ---------------------------------------------------------------- standby: follow, promote, demote

    def _open_follow(self) -> None:
        if not self._cfg.follow_endpoint or self._follow is not None or self._ctx is None:
            return
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.connect(self._cfg.follow_endpoint)
        for prefix in topic_prefixes():  # every report; not the relay's greetings of subscribers
            sock.setsockopt(zmq.SUBSCRIBE, prefix)
        self._follow = sock
        self._follow_task = self.create_task(self._follow_loop(sock), log_msg="bridge_follow_loop")

    def _close_follow(self) -> None:
        if self._follow_task is not None:
            self._follow_task.cancel()
            self._follow_task = None
        if self._follow is not None:
            self._follow.close(0)
            self._follow = None

    async def _follow_loop(self, sock: zmq.asyncio.Socket) -> None:
        recv = sock.recv_multipart
        while True:
            parts = await recv()
            self._on_followed_frame(parts)

    def _drain_follow(self) -> None:
        """What the old leader published and this loop has not read yet (sync, no futures)."""
        if self._follow is None:
            return
        recv = zmq.Socket.shadow(self._follow.underlying).recv_multipart
        while True:
            try:
                parts = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._on_followed_frame(parts)

    def _on_followed_frame(self, parts: list[bytes]) -> None:
        try:
            self._apply_followed(report_decoder.decode(parts[-1]))
        except Exception:  # noqa: BLE001 - a bad frame from a peer is counted, never fatal
            self.bad_frames += 1

    def _apply_followed(self, rep: ExecutionReport) -> None:
        """One report the leader published, applied as if the broker had sent it here."""
        if rep.reason == _STALE_EPOCH:
            return
        coid = rep.client_order_id
        shadow = self.shadow
        if rep.kind is ExecKind.REJECTED and self.book is not None and self.book.held.is_amend(coid) \
                and self._cache.order(ClientOrderId(coid)) is None:
            self._amend_ended(coid)  # the leader refused a cancel or replace this standby holds
            return
        if not shadow.holds_order(coid):
            order = self._cache.order(ClientOrderId(coid))
            if order is None or order.status == OrderStatus.INITIALIZED:
                shadow.keep_early(rep)  # its signal has not reached this client yet
                return
        shadow.answer(coid, rep.kind)
        if (rep.kind is ExecKind.PARTIAL_FILL or rep.kind is ExecKind.FILL) and rep.last_qty <= 0.0:
            return  # a recovered state, not a fill: the promotion's sweep brings the real fills
        self.followed_fills.keep(rep)  # an order of this engine's group: published, maybe not logged
        self._on_report(rep)

    def _amend_ended(self, amend_id: str) -> None:
        book = self.book
        original = book.held.refused(amend_id)
        acc = book.replacing.get(original) if original is not None else None
        if acc is not None and client_order_id_for(acc.signal_id) == amend_id:
            del book.replacing[original]

    def _open_state(self, coid: str) -> bool | None:
        order = self._cache.order(ClientOrderId(coid))
        if order is None:
            return None
        return not order.is_closed

    async def promote(self, epoch: int, timeout_ms: int) -> dict:
        """Become the submitting engine under `epoch` (see `standby.py`); raises when the broker
        does not answer, and stays a standby."""
        t0 = time.perf_counter()
        if not self.standby:
            self._epoch = epoch
            return {"epoch": epoch, "resent": 0, "adopted": 0, "swept": 0, "took_ms": 0.0}
        self._drain_follow()
        self._close_follow()
        self._epoch = epoch
        self.standby = False
        self.book.muted = False  # from here the broker reports to this engine: publish them
        ids = list(self.shadow.held)
        ids.extend(o.client_order_id.value for o in self._cache.orders_open(venue=self.venue)
                   if o.client_order_id.value not in self.shadow.held)
        held = self.book.held
        replaces = {orig: client_order_id_for(acc.signal_id) for orig, acc in self.book.replacing.items()}
        asked = set(ids)  # the held amends' orders are asked about too (a replacement the old leader sent)
        ids.extend(c for c in (*held.cancels, *replaces, *replaces.values()) if c not in asked)
        since = max(0, time.time_ns() - _QUERY_MARGIN_NS)
        answer = await self._query(QueryOrders(epoch, self._engine, since, ids, group=self._group), timeout_ms)
        if answer is None:
            self.demote()
            raise TimeoutError("the broker did not list its orders in time; staying standby")
        plan = plan_promotion(self.shadow.unanswered(), answer, self._open_state, self._seen_exec_ids)
        # the held amends: planned before the broker's word is applied (a replace's original CANCELED
        # submits its replacement, which must find the broker's copy of it: held_amends.py)
        self.takeover = plan_takeover(list(held.cancels), replaces, answer, [i.client_order_id for i in plan.send])
        self._at_broker = dict(self.takeover.adopt)
        for rep in plan.reports:
            self._on_report(rep)
        send = self._dealer.send
        for intent in plan.send:
            send(encode(SubmitOrder(epoch, self._engine, intent, self._group)))
            self.sent += 1
        self.shadow.clear()
        self.resent += len(plan.send)
        self.adopted += plan.adopted
        self.in_flight_kept += plan.in_flight
        self.swept += plan.swept
        self.promotions += 1
        return {"epoch": epoch, "resent": len(plan.send), "adopted": plan.adopted, "swept": plan.swept,
                "in_flight": plan.in_flight, "amend_cancels": len(self.takeover.cancel),
                "amend_refused": len(self.takeover.refuse), "amend_adopted": len(self.takeover.adopt),
                "took_ms": round((time.perf_counter() - t0) * 1e3, 3),
                "followed": self.followed_fills.take()}  # last: a promotion that failed keeps them

    def demote(self) -> None:
        """Stop sending at once; hold from now on and follow the new leader's reports."""
        self.standby = True
        self._at_broker.clear()
        if self.book is not None:
            self.book.muted = True
        self._open_follow()

    # ---------------------------------------------------------------- reconciliation and in-flight checks

    def _status_report(self, snap: OrderSnapshot) -> OrderStatusReport | None:
        status = _STATUS.get(snap.kind)  # UNKNOWN -> no report: Nautilus keeps waiting
        order = self._cache.order(ClientOrderId(snap.client_order_id))
        if status is None or order is None:
            return None
        book = self.book
        if status == OrderStatus.CANCELED and book is not None and book.deadlines.waiting(snap.client_order_id):
            # the broker's word on a cancel we wait for: the CANCELED Nautilus makes of it is the broker's
            key = (snap.client_order_id, ExecKind.CANCELED)
            if key not in book.raw:
                self._keep_raw(key, ExecutionReport(
                    kind=ExecKind.CANCELED, client_order_id=snap.client_order_id, cum_qty=snap.cum_qty,
                    reason="RECOVERED", ts_ns=self._clock.timestamp_ns()))  # fmt: skip
        prec = order.quantity.precision
        filled = snap.cum_qty
        avg_px: Decimal | None = None
        if filled > 0.0:
            # no fill history from the broker: priced at the order's own limit, else the symbol's last fill
            px = float(order.price) if order.has_price else None
            if px is None and self.book is not None:
                px = self.book.last_px.get(order.instrument_id.symbol.value)
            if px is None:
                return None  # a fill we cannot price: let the broker's fill report speak
            avg_px = Decimal(str(px))
        now = self._clock.timestamp_ns()
        return OrderStatusReport(
            account_id=self.account_id,
            instrument_id=order.instrument_id,
            venue_order_id=order.venue_order_id or VenueOrderId(snap.client_order_id),
            order_side=order.side,
            order_type=order.order_type,
            time_in_force=order.time_in_force,
            order_status=status,
            quantity=Quantity(snap.cum_qty + snap.leaves_qty, prec) if status != OrderStatus.REJECTED else order.quantity,
            filled_qty=Quantity(filled, prec),
            report_id=UUID4(),
            ts_accepted=now,
            ts_last=now,
            ts_init=now,
            client_order_id=order.client_order_id,
            price=order.price if order.has_price else None,
            trigger_price=order.trigger_price if order.has_trigger_price else None,
            avg_px=avg_px,
        )

    async def generate_order_status_report(self, command: GenerateOrderStatusReport) -> OrderStatusReport | None:
        """Nautilus's in-flight check on one order. The broker's own fills of it, when it lists
        any, are applied as its live reports would have been (its exec ids and prices, deduped on
        exec id: never a fill Nautilus infers beside the broker's, which the ledger would count
        twice); otherwise the order's line becomes a status report."""
        if command.client_order_id is None:
            return None
        coid = command.client_order_id.value
        answer = await self.ask_about_order(coid)
        if answer is None:
            return None
        snap = next((s for s in answer.orders if s.client_order_id == coid), None)
        fills = [f for f in answer.fills if f.client_order_id == coid and f.exec_id]
        if not fills:
            return self._status_report(snap) if snap is not None else None
        for fill in fills:
            self._on_report(fill)
        if snap is not None and snap.kind is ExecKind.CANCELED:  # the rest canceled after those fills
            self._on_report(ExecutionReport(kind=ExecKind.CANCELED, client_order_id=coid, cum_qty=snap.cum_qty,
                                            reason="RECOVERED", ts_ns=self._clock.timestamp_ns()))
        return None

    async def generate_order_status_reports(self, command: GenerateOrderStatusReports) -> list[OrderStatusReport]:
        snaps = await self.query_broker()
        if not snaps:
            return []
        reports = []
        for snap in snaps:
            if command.open_only and snap.kind not in (ExecKind.NEW, ExecKind.PARTIAL_FILL):
                continue
            report = self._status_report(snap)
            if report is not None and (command.instrument_id is None or report.instrument_id == command.instrument_id):
                reports.append(report)
        return reports

    async def generate_fill_reports(self, command: GenerateFillReports) -> list[FillReport]:
        return []  # OrdersReport carries no fill history; fills arrive as broker reports

    async def generate_position_status_reports(
        self, command: GeneratePositionStatusReports
    ) -> list[PositionStatusReport]:
        return []


class BridgeExecClientFactory(LiveExecClientFactory):
    """Builds the bridge client; remembers the instances so the child can wire them to the strategy."""

    instances: dict[str, BridgeExecutionClient] = {}

    @staticmethod
    def create(  # type: ignore[override]
        loop: asyncio.AbstractEventLoop,
        name: str,
        config: BridgeExecClientConfig,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
    ) -> BridgeExecutionClient:
        client = BridgeExecutionClient(loop=loop, msgbus=msgbus, cache=cache, clock=clock, config=config)
        BridgeExecClientFactory.instances[name] = client
        return client
