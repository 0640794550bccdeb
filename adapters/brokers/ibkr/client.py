"""IBKR I/O: one ib_async `IB` connection to TWS / IB Gateway, on an asyncio loop of its own thread.

Everything here runs on that loop (the venue hands commands over with `call_soon_threadsafe`);
what it learns leaves as `ExecutionReport`s through `emit`.

- Identity: an order is sent with `orderRef` = its client order id; TWS echoes the ref on every
  execution and names the order by `permId` (stable across connections) in its statuses. Orders are
  found by ref or permId, never by the per-connection orderId alone.
- Fills are deduped on the execution's stem (`parsing.exec_key`): a live report, the same one
  again in a sweep, and a correction (`.02` of `.01`) are one fill. Commissions are kept by the
  same key.
- Connect, and after any drop reconnect every `reconnect_interval_ms`; every (re)connect asks
  TWS's open orders (`reqAllOpenOrders`: one the node sent that this session does not track, a
  predecessor's, is adopted by its orderRef: NEW, known, cancelable) and sweeps the executions
  (`reqExecutions`) before it takes new orders, so fills that happened while away are reported.
  An order sent and not acknowledged when the connection dropped is UNKNOWN until a fill or
  status names it.
- Refused before sending (REJECTED, never sent): not connected (NO_CONNECTION), in a maintenance
  window (BROKER_MAINTENANCE, or held until it ends with `hold_in_window`), an order TWS cannot
  take (SIZE_SPEC, PRICE_REQUIRED).
- Pacing: ib_async's client throttle, set to `max_messages_per_s` (IBKR allows 50 a second).
- The reconciler's view (`account_book`): the day's executions, the positions, and the account's
  values and portfolio, asked of TWS afresh (`reqExecutions`, `reqPositions`, `reqAccountUpdates`:
  TotalCashValue, per stock averageCost / unrealizedPNL / realizedPNL), fills judged from the start
  of TWS's day.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import deque
from typing import Callable

import msgspec
from ib_async import IB, Fill, Trade
from ib_async.ib import StartupFetch

from adapters.brokers.ibkr import parsing
from node.config import IbkrConfig
from node.errors import BrokerError
from node.instruments import DEFAULT_MULTIPLIERS, Multipliers
from node.messages import ExecKind, ExecutionReport, OrderIntent
from node.reasons import Reason
from node.reconcile import BrokerBook
from node.venue import refused, unknown

log = logging.getLogger("nae.broker.ibkr")

_EPS = 1e-9
_TICK_S = 0.1
_REJECT_CODES_CANCEL = frozenset({202})  # "Order Canceled": a cancel, not a refusal


class _Tracked(msgspec.Struct, kw_only=True):
    intent: OrderIntent
    sent_mono: float = 0.0
    perm_id: int = 0
    order_id: int = 0
    acked: bool = False
    done: bool = False
    unknown: bool = False
    replaced: bool = False
    exec_ids: dict[str, str] = {}  # execution stem -> the exec id first seen
    cum: float = 0.0
    px_sum: float = 0.0


class IbkrSession:
    def __init__(self, cfg: IbkrConfig, emit: Callable[[ExecutionReport], None],
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
                 multipliers: Multipliers = DEFAULT_MULTIPLIERS) -> None:
        self.cfg = cfg
        self.multipliers = multipliers  # the node's: an option's value when TWS names no multiplier
        self._emit = emit
        self._clock = clock
        self.ib = IB()
        self.ib.client.MaxRequests = cfg.max_messages_per_s
        self.ib.client.RequestsInterval = 1
        self._orders: dict[str, _Tracked] = {}
        self._by_perm: dict[int, str] = {}
        self._held: deque[OrderIntent] = deque()
        #: order refs TWS executed that this session did not send (another adapter before a restart)
        self._foreign_refs: set[str] = set()
        #: orders that came before the first executions sweep: a restarted adapter's re-drive may
        #: name an order its predecessor sent, so nothing goes out (or is refused) before TWS was asked
        self._swept_once = False
        self._before_sweep: deque[tuple[float, OrderIntent]] = deque()
        self.commissions: dict[str, float] = {}
        # fills whose commission report has not come yet (ib_async fills it into the Fill in place;
        # its event needs the order's openOrder first, so the tick reads the Fill too)
        self._awaiting_commission: dict[str, Fill] = {}
        self.positions: dict[str, float] = {}
        self.connected = False
        self.connects = 0
        self.swept_fills = 0
        self.corrections = 0
        self.orphan_fills = 0
        self.refused_window = 0
        self.adopted = 0  # open orders TWS held that this session had not sent (a predecessor's)
        self.foreign_open = 0  # open orders with no ref (not the node's), counted at each connect
        self.cancel_foreign = 0  # cancels not sent: the order was placed under another client id
        ib = self.ib
        ib.orderStatusEvent += self._on_status
        ib.execDetailsEvent += self._on_exec
        ib.commissionReportEvent += self._on_commission
        ib.disconnectedEvent += self._on_disconnected

    # ---------------------------------------------------------------- the loop

    async def run(self, stop: asyncio.Event) -> None:
        next_try = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if not self.connected and now >= next_try:
                await self._connect()
                next_try = now + self.cfg.reconnect_interval_ms / 1000
            self._tick(now)
            try:
                await asyncio.wait_for(stop.wait(), _TICK_S)
            except asyncio.TimeoutError:
                pass
        self.ib.disconnect()

    async def _connect(self) -> None:
        try:
            await self.ib.connectAsync(
                self.cfg.host, self.cfg.port, self.cfg.client_id, timeout=self.cfg.connect_timeout_ms / 1000,
                account=self.cfg.account, fetchFields=StartupFetch.POSITIONS,
            )  # fmt: skip
        except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
            log.warning("ibkr: no connection to %s:%s (%s)", self.cfg.host, self.cfg.port, type(exc).__name__)
            return
        self.connects += 1
        self.positions = {parsing.symbol_of(p.contract): float(p.position) for p in self.ib.positions()}
        # what TWS holds and what happened while away, before anything new is sent: the open orders
        # first (an adopted order's fills in the sweep are then its own, not an unknown ref's)
        if not await self.open_orders() or not await self.sweep():
            self.ib.disconnect()
            return
        self.connected = True
        if not self._swept_once:
            self._swept_once = True
            while self._before_sweep:
                _, intent = self._before_sweep.popleft()
                t = self._orders[intent.client_order_id]
                if t.acked or t.exec_ids or t.done:
                    continue  # TWS has it (a predecessor sent it): adopted, never sent again
                del self._orders[intent.client_order_id]
                self.submit(intent)

    async def open_orders(self) -> bool:
        """Every open order TWS holds for the account (`reqAllOpenOrders`): one the node sent (its
        orderRef a client order id) and this session does not track is adopted (NEW, by permId), so
        it is known (never sent again), listed open, and can be canceled; ib_async keeps its Trade,
        so its statuses arrive from now on. (ib_async forgets its trades on a disconnect: this
        binds them again on every reconnect.)"""
        try:
            trades = await asyncio.wait_for(self.ib.reqAllOpenOrdersAsync(), self.cfg.connect_timeout_ms / 1000)
        except (asyncio.TimeoutError, ConnectionError) as exc:
            log.warning("ibkr: open orders request failed (%s)", type(exc).__name__)
            return False
        for trade in trades:
            self._adopt(trade)
        return True

    def _adopt(self, trade: Trade) -> None:
        status = trade.orderStatus.status
        if status not in parsing.LIVE_STATUSES:
            return  # ended at TWS: its fills come with the sweep
        intent = parsing.intent_of(trade)
        if intent is None:
            self.foreign_open += 1  # no ref: placed by hand or by another program, not the node's
            return
        coid = intent.client_order_id
        t = self._orders.get(coid)
        if t is None:
            t = self._orders[coid] = _Tracked(intent=intent)
            self.adopted += 1
        if t.done:
            return
        t.order_id = trade.order.orderId or t.order_id
        perm = trade.order.permId or trade.orderStatus.permId
        if perm:
            t.perm_id = perm
            self._by_perm[perm] = coid
        self._foreign_refs.discard(coid)
        if not t.acked:
            self._ack(t)

    async def sweep(self) -> bool:
        """Every execution TWS has for today, each reported once (deduped by its stem)."""
        try:
            fills = await asyncio.wait_for(self.ib.reqExecutionsAsync(), self.cfg.connect_timeout_ms / 1000)
        except (asyncio.TimeoutError, ConnectionError) as exc:
            log.warning("ibkr: executions sweep failed (%s)", type(exc).__name__)
            return False
        for fill in fills:
            if self._on_fill(fill):
                self.swept_fills += 1
            if fill.commissionReport and fill.commissionReport.execId:
                self.commissions[parsing.exec_key(fill.commissionReport.execId)] = fill.commissionReport.commission
        return True

    async def account_book(self) -> BrokerBook:
        """TWS's own view of the account now (see the module docstring); BrokerError when TWS is away."""
        if not self.connected:
            raise BrokerError("ibkr: not connected to TWS / IB Gateway", Reason.NO_CONNECTION, retriable=True)
        timeout = self.cfg.connect_timeout_ms / 1000
        try:
            fills = await asyncio.wait_for(self.ib.reqExecutionsAsync(), timeout)
            positions = await asyncio.wait_for(self.ib.reqPositionsAsync(), timeout)
            account = self.cfg.account or next(iter(self.ib.managedAccounts()), "")
            try:  # a fresh download each run (accountDownloadEnd), never left subscribed between runs
                await asyncio.wait_for(self.ib.reqAccountUpdatesAsync(account), timeout)
            finally:
                self.ib.client.reqAccountUpdates(False, account)
            values = self.ib.accountValues(account)
            portfolio = self.ib.portfolio(account)
        except (asyncio.TimeoutError, ConnectionError) as exc:
            raise BrokerError("ibkr: the account could not be read (" + type(exc).__name__ + ")",
                              Reason.NO_CONNECTION, retriable=True) from exc
        ours = {coid: (t.intent.strategy_id, float(t.intent.quantity or 0.0), t.acked and not t.done)
                for coid, t in self._orders.items()}
        # TWS sends an execution's commission report after it (after execDetailsEnd, for a request):
        # by now, after two more requests, it is in ib_async's own fill of that execution
        commissions = dict(self.commissions)
        for f in self.ib.fills():
            if f.commissionReport and f.commissionReport.execId:
                commissions[parsing.exec_key(f.execution.execId)] = float(f.commissionReport.commission)
        return parsing.account_book(fills, positions, ours, self._by_perm, parsing.day_start_ns(self._clock()),
                                    time.time_ns(), values, portfolio, commissions, self.multipliers)

    def _tick(self, now: float) -> None:
        """UNKNOWN after the ack deadline; held orders out once the window is over."""
        limit = self.cfg.ack_timeout_ms / 1000
        for since, intent in self._before_sweep:
            t = self._orders[intent.client_order_id]
            if not t.unknown and now - since > limit:  # TWS not asked yet: it may have this one
                t.unknown = True
                self._emit(unknown(intent, Reason.NO_CONNECTION, time.time_ns()))
        for t in self._orders.values():
            if not t.acked and not t.done and not t.unknown and t.sent_mono and now - t.sent_mono > limit:
                t.unknown = True
                self._emit(unknown(t.intent, Reason.TIMEOUT, time.time_ns()))
        if self._awaiting_commission:
            for key, fill in list(self._awaiting_commission.items()):
                if fill.commissionReport.execId:
                    self.commissions[key] = fill.commissionReport.commission
                    del self._awaiting_commission[key]
        if self._held and self.connected and parsing.in_window(self._clock(), self.cfg.windows) is None:
            while self._held:
                self._send(self._held.popleft())

    # ---------------------------------------------------------------- commands (on the loop)

    def submit(self, intent: OrderIntent) -> None:
        coid = intent.client_order_id
        if coid in self._orders:
            return
        self._orders[coid] = _Tracked(intent=intent)
        if not self._swept_once:
            self._before_sweep.append((time.monotonic(), intent))
            return
        if coid in self._foreign_refs:  # TWS already executed it: never a second order
            self._refuse(coid, Reason.DUPLICATE_CLIENT_ORDER_ID)
            return
        window = parsing.in_window(self._clock(), self.cfg.windows)
        if window is not None:
            if self.cfg.hold_in_window:
                self._held.append(intent)
                return
            self.refused_window += 1
            self._refuse(coid, Reason.BROKER_MAINTENANCE)
            return
        self._send(intent)

    def _send(self, intent: OrderIntent) -> None:
        coid = intent.client_order_id
        t = self._orders[coid]
        order, why = parsing.order_of(intent, self.cfg.account)
        if order is None:
            self._refuse(coid, why)
            return
        if not self.connected or not self.ib.isConnected():
            self._refuse(coid, Reason.NO_CONNECTION)
            return
        t.sent_mono = time.monotonic()
        try:
            trade = self.ib.placeOrder(parsing.contract_of(intent.symbol), order)
        except ConnectionError:  # the socket went between the check and the send: maybe sent
            t.unknown = True
            self._emit(unknown(intent, Reason.NO_CONNECTION, time.time_ns()))
            return
        t.order_id = trade.order.orderId

    def cancel(self, coid: str) -> None:
        t = self._orders.get(coid)
        if t is None or t.done or not self.connected:
            return
        trade = next((tr for tr in self.ib.trades() if tr.order.orderRef == coid), None)
        if trade is not None and trade.order.clientId not in (0, self.cfg.client_id):
            # placed under another client id: TWS names orders per client id, so this id, sent as
            # ours, could cancel another order of ours. Not sent: the engine's cancel deadline tells
            self.cancel_foreign += 1
            log.warning("ibkr: cancel of %s not sent: placed under client id %s", coid, trade.order.clientId)
        elif trade is not None:
            self.ib.cancelOrder(trade.order)
        elif t.order_id:
            self.ib.client.cancelOrder(t.order_id)

    def replace(self, coid: str, intent: OrderIntent) -> None:
        t = self._orders.get(coid)
        if t is None or t.done:
            if intent.client_order_id not in self._orders:
                self._orders[intent.client_order_id] = _Tracked(intent=intent)
                self._refuse(intent.client_order_id, Reason.UNKNOWN_ORDER)
            return
        t.replaced = True
        self.cancel(coid)
        self.submit(intent)

    # ---------------------------------------------------------------- TWS events (on the loop)

    def _on_status(self, trade: Trade) -> None:
        coid = trade.order.orderRef
        t = self._orders.get(coid)
        if t is None or t.done:
            return
        st = trade.orderStatus
        if st.permId:
            t.perm_id = st.permId
            self._by_perm[st.permId] = coid
        if st.status in ("PreSubmitted", "Submitted") and not t.acked:
            self._ack(t)
            return
        ended = parsing.kind_of_status(st.status)
        if ended is None:
            return
        kind, reason = ended
        codes = [e.errorCode for e in trade.log if e.errorCode]
        if not t.acked and codes and codes[-1] not in _REJECT_CODES_CANCEL:
            kind, reason = ExecKind.REJECTED, Reason.VENUE_REJECT.value
        elif kind is ExecKind.CANCELED and t.replaced:
            reason = Reason.REPLACED.value
        self._end(t, kind, reason)

    def _on_exec(self, trade: Trade, fill: Fill) -> None:
        self._on_fill(fill)

    def _on_commission(self, trade: Trade, fill: Fill, report) -> None:
        self.commissions[parsing.exec_key(report.execId)] = report.commission

    def _on_disconnected(self) -> None:
        if self.connected:
            log.warning("ibkr: connection lost; reconnecting every %s ms", self.cfg.reconnect_interval_ms)
        self.connected = False
        for t in self._orders.values():
            if t.sent_mono and not t.acked and not t.done and not t.unknown:
                t.unknown = True  # sent, no word back: TWS may have it
                self._emit(unknown(t.intent, Reason.NO_CONNECTION, time.time_ns()))

    def _on_fill(self, fill: Fill) -> bool:
        ex = fill.execution
        coid = ex.orderRef or self._by_perm.get(ex.permId, "")
        t = self._orders.get(coid)
        if t is None:
            self.orphan_fills += 1
            if ex.orderRef:
                self._foreign_refs.add(ex.orderRef)
            return False
        key = parsing.exec_key(ex.execId)
        first = t.exec_ids.get(key)
        if first is not None:
            if first != ex.execId:
                self.corrections += 1  # a correction of a fill already counted: never twice
            return False
        t.exec_ids[key] = ex.execId
        if fill.commissionReport.execId:
            self.commissions[key] = fill.commissionReport.commission
        else:
            self._awaiting_commission[key] = fill
        if ex.permId:
            t.perm_id = ex.permId
            self._by_perm[ex.permId] = coid
        if not t.acked:
            self._ack(t)
        qty = float(t.intent.quantity or 0.0)
        t.cum += float(ex.shares)
        t.px_sum += float(ex.shares) * float(ex.price)
        full = t.cum >= qty - _EPS
        self._emit(ExecutionReport(
            kind=ExecKind.FILL if full else ExecKind.PARTIAL_FILL, client_order_id=coid,
            venue_order_id=str(t.perm_id), exec_id=key, symbol=t.intent.symbol, side=t.intent.side,
            last_qty=float(ex.shares), last_px=float(ex.price), cum_qty=t.cum, leaves_qty=max(qty - t.cum, 0.0),
            avg_px=t.px_sum / t.cum, ts_ns=time.time_ns(),
        ))  # fmt: skip
        if full:
            t.done = True
        return True

    # ---------------------------------------------------------------- reports

    def _ack(self, t: _Tracked) -> None:
        t.acked = True
        t.unknown = False
        i = t.intent
        self._emit(ExecutionReport(kind=ExecKind.NEW, client_order_id=i.client_order_id, venue_order_id=str(t.perm_id),
                                   symbol=i.symbol, side=i.side, leaves_qty=float(i.quantity or 0.0),
                                   ts_ns=time.time_ns()))

    def _end(self, t: _Tracked, kind: ExecKind, reason: str) -> None:
        t.done = True
        i = t.intent
        self._emit(ExecutionReport(kind=kind, client_order_id=i.client_order_id, venue_order_id=str(t.perm_id),
                                   symbol=i.symbol, side=i.side, cum_qty=t.cum,
                                   avg_px=t.px_sum / t.cum if t.cum else 0.0, reason=reason, ts_ns=time.time_ns()))

    def _refuse(self, coid: str, reason: Reason | str) -> None:
        t = self._orders[coid]
        t.done = True
        self._emit(refused(t.intent, reason, time.time_ns()))
