"""The bridge strategy: accepted signals in as Nautilus orders, Nautilus order events out as our reports.

Runs inside the kernel child on the node's loop thread (Nautilus is single-threaded by design).
`kernel_main` reads `SignalAccepted` frames from the engine's PULL socket and calls
`BridgeStrategy.on_accepted`; the strategy sizes the order (`parsing.plan_order`), builds it with
`self.order_factory` under the deterministic `ClientOrderId(client_order_id_for(signal_id))` and
calls `submit_order`, so every order passes Nautilus's RiskEngine and ExecutionEngine.

Events go out once Nautilus has applied them to its order state machine: each `on_order_*` handler
publishes one `ExecutionReport` on the PUB socket as multipart `[event_topic(kind, strategy_id),
msgpack report]`. When the event came from a broker report, the broker's own report (exact prices,
exec_id, cum/leaves/avg) is published, enriched with strategy_id, request_id and signal_id; events
Nautilus made itself (a RiskEngine denial, an in-flight resolution) are built from the order.

A cancel signal (node.amends) cancels the original through Nautilus (`cancel_order`: the exec client
sends our CancelOrder; the broker's CANCELED comes back as the original's report); it is refused with
a REJECTED report on its own client order id when the original is unknown here, another strategy's,
symbol's or side's, or finished. A replace (a new client order id, which Nautilus's `modify_order`
cannot give) is a cancel of the original, then, once its CANCELED is in (published with reason
REPLACED), the new order under the replace's own id: the two are never both live. It is refused
(on its own id) for the reasons above, AMEND_MISMATCH for another order type, AMEND_NOT_LIVE for an
original not yet acknowledged, UNKNOWN or already being replaced, and, after the cancel went out,
AMEND_ORDER_DONE when the original fills, is rejected or expires instead, AMEND_NOT_LIVE when the
broker refuses the cancel of a live original. A standby child cancels nothing (its leader does): it
holds the cancels and replaces it takes (`held_amends.py`) and, once promoted, `take_over` sends the
cancels of originals the broker still lists open and completes or refuses the replaces; `cancel_open`
cancels every open order of one strategy, or all (the kill switch's `--cancel-open`).

Every cancel sent has the native engine's deadline (`cancel_deadline.py`): no finishing word from the
broker within `cancel_timeout_ms` and the order is published UNKNOWN (CANCEL_TIMEOUT), so the
validator refuses new risk on the symbol until the broker's next word (its CANCELED, a fill, the
answer to another cancel). Nautilus's own in-flight check, which after its retries closes a
PENDING_CANCEL order with a CANCELED of its own making, is never published as CANCELED: the order is
UNKNOWN and the broker's later reports about it pass through as they come. A cancel of an order
Nautilus holds as PENDING_CANCEL or closed by itself is sent to the broker directly (Nautilus would
not send a second one; the order may still be there).

A signal whose client order id Nautilus already holds is counted as a duplicate and dropped before
`submit_order` (Nautilus would deny it too, but its denial path overwrites the cached order with
the denied copy, and a REJECTED report for a live order would mislead subscribers).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable

import msgspec
import zmq
from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.enums import OrderSide
from nautilus_trader.model.enums import OrderType as NtOrderType
from nautilus_trader.model.events import (
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
)
from nautilus_trader.model.identifiers import ClientOrderId, InstrumentId, Symbol, Venue
from nautilus_trader.model.objects import Price, Quantity
from nautilus_trader.trading.strategy import Strategy

from adapters.engines.nautilus.cancel_deadline import CancelDeadlines
from adapters.engines.nautilus.held_amends import HeldAmends, Takeover
from adapters.engines.nautilus.parsing import OrderPlan, plan_order, quantity_precision
from node.amends import original_order_id
from node.messages import AmendKind, ExecKind, ExecutionReport, OrderType, SignalAccepted, Side, encode, event_topic
from node.orders import client_order_id_for
from node.reasons import Reason

_replace = msgspec.structs.replace


class SignalMeta(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Who asked for an order: copied onto every report published about it."""

    strategy_id: str
    request_id: str
    signal_id: str
    symbol: str
    side: Side


class BridgeBook:
    """State the strategy and the exec client share inside the child (same thread, no locks).

    `meta` maps client order id -> SignalMeta; `raw` holds broker reports waiting for Nautilus to
    apply them (fills keyed by exec_id, other kinds by (client order id, kind)); `last_px` is the last fill
    price per symbol (used to size notional signals).
    """

    def __init__(self, pub: zmq.Socket, max_orders: int = 1_000_000, cancel_timeout_ms: int = 10_000) -> None:
        self._pub = pub
        self._max_orders = max_orders
        self.meta: dict[str, SignalMeta] = {}
        self.raw: dict[object, ExecutionReport] = {}
        self.last_px: dict[str, float] = {}
        #: orders Nautilus resolved locally (in-flight timeout): published UNKNOWN, broker reports pass through
        self.unknown: set[str] = set()
        #: a standby's book publishes nothing (the leader's reports are the feed; see standby.py)
        self.muted = False
        self.published = 0
        self.duplicates = 0
        self.rejected_local = 0
        self.amends: dict[str, None] = {}  # cancel signals taken (their own client order ids), oldest first
        self.cancels = 0
        #: replaces under way: original's client order id -> the replace (its new order waits for the
        #: original's CANCELED, so the two are never both live)
        self.replacing: dict[str, SignalAccepted] = {}
        self.replaces = 0
        #: cancels sent and not finished by the broker's word yet (cancel_deadline.py)
        self.deadlines = CancelDeadlines(cancel_timeout_ms * 1_000_000)
        #: sends our CancelOrder straight to the broker (set by the exec client): for an order Nautilus
        #: will not cancel again (PENDING_CANCEL, or closed by itself while the broker's word is unknown)
        self.send_cancel: Callable[[str], None] | None = None
        #: a standby's cancels and replaces, not sent (held_amends.py); a promotion carries them out
        self.held = HeldAmends()

    def remember(self, coid: str, meta: SignalMeta) -> None:
        meta_map = self.meta
        if len(meta_map) >= self._max_orders:
            del meta_map[next(iter(meta_map))]  # oldest first (dicts keep insertion order)
        meta_map[coid] = meta

    def publish(self, report: ExecutionReport) -> None:
        """Enrich with the signal's ids (when known) and send on the PUB socket."""
        if self.muted:
            return
        meta = self.meta.get(report.client_order_id)
        if meta is not None:
            report = _replace(
                report,
                strategy_id=meta.strategy_id,
                request_id=meta.request_id,
                signal_id=meta.signal_id,
                symbol=report.symbol or meta.symbol,
            )
        self._pub.send_multipart((event_topic(report.kind, report.strategy_id), encode(report)), zmq.NOBLOCK)
        self.published += 1


class BridgeStrategyConfig(StrategyConfig, frozen=True, kw_only=True):
    venue: str = "NAE"
    price_precision: int = 2
    reference_prices: dict[str, float] = {}


_SIDE = {Side.BUY: OrderSide.BUY, Side.SELL: OrderSide.SELL}
_NT_TYPE = {OrderType.MARKET: NtOrderType.MARKET, OrderType.LIMIT: NtOrderType.LIMIT,
            OrderType.STOP: NtOrderType.STOP_MARKET, OrderType.STOP_LIMIT: NtOrderType.STOP_LIMIT}
#: the reason Nautilus's in-flight check writes when it resolves a SUBMITTED order by itself
_INFLIGHT_REASON = "UNKNOWN"
#: the kernel timer that checks the cancels' deadlines
_DEADLINE_TIMER = "nae-cancel-deadlines"


class BridgeStrategy(Strategy):
    """Turns accepted signals into Nautilus orders and Nautilus order events into our reports."""

    def __init__(self, config: BridgeStrategyConfig, book: BridgeBook) -> None:
        super().__init__(config)
        self.book = book
        self._venue = Venue(config.venue)
        self._price_precision = config.price_precision
        self._fallback = dict(config.reference_prices)
        self._iids: dict[str, InstrumentId] = {}
        self.signals = 0

    def on_start(self) -> None:
        """Nothing to subscribe (signals arrive through `on_accepted`, called by the child's intake loop);
        the cancels' deadlines are checked on a timer of a tenth of the deadline (10 ms to 1 s)."""
        every_ms = min(1_000, max(10, self.book.deadlines.timeout_ns // 10_000_000))
        if _DEADLINE_TIMER not in self.clock.timer_names:  # a strategy started again keeps its timer
            self.clock.set_timer(_DEADLINE_TIMER, timedelta(milliseconds=every_ms), callback=self._check_deadlines)

    def on_stop(self) -> None:
        """Open orders stay with the broker: a stopping engine cancels nothing on its own."""

    # ---------------------------------------------------------------- signals in

    def on_accepted(self, acc: SignalAccepted) -> None:
        """One accepted signal -> one order through Nautilus (or a REJECTED report, or nothing)."""
        self.signals += 1
        sig = acc.signal
        coid_s = client_order_id_for(acc.signal_id)
        coid = ClientOrderId(coid_s)
        book = self.book
        if sig.amend is not None:
            self._on_cancel(acc, coid_s)
            return
        if self.cache.order_exists(coid):
            book.duplicates += 1
            return
        book.remember(coid_s, SignalMeta(sig.strategy_id, sig.request_id, acc.signal_id, sig.symbol, sig.side))
        iid = self._instrument_id(sig.symbol)
        if iid is None:
            self._reject_local(coid_s, Reason.UNKNOWN_SYMBOL)
            return
        plan = plan_order(sig, book.last_px, self._fallback)
        if type(plan) is not OrderPlan:
            self._reject_local(coid_s, plan)
            return
        self.submit_order(self._build(iid, coid, plan))

    def _on_cancel(self, acc: SignalAccepted, coid_s: str) -> None:
        """A cancel signal: the original canceled through Nautilus, or a REJECTED report on the
        cancel's own client order id (never on the original, whose state only the broker moves)."""
        book, sig = self.book, acc.signal
        if coid_s in book.amends:
            book.duplicates += 1
            return
        book.amends[coid_s] = None
        if len(book.amends) > 100_000:
            del book.amends[next(iter(book.amends))]
        book.remember(coid_s, SignalMeta(sig.strategy_id, sig.request_id, acc.signal_id, sig.symbol, sig.side))
        assert sig.amend is not None
        replace = sig.amend.kind is AmendKind.REPLACE
        original = original_order_id(sig.amend.original_request_id)
        order = self.cache.order(ClientOrderId(original))
        meta = book.meta.get(original)
        unknown = original in book.unknown or original in book.deadlines.timed_out
        if order is None or meta is None:
            self._reject_local(coid_s, Reason.AMEND_UNKNOWN_ORIGINAL)
        elif (meta.strategy_id, meta.symbol, meta.side) != (sig.strategy_id, sig.symbol, sig.side) or (
                replace and order.order_type != _NT_TYPE.get(sig.order_type)):
            self._reject_local(coid_s, Reason.AMEND_MISMATCH)
        elif order.is_closed and original not in book.unknown:
            self._reject_local(coid_s, Reason.AMEND_ORDER_DONE)
        elif replace and (not (order.is_open or (book.muted and order.is_inflight)) or unknown
                          or original in book.replacing or order.is_pending_cancel):
            # not acknowledged, UNKNOWN, being canceled or replaced (a standby's view may lag its
            # leader's: an original it holds unanswered is recorded; the leader's word decides)
            self._reject_local(coid_s, Reason.AMEND_NOT_LIVE)
        elif replace:
            if self.cache.order_exists(ClientOrderId(coid_s)):
                book.duplicates += 1
                return
            book.replacing[original] = acc
            book.replaces += 1
            if not book.muted:
                self._cancel(order)
            else:  # its leader cancels it; recorded so a promotion completes it (held_amends.py)
                book.held.hold_replace(original, coid_s)
        elif not book.muted:  # an UNKNOWN order too: it may be there
            self._cancel(order)
        else:  # a standby's leader cancels it; held, so a promotion sends it if the order is still open
            book.held.hold_cancel(original, coid_s)

    def take_over(self, plan: Takeover) -> int:
        """A promoted standby's held amends (held_amends.plan_takeover), once the broker's word the
        promotion applied went through Nautilus: refuse the replaces of originals never live, cancel
        the originals still open at the broker. Returns the cancels sent."""
        book = self.book
        for original in plan.refuse:
            acc = book.replacing.pop(original, None)
            if acc is not None:
                self._reject_local(client_order_id_for(acc.signal_id), Reason.AMEND_NOT_LIVE)
        sent = 0
        for original in plan.cancel:
            order = self.cache.order(ClientOrderId(original))
            if order is None:
                continue
            if order.is_open or order.is_closed:
                self._cancel(order)
            elif book.send_cancel is not None:  # just sent again (SUBMITTED): the cancel follows it
                book.send_cancel(original)
                book.cancels += 1
                book.deadlines.sent(original, self.clock.timestamp_ns())
            sent += 1
        book.held.clear()
        return sent

    def _cancel(self, order: Any) -> None:
        """Cancel one order at the broker and start its deadline: through Nautilus (`cancel_order`), or
        straight to the broker for an order Nautilus would not cancel again (PENDING_CANCEL, or closed
        by Nautilus itself while the broker's word is unknown)."""
        book = self.book
        coid = order.client_order_id.value
        if order.is_pending_cancel or order.is_closed:
            if book.send_cancel is not None:
                book.send_cancel(coid)
        else:
            self.cancel_order(order)
        book.cancels += 1
        book.deadlines.sent(coid, self.clock.timestamp_ns())

    def _check_deadlines(self, _event: Any = None) -> None:
        """Timer: the orders whose cancel's deadline passed with no finishing word, published UNKNOWN."""
        now = self.clock.timestamp_ns()
        for coid in self.book.deadlines.overdue(now, self._still_open):
            self._publish_unknown(coid, now)
            acc = self.book.replacing.pop(coid, None)
            if acc is not None:  # the original may still be live: its replace is refused, never left unanswered
                self._reject_local(client_order_id_for(acc.signal_id), Reason.AMEND_NOT_LIVE)

    def _still_open(self, coid: str) -> bool:
        order = self.cache.order(ClientOrderId(coid))
        return order is not None and not order.is_closed

    def _publish_unknown(self, coid: str, ts_ns: int) -> None:
        order = self.cache.order(ClientOrderId(coid))
        meta = self.book.meta.get(coid)
        self.book.publish(ExecutionReport(
            kind=ExecKind.UNKNOWN, client_order_id=coid, symbol=meta.symbol if meta is not None else "",
            side=meta.side if meta is not None else Side.BUY,
            cum_qty=float(order.filled_qty) if order is not None else 0.0, reason=Reason.CANCEL_TIMEOUT, ts_ns=ts_ns,
        ))  # fmt: skip

    def _replace_after(self, original: str, done: bool) -> None:
        """The original of a replace under way has ended: canceled (`done` False: the new order goes
        out now, the original being dead) or filled/rejected (the replace is refused AMEND_ORDER_DONE)."""
        acc = self.book.replacing.pop(original, None)
        if acc is None:
            return
        coid_s = client_order_id_for(acc.signal_id)
        if done:
            self._reject_local(coid_s, Reason.AMEND_ORDER_DONE)
            return
        iid = self._instrument_id(acc.signal.symbol)
        if iid is None:
            self._reject_local(coid_s, Reason.UNKNOWN_SYMBOL)
            return
        plan = plan_order(acc.signal, self.book.last_px, self._fallback)
        if type(plan) is not OrderPlan:
            self._reject_local(coid_s, plan)
            return
        # a standby submits too: its exec client holds the order, and a promotion sends it if the broker lacks it
        self.submit_order(self._build(iid, ClientOrderId(coid_s), plan))

    def cancel_open(self, strategy_id: str | None) -> list[str]:
        """Cancel every open order (of one strategy, or all); the client order ids asked. A standby
        cancels nothing."""
        if self.book.muted:
            return []
        ids = []
        meta = self.book.meta
        for order in self.cache.orders_open():
            coid = order.client_order_id.value
            m = meta.get(coid)
            if strategy_id is not None and (m is None or m.strategy_id != strategy_id):
                continue
            self._cancel(order)
            ids.append(coid)
        return ids

    def _instrument_id(self, symbol: str) -> InstrumentId | None:
        iid = self._iids.get(symbol)
        if iid is None:
            iid = InstrumentId(Symbol(symbol), self._venue)
            if self.cache.instrument(iid) is None:
                return None
            self._iids[symbol] = iid
        return iid

    def _build(self, iid: InstrumentId, coid: ClientOrderId, plan: OrderPlan) -> Any:
        factory = self.order_factory
        side = _SIDE[plan.side]
        qty = Quantity(plan.quantity, quantity_precision(plan.quantity))
        otype = plan.order_type
        prec = self._price_precision
        if otype is OrderType.MARKET:
            return factory.market(iid, side, qty, client_order_id=coid)
        if otype is OrderType.LIMIT:
            return factory.limit(iid, side, qty, Price(plan.limit_price, prec), client_order_id=coid)
        if otype is OrderType.STOP:
            return factory.stop_market(iid, side, qty, Price(plan.stop_price, prec), client_order_id=coid)
        return factory.stop_limit(
            iid, side, qty, Price(plan.limit_price, prec), Price(plan.stop_price, prec), client_order_id=coid
        )

    def _reject_local(self, coid: str, reason: str) -> None:
        self.book.rejected_local += 1
        self.book.publish(ExecutionReport(kind=ExecKind.REJECTED, client_order_id=coid, reason=reason))

    # ---------------------------------------------------------------- Nautilus events out

    def on_order_accepted(self, event: OrderAccepted) -> None:
        coid = event.client_order_id.value
        if coid in self.book.deadlines.timed_out:
            # an order UNKNOWN by its cancel's deadline listed open again (Nautilus's in-flight query of
            # the PENDING_CANCEL order; the adapter may not know of the cancel's answer): not the cancel's
            # answer, so not published (it would clear the validator's block on the symbol)
            self.book.raw.pop((coid, ExecKind.NEW), None)
            return
        self._publish_event(coid, ExecKind.NEW, event)

    def on_order_canceled(self, event: OrderCanceled) -> None:
        coid = event.client_order_id.value
        book = self.book
        if book.muted:
            book.held.finished(coid)
        if book.deadlines.waiting(coid) and (coid, ExecKind.CANCELED) not in book.raw:
            self._made_up_cancel(coid, event.ts_event)
            return
        book.deadlines.finished(coid)
        replaced = coid in book.replacing
        if replaced:
            raw = book.raw.get((coid, ExecKind.CANCELED))
            if raw is not None:
                book.raw[(coid, ExecKind.CANCELED)] = _replace(raw, reason=Reason.REPLACED)
        self._publish_event(coid, ExecKind.CANCELED, event, Reason.REPLACED if replaced else "")
        if replaced:
            self._replace_after(coid, done=False)

    def _made_up_cancel(self, coid: str, ts_ns: int) -> None:
        """Nautilus's in-flight check gave up on our cancel and closed the order with a CANCELED of its
        own: the broker never said so. The order is UNKNOWN (published once), its later broker reports
        pass through as they come (`book.unknown`), and a replace waiting on it is refused (the
        original may still be live)."""
        book = self.book
        book.unknown.add(coid)
        if book.deadlines.made_up_cancel(coid):
            self._publish_unknown(coid, ts_ns)
        acc = book.replacing.pop(coid, None)
        if acc is not None:
            self._reject_local(client_order_id_for(acc.signal_id), Reason.AMEND_NOT_LIVE)

    def on_order_expired(self, event: OrderExpired) -> None:
        coid = event.client_order_id.value
        self.book.deadlines.finished(coid)
        self.book.held.finished(coid)
        self._publish_event(coid, ExecKind.CANCELED, event)
        self._replace_after(coid, done=True)  # it ended by itself before our cancel: the replace is refused

    def on_order_cancel_rejected(self, event: OrderCancelRejected) -> None:
        """The broker refused the cancel of a replace's original: the replace is refused (the
        original lives on unchanged); its fill or cancel, if it comes, is the original's own report."""
        coid = event.client_order_id.value
        self.book.deadlines.finished(coid)  # the broker's word: the order lives on
        acc = self.book.replacing.pop(coid, None)
        if acc is not None:
            order = self.cache.order(event.client_order_id)
            done = order is None or order.is_closed
            self._reject_local(client_order_id_for(acc.signal_id),
                               Reason.AMEND_ORDER_DONE if done else Reason.AMEND_NOT_LIVE)

    def on_order_rejected(self, event: OrderRejected) -> None:
        coid = event.client_order_id.value
        book = self.book
        book.deadlines.finished(coid)
        book.held.finished(coid)
        raw = book.raw.pop((coid, ExecKind.REJECTED), None)
        if raw is not None:
            book.publish(raw)
        elif event.reason == _INFLIGHT_REASON:
            # Nautilus gave up waiting and resolved the order locally: the broker never said so,
            # so the truth is UNKNOWN; the broker's later reports about it are passed straight on.
            book.unknown.add(coid)
            book.publish(ExecutionReport(kind=ExecKind.UNKNOWN, client_order_id=coid, reason=Reason.TIMEOUT, ts_ns=event.ts_event))
        else:
            self._publish_event(coid, ExecKind.REJECTED, event, event.reason)
        self._replace_after(coid, done=True)

    def on_order_denied(self, event: OrderDenied) -> None:
        self._publish_event(event.client_order_id.value, ExecKind.REJECTED, event, "DENIED: " + event.reason)

    def on_order_filled(self, event: OrderFilled) -> None:
        coid = event.client_order_id.value
        order = self.cache.order(event.client_order_id)
        done = order is not None and order.is_closed
        raw = self.book.raw.pop(event.trade_id.value, None)
        if raw is not None:
            self.book.publish(raw)
        else:
            self._publish_fill(coid, event, order, done)
        if done:
            self.book.deadlines.finished(coid)
            self.book.held.finished(coid)
            self._replace_after(coid, done=True)

    def _publish_fill(self, coid: str, event: OrderFilled, order: Any, done: bool) -> None:
        self.book.publish(
            ExecutionReport(
                kind=ExecKind.FILL if done else ExecKind.PARTIAL_FILL,
                client_order_id=coid,
                venue_order_id=event.venue_order_id.value,
                exec_id=event.trade_id.value,
                last_qty=float(event.last_qty),
                last_px=float(event.last_px),
                cum_qty=float(order.filled_qty) if order is not None else 0.0,
                leaves_qty=float(order.leaves_qty) if order is not None else 0.0,
                avg_px=float(order.avg_px or 0.0) if order is not None else 0.0,
                ts_ns=event.ts_event,
            )
        )

    def _publish_event(self, coid: str, kind: ExecKind, event: Any, reason: str = "") -> None:
        raw = self.book.raw.pop((coid, kind), None)
        if raw is not None:
            self.book.publish(raw)
            return
        vid = getattr(event, "venue_order_id", None)
        self.book.publish(
            ExecutionReport(
                kind=kind,
                client_order_id=coid,
                venue_order_id=vid.value if vid is not None else "",
                reason=reason,
                ts_ns=event.ts_event,
            )
        )
