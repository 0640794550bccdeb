"""The LEAN bridge's order book: LEAN order events in, node execution reports out (pure logic).

One `_Tracked` per client order id. Rules, each tied to a LEAN behaviour (notes/peers.md):

- A submit LEAN does not answer within `ack_timeout_ns` (no event, no status listing) becomes
  UNKNOWN (reason TIMEOUT), and so does a cancel not answered within `cancel_timeout_ns`; a later
  word from LEAN resolves it. Nothing is ever made REJECTED or CANCELED without LEAN saying so.
- Fills are deduped three ways: the same (session, order id, event id) twice (a replayed frame);
  a fill on an order LEAN already called Filled, Canceled or Invalid; a fill that would take the
  cumulative quantity past the order's (Lean#2204: OANDA sends the same Filled twice;
  Lean.Brokerages.Alpaca#61: one fill became three Filled events, each with a new event id).
- After a LEAN restart (a new `session_id`), the `StatusReport` restores the link between LEAN's
  new order ids and our client order ids (LEAN does not restore tags: Lean#5777; the algorithm
  keeps them in its ObjectStore by broker id). An order we sent before the restart that LEAN no
  longer lists open becomes UNKNOWN (reason LEAN_RESTARTED): it may have filled meanwhile.
"""

from __future__ import annotations

import heapq

from adapters.engines.lean import protocol as p
from adapters.engines.lean.parsing import (
    DONE_STATUSES,
    FILL_STATUSES,
    LEAN_RESTARTED,
    exec_id,
    kind_for_status,
    reject_reason,
    snapshot_kind,
)
from node.messages import ExecKind, ExecutionReport, OrderIntent, OrderSnapshot
from node.reasons import Reason

_EPS = 1e-9
_ACK = 0
_CANCEL = 1


class _Tracked:
    """What the bridge knows of one order."""

    __slots__ = ("intent", "qty", "cum", "px_sum", "kind", "done", "session", "order_id", "answered",
                 "ack_due", "cancel_due", "seen")

    def __init__(self, intent: OrderIntent) -> None:
        self.intent = intent
        self.qty = intent.quantity or 0.0  # LEAN's order quantity once it tells (notional orders)
        self.cum = 0.0
        self.px_sum = 0.0
        self.kind: ExecKind | None = None
        self.done = False
        self.session = ""
        self.order_id = -1
        self.answered = False  # LEAN said something about this order
        self.ack_due = 0
        self.cancel_due = 0
        self.seen: set[tuple[str, int, int]] = set()


class LeanOrderBook:
    def __init__(self, ack_timeout_ns: int, cancel_timeout_ns: int) -> None:
        self._ack_ns = ack_timeout_ns
        self._cancel_ns = cancel_timeout_ns
        self.orders: dict[str, _Tracked] = {}
        self._by_lean_id: dict[tuple[str, int], str] = {}
        self._timers: list[tuple[int, str, int]] = []  # (due_ns, coid, _ACK|_CANCEL), lazily deleted
        self.fills: list[ExecutionReport] = []
        self.duplicate_events = 0
        self.duplicate_fills = 0
        self.ignored_events = 0
        self.orphan_events = 0
        self.timeouts = 0

    # ---------------------------------------------------------------- commands going out

    def submitted(self, intent: OrderIntent, now_ns: int) -> None:
        """A PlaceOrder left for LEAN: wait `ack_timeout` for its first answer."""
        t = self.orders.get(intent.client_order_id)
        if t is None:
            t = self.orders[intent.client_order_id] = _Tracked(intent)
        t.ack_due = now_ns + self._ack_ns
        heapq.heappush(self._timers, (t.ack_due, intent.client_order_id, _ACK))

    def not_sent(self, intent: OrderIntent, now_ns: int, why: str) -> ExecutionReport:
        """No LEAN peer to send to: the order never left the node, so REJECTED is the truth."""
        t = self.orders.setdefault(intent.client_order_id, _Tracked(intent))
        t.kind, t.done = ExecKind.REJECTED, True
        return self._report(t, ExecKind.REJECTED, Reason.VENUE_UNAVAILABLE.value + ": " + why, now_ns)

    def cancel_sent(self, client_order_id: str, now_ns: int) -> bool:
        """A CancelOrder left for LEAN: wait `cancel_timeout` for LEAN to say Canceled (or Filled)."""
        t = self.orders.get(client_order_id)
        if t is None or t.done:
            return False
        t.cancel_due = now_ns + self._cancel_ns
        heapq.heappush(self._timers, (t.cancel_due, client_order_id, _CANCEL))
        return True

    # ---------------------------------------------------------------- LEAN's word coming in

    def on_event(self, ev: p.OrderEvent, now_ns: int) -> ExecutionReport | None:
        """One LEAN OrderEvent -> the report to send on, or None (duplicate, no-op, orphan)."""
        coid = ev.client_order_id or self._by_lean_id.get((ev.session_id, ev.order_id), "")
        t = self.orders.get(coid)
        if t is None:
            self.orphan_events += 1
            return None
        key = (ev.session_id, ev.order_id, ev.event_id)
        if key in t.seen:
            self.duplicate_events += 1
            return None
        t.seen.add(key)
        if ev.order_id >= 0:
            t.session, t.order_id = ev.session_id, ev.order_id
            self._by_lean_id[(ev.session_id, ev.order_id)] = coid
        t.answered = True
        t.ack_due = 0
        if ev.order_quantity:
            t.qty = abs(ev.order_quantity)
        status = ev.status
        if status in FILL_STATUSES:
            return self._on_fill(t, ev, now_ns)
        kind = kind_for_status(status)
        if kind is None or t.done or (kind is ExecKind.NEW and t.kind in (ExecKind.NEW, ExecKind.PARTIAL_FILL)):
            self.ignored_events += 1
            return None
        t.kind = kind
        reason = ""
        if status in DONE_STATUSES:
            t.done, t.cancel_due = True, 0
            if kind is ExecKind.REJECTED:
                reason = reject_reason(ev.message)
        return self._report(t, kind, reason, now_ns, ev)

    def _on_fill(self, t: _Tracked, ev: p.OrderEvent, now_ns: int) -> ExecutionReport | None:
        qty = abs(ev.fill_quantity)
        if qty <= 0.0:
            self.ignored_events += 1
            return None
        if t.done or (t.qty > 0.0 and t.cum + qty > t.qty + _EPS):
            self.duplicate_fills += 1  # the same fill again under a new event id (Lean#2204)
            return None
        t.cum += qty
        t.px_sum += qty * ev.fill_price
        kind = ExecKind.FILL if ev.status == p.FILLED else ExecKind.PARTIAL_FILL
        t.kind = kind
        if kind is ExecKind.FILL:
            t.done, t.cancel_due = True, 0
        rep = ExecutionReport(
            kind=kind,
            client_order_id=t.intent.client_order_id,
            venue_order_id=_venue_id(ev.session_id, ev.order_id),
            exec_id=exec_id(ev.session_id, ev.order_id, ev.event_id),
            symbol=t.intent.symbol,
            side=t.intent.side,
            last_qty=qty,
            last_px=ev.fill_price,
            cum_qty=t.cum,
            leaves_qty=0.0 if kind is ExecKind.FILL else max(t.qty - t.cum, 0.0),
            avg_px=t.px_sum / t.cum,
            ts_ns=_ts(ev, now_ns),
        )
        self.fills.append(rep)
        return rep

    def on_status(self, report: p.StatusReport, restarted: bool, now_ns: int) -> list[ExecutionReport]:
        """Take LEAN's list: relink LEAN's (new) order ids to our orders; resolve what it settles."""
        out: list[ExecutionReport] = []
        listed: set[str] = set()
        for o in report.orders:
            t = self.orders.get(o.client_order_id)
            if t is None:
                continue
            listed.add(o.client_order_id)
            if o.order_id >= 0:
                t.session, t.order_id = report.session_id, o.order_id
                self._by_lean_id[(report.session_id, o.order_id)] = o.client_order_id
            if o.quantity:
                t.qty = abs(o.quantity)
            if o.status == p.UNKNOWN:
                if not t.done and t.kind is not ExecKind.UNKNOWN:
                    t.kind, t.ack_due = ExecKind.UNKNOWN, 0
                    out.append(self._report(t, ExecKind.UNKNOWN, LEAN_RESTARTED, now_ns))
                continue
            t.answered, t.ack_due = True, 0
            if not t.done and t.kind in (None, ExecKind.UNKNOWN) and o.status not in DONE_STATUSES:
                kind = snapshot_kind(o.status, o.filled_quantity)
                if kind is ExecKind.NEW:  # LEAN has it open: the ack we missed
                    t.kind = kind
                    out.append(self._report(t, kind, "", now_ns))
        if restarted:
            for coid, t in self.orders.items():
                if coid not in listed and t.answered and not t.done and t.kind is not ExecKind.UNKNOWN:
                    t.kind, t.ack_due, t.cancel_due = ExecKind.UNKNOWN, 0, 0
                    out.append(self._report(t, ExecKind.UNKNOWN, LEAN_RESTARTED, now_ns))
        return out

    # ---------------------------------------------------------------- time

    def next_due_ns(self) -> int | None:
        timers = self._timers
        while timers and not self._live(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def expire(self, now_ns: int) -> list[ExecutionReport]:
        """Submits and cancels LEAN left unanswered past their deadline -> UNKNOWN (TIMEOUT)."""
        out: list[ExecutionReport] = []
        timers = self._timers
        while timers and timers[0][0] <= now_ns:
            timer = heapq.heappop(timers)
            if not self._live(timer):
                continue
            t = self.orders[timer[1]]
            if timer[2] == _ACK:
                t.ack_due = 0
            else:
                t.cancel_due = 0
            self.timeouts += 1
            if t.kind is not ExecKind.UNKNOWN:
                t.kind = ExecKind.UNKNOWN
                out.append(self._report(t, ExecKind.UNKNOWN, Reason.TIMEOUT.value, now_ns))
        return out

    def _live(self, timer: tuple[int, str, int]) -> bool:
        t = self.orders.get(timer[1])
        if t is None or t.done:
            return False
        return (t.ack_due if timer[2] == _ACK else t.cancel_due) == timer[0]

    # ---------------------------------------------------------------- views

    def snapshot(self) -> list[OrderSnapshot]:
        """Every order the bridge knows, as it knows it (UNKNOWN where LEAN has not settled it)."""
        out = []
        for coid, t in self.orders.items():
            kind = t.kind if t.kind is not None else ExecKind.UNKNOWN
            leaves = 0.0 if t.done else max(t.qty - t.cum, 0.0)
            out.append(OrderSnapshot(coid, kind, t.cum, leaves))
        return out

    def _report(
        self, t: _Tracked, kind: ExecKind, reason: str, now_ns: int, ev: p.OrderEvent | None = None
    ) -> ExecutionReport:
        return ExecutionReport(
            kind=kind,
            client_order_id=t.intent.client_order_id,
            venue_order_id=_venue_id(t.session, t.order_id) if t.order_id >= 0 else "",
            symbol=t.intent.symbol,
            side=t.intent.side,
            cum_qty=t.cum,
            leaves_qty=0.0 if t.done else max(t.qty - t.cum, 0.0),
            avg_px=t.px_sum / t.cum if t.cum else 0.0,
            reason=reason,
            ts_ns=_ts(ev, now_ns) if ev is not None else now_ns,
        )


def _venue_id(session_id: str, order_id: int) -> str:
    return "LEAN-" + session_id[:8] + "-" + str(order_id)


def _ts(ev: p.OrderEvent, now_ns: int) -> int:
    return ev.utc_ms * 1_000_000 if ev.utc_ms > 0 else now_ns
