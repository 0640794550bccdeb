"""The native order manager: the fastest engine (pure logic, no I/O).

One accepted signal becomes one order with a deterministic client order id. Reports from the
broker move the order through `node.orders.apply_report`; every report that changed something is
returned enriched with the strategy, request and signal ids so subscribers can match it.

A report for an order the manager does not know (placed by an engine before it, and not adopted) is
booked, never dropped: the order is recorded from the report (`booked`) and the report published,
so the ledger, risk and subscribers get the fill. Such an order is never re-driven (its intent is
only what the report says).
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec

from node.daily_roll import Finished
from node.amends import AmendPlan, CancelPlan, ReplacePlan, original_order_id, plan_amend
from node.messages import AmendKind, ExecKind, ExecutionReport, OrderIntent, OrderSnapshot, OrderType, SignalAccepted
from node.open_orders import OpenOrder, order_of
from node.orders import DONE_STATES, STATE_OF_KIND, Applied, Order, OrderState, apply_report, client_order_id_for
from node.reasons import Reason

_replace = msgspec.structs.replace
_UNANSWERED = frozenset({OrderState.PENDING, OrderState.SUBMITTED, OrderState.UNKNOWN})
_SENT_UNANSWERED = frozenset({OrderState.SUBMITTED, OrderState.UNKNOWN})
BROKER_LOST = Reason.BROKER_LOST.value
TIMEOUT = Reason.TIMEOUT.value
CANCEL_TIMEOUT = Reason.CANCEL_TIMEOUT.value
MANUAL_RESOLUTION = "MANUAL_RESOLUTION"  # a stranded order closed on the operator's word (execnode orders resolve)


def intent_for(acc: SignalAccepted) -> OrderIntent:
    sig = acc.signal
    meta = sig.risk_meta
    return OrderIntent(
        client_order_id=client_order_id_for(acc.signal_id),
        signal_id=acc.signal_id,
        request_id=sig.request_id,
        strategy_id=sig.strategy_id,
        symbol=sig.symbol,
        side=sig.side,
        order_type=sig.order_type,
        quantity=sig.quantity,
        notional=sig.notional,
        limit_price=sig.limit_price,
        stop_price=sig.stop_price,
        max_slippage=meta.max_slippage if meta is not None else None,
        time_in_force=sig.time_in_force,
    )


class NativeOrderManager:
    """Orders by client order id; finished orders are kept (for dedupe) up to `keep_done`, and
    forgotten at the second daily roll after they finished (`roll`); open orders are always kept."""

    def __init__(self, keep_done: int = 1_000_000) -> None:
        self.orders: dict[str, Order] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self._keep_done = keep_done
        self._finished = Finished()  # the daily roll's view of `_done` (node.daily_roll)
        self.rolled = 0  # finished orders forgotten by daily rolls
        self._sent_ns: OrderedDict[str, int] = OrderedDict()  # sent, no broker word yet (oldest first)
        self._cancel_ns: OrderedDict[str, int] = OrderedDict()  # canceled, the order not finished yet
        self.cancels_timed_out = 0
        self.timed_out = 0
        self.duplicate_signals = 0
        self.duplicate_fills = 0
        self.ignored_reports = 0
        self.orphan_reports = 0  # reports for orders not known here: booked (see the module doc)
        self.booked: set[str] = set()  # orders known only from a broker report: never re-driven
        self.restored = 0  # open orders adopted from the group's index (node.open_orders)
        self._amends: OrderedDict[str, None] = OrderedDict()  # amend signals taken (their own order ids)
        self.replaces: dict[str, str] = {}  # replacement order -> the order it replaces (until it is answered)
        #: a standby's cancels, not sent: original order -> the cancel's own order id (a new leader sends them)
        self.cancels_held: dict[str, str] = {}
        self.duplicate_amends = 0

    def on_signal(self, acc: SignalAccepted, submit: bool = True) -> OrderIntent | None:
        """The intent to submit, or None when this signal already has an order. A standby
        (`submit=False`) records the order as PENDING: it knows it, but did not send it."""
        intent = intent_for(acc)
        if intent.client_order_id in self.orders:
            self.duplicate_signals += 1
            return None
        state = OrderState.SUBMITTED if submit else OrderState.PENDING
        self.orders[intent.client_order_id] = Order(intent=intent, state=state, accepted_ns=acc.received_ns)
        return intent

    def on_amend(self, acc: SignalAccepted, submit: bool, now_ns: int) -> AmendPlan | None:
        """A cancel or replace signal (node.amends); None when it was taken before. The leader
        (`submit`) gets the plan to carry out: a replacement is recorded SUBMITTED. A standby plans
        nothing (its view may lag the leader's): a replacement is recorded PENDING, a cancel held;
        the leader's reports move them, and a promotion sends what is still open of them."""
        amend = acc.signal.amend
        assert amend is not None
        intent = intent_for(acc)
        coid = intent.client_order_id
        if coid in self._amends or coid in self.orders:
            self.duplicate_amends += 1
            return None
        self._amends[coid] = None
        while len(self._amends) > self._keep_done:
            self._amends.popitem(last=False)
        original = original_order_id(amend.original_request_id)
        if not submit:
            if amend.kind is AmendKind.REPLACE:
                self.orders[coid] = Order(intent=intent, state=OrderState.PENDING, accepted_ns=acc.received_ns)
                self.replaces[coid] = original
            else:
                self.cancels_held[original] = coid
            return None
        plan = plan_amend(amend.kind, amend.original_request_id, intent, self.orders, now_ns)
        if type(plan) is ReplacePlan:
            self.orders[coid] = Order(intent=intent, state=OrderState.SUBMITTED, accepted_ns=acc.received_ns)
            self.replaces[coid] = plan.client_order_id
        elif type(plan) is CancelPlan:
            self.cancels_held.pop(original, None)
        return plan

    def held_cancels(self) -> list[str]:
        """A new leader's cancels to send: the originals of the held cancels still not finished."""
        live = [coid for coid in self.cancels_held if (o := self.orders.get(coid)) is not None and not o.done]
        self.cancels_held.clear()
        return live

    def sent(self, client_order_id: str, now_ns: int) -> None:
        """The order left for the broker at `now_ns`: its deadline starts (see `overdue`)."""
        self._sent_ns[client_order_id] = now_ns

    def cancel_sent(self, client_order_id: str, now_ns: int) -> None:
        """A cancel of this order left for the broker: its deadline starts (see `overdue`). An order
        finished or UNKNOWN already has none."""
        order = self.orders.get(client_order_id)
        if order is None or order.done or order.state is OrderState.UNKNOWN:
            return
        self._cancel_ns[client_order_id] = now_ns
        self._cancel_ns.move_to_end(client_order_id)

    def overdue(self, now_ns: int, timeout_ns: int, cancel_timeout_ns: int = 0) -> list[ExecutionReport]:
        """Orders sent `timeout_ns` ago or more with no broker word: UNKNOWN (TIMEOUT); orders whose
        cancel went `cancel_timeout_ns` ago (default `timeout_ns`) and that are not finished:
        UNKNOWN (CANCEL_TIMEOUT). Never a made-up reject or cancel; the reports to publish. The
        broker's next word moves them on."""
        out = self._cancels_overdue(now_ns, cancel_timeout_ns or timeout_ns) if self._cancel_ns else []
        sent = self._sent_ns
        while sent:
            coid, ts = next(iter(sent.items()))
            if now_ns - ts < timeout_ns:
                break
            del sent[coid]
            order = self.orders.get(coid)
            if order is None or order.state is not OrderState.SUBMITTED:
                continue
            order.state = OrderState.UNKNOWN
            order.reason = TIMEOUT
            self.timed_out += 1
            intent = order.intent
            out.append(ExecutionReport(
                kind=ExecKind.UNKNOWN, client_order_id=coid, symbol=intent.symbol, side=intent.side,
                reason=TIMEOUT, ts_ns=now_ns, strategy_id=intent.strategy_id, request_id=intent.request_id,
                signal_id=intent.signal_id,
            ))  # fmt: skip
        return out

    def _cancels_overdue(self, now_ns: int, timeout_ns: int) -> list[ExecutionReport]:
        out = []
        cancels = self._cancel_ns
        while cancels:
            coid, ts = next(iter(cancels.items()))
            if now_ns - ts < timeout_ns:
                break
            del cancels[coid]
            order = self.orders.get(coid)
            if order is None or order.done or order.state is OrderState.UNKNOWN:
                continue
            order.state = OrderState.UNKNOWN
            order.reason = CANCEL_TIMEOUT
            self._sent_ns.pop(coid, None)
            self.cancels_timed_out += 1
            intent = order.intent
            out.append(ExecutionReport(
                kind=ExecKind.UNKNOWN, client_order_id=coid, symbol=intent.symbol, side=intent.side,
                cum_qty=order.cum_qty, reason=CANCEL_TIMEOUT, ts_ns=now_ns, strategy_id=intent.strategy_id,
                request_id=intent.request_id, signal_id=intent.signal_id,
            ))  # fmt: skip
        return out

    def pending(self) -> list[OrderIntent]:
        """Orders with no broker answer yet (never sent, sent unanswered, or UNKNOWN), oldest first:
        what a new leader must look up at the broker and re-drive if the broker does not have them."""
        booked = self.booked
        return [o.intent for coid, o in self.orders.items()
                if o.state in _UNANSWERED and o.reason != BROKER_LOST and coid not in booked]

    def strand(self) -> list[ExecutionReport]:
        """The broker these orders went to is gone and its successor keeps another account: every
        order sent and unanswered becomes UNKNOWN (BROKER_LOST) and is never sent again; the
        reports to publish. Orders never sent (PENDING) stay re-drivable."""
        out = []
        for coid, order in self.orders.items():
            if order.state in _SENT_UNANSWERED and order.reason != BROKER_LOST:
                order.state = OrderState.UNKNOWN
                order.reason = BROKER_LOST
                intent = order.intent
                out.append(ExecutionReport(
                    kind=ExecKind.UNKNOWN, client_order_id=coid, symbol=intent.symbol, side=intent.side,
                    cum_qty=order.cum_qty, reason=BROKER_LOST, strategy_id=intent.strategy_id,
                    request_id=intent.request_id, signal_id=intent.signal_id,
                ))
        return out

    def stranded_ids(self) -> list[str]:
        return [coid for coid, o in self.orders.items() if o.state is OrderState.UNKNOWN and o.reason == BROKER_LOST]

    def unstrand(self, client_order_id: str) -> None:
        """The lost broker, asked again, never had it: known, not sent (re-drivable)."""
        order = self.orders.get(client_order_id)
        if order is not None and order.state is OrderState.UNKNOWN and order.reason == BROKER_LOST:
            order.state = OrderState.PENDING
            order.reason = ""

    def resolve_stranded(self, client_order_id: str, filled_qty: float, avg_px: float,
                         now_ns: int) -> list[ExecutionReport]:
        """The operator's word for a stranded order, checked at the lost broker by hand: it ended
        with `filled_qty` filled in all at `avg_px` (0: it never executed, or was canceled there).
        The reports to publish (reason MANUAL_RESOLUTION): a fill for what was filled beyond what
        the node knew, then CANCELED for any rest. ValueError when it is not stranded, or the
        numbers cannot be."""
        order = self.orders.get(client_order_id)
        if order is None or order.state is not OrderState.UNKNOWN or order.reason != BROKER_LOST:
            raise ValueError(client_order_id + " is not a stranded order (UNKNOWN, BROKER_LOST)")
        quantity = order.intent.quantity
        extra = filled_qty - order.cum_qty
        if not filled_qty >= 0.0 or extra < 0.0 or (quantity is not None and filled_qty > quantity):
            raise ValueError("filled quantity %r: it must be between what is already filled (%r) and the order's"
                             " quantity (%r)" % (filled_qty, order.cum_qty, quantity))
        if extra > 0.0 and not avg_px > 0.0:
            raise ValueError("a fill needs its average price (> 0)")
        intent = order.intent
        done = quantity is not None and filled_qty >= quantity
        base = dict(client_order_id=client_order_id, symbol=intent.symbol, side=intent.side, reason=MANUAL_RESOLUTION,
                    ts_ns=now_ns, cum_qty=filled_qty, avg_px=avg_px if filled_qty > 0.0 else 0.0, leaves_qty=0.0)
        reports = []
        if extra > 0.0:
            reports.append(ExecutionReport(kind=ExecKind.FILL if done else ExecKind.PARTIAL_FILL,
                                           exec_id="MANUAL-" + client_order_id, last_qty=extra, last_px=avg_px, **base))
        if not done:
            reports.append(ExecutionReport(kind=ExecKind.CANCELED, **base))
        return [out for rep in reports if (out := self.on_report(rep)) is not None]

    def unsubmit(self, client_order_id: str) -> None:
        """The send was refused before reaching the venue (fencing): known, not sent."""
        order = self.orders.get(client_order_id)
        if order is not None and order.state is OrderState.SUBMITTED:
            order.state = OrderState.PENDING

    def mark_submitted(self, client_order_id: str) -> None:
        order = self.orders.get(client_order_id)
        if order is not None and order.state is OrderState.PENDING:
            order.state = OrderState.SUBMITTED

    def restore(self, entry: OpenOrder) -> bool:
        """Adopt an open order of the group from its index (a new leader); False if already known."""
        coid = entry.intent.client_order_id
        if coid in self.orders:
            return False
        self.orders[coid] = order_of(entry)
        self.restored += 1
        return True

    def adopt(self, snap: OrderSnapshot) -> ExecutionReport | None:
        """Take the broker's word for an order it already has (recovery, failover); returns the
        state report to publish (reason RECOVERED: subscribers may have missed the original), or
        None when nothing moved (the state and filled quantity this engine had already: the
        subscribers have that word; a restatement would only repeat it)."""
        order = self.orders.get(snap.client_order_id)
        if order is None:
            return None
        self._sent_ns.pop(snap.client_order_id, None)
        state = STATE_OF_KIND[snap.kind]
        if order.state is state and order.cum_qty == snap.cum_qty:
            return None
        order.state = state
        order.cum_qty = snap.cum_qty
        if order.state in DONE_STATES:
            self._retire(snap.client_order_id)
            self._cancel_ns.pop(snap.client_order_id, None)
        intent = order.intent
        return ExecutionReport(
            kind=snap.kind,
            client_order_id=snap.client_order_id,
            symbol=intent.symbol,
            side=intent.side,
            cum_qty=snap.cum_qty,
            leaves_qty=snap.leaves_qty,
            reason="RECOVERED",
            strategy_id=intent.strategy_id,
            request_id=intent.request_id,
            signal_id=intent.signal_id,
        )

    def on_report(self, report: ExecutionReport) -> ExecutionReport | None:
        """Apply a broker report; the enriched report to publish, or None if it changed nothing."""
        order = self.orders.get(report.client_order_id)
        if order is None:
            order = self._book(report)
        self._sent_ns.pop(report.client_order_id, None)
        outcome = apply_report(order, report)
        if outcome is not Applied.APPLIED:
            if outcome is Applied.DUPLICATE:
                self.duplicate_fills += 1
            else:
                self.ignored_reports += 1
            return None
        if order.state in DONE_STATES:
            self._retire(report.client_order_id)
            self.cancels_held.pop(report.client_order_id, None)
            self._cancel_ns.pop(report.client_order_id, None)
        if self.replaces and order.state is not OrderState.SUBMITTED:
            self.replaces.pop(report.client_order_id, None)
        intent = order.intent
        return _replace(
            report, strategy_id=intent.strategy_id, request_id=intent.request_id, signal_id=intent.signal_id
        )

    def _book(self, report: ExecutionReport) -> Order:
        """An order known only from this report: recorded, so it is tracked (and deduped) from now on."""
        self.orphan_reports += 1
        coid = report.client_order_id
        signal_id = report.signal_id or _signal_id_of(coid)
        intent = OrderIntent(
            client_order_id=coid, signal_id=signal_id, request_id=report.request_id,
            strategy_id=report.strategy_id, symbol=report.symbol, side=report.side, order_type=OrderType.MARKET,
        )
        order = Order(intent=intent, state=OrderState.SUBMITTED)
        self.orders[coid] = order
        self.booked.add(coid)
        return order

    def in_flight(self) -> list[Order]:
        return [o for o in self.orders.values() if o.state not in DONE_STATES]

    def roll(self) -> int:
        """The daily roll: forget the orders that finished before the previous roll (an order that
        moved since, or reopened, is kept). Returns how many were forgotten."""
        orders, done = self.orders, self._done
        n = 0
        for coid in self._finished.roll():
            order = orders.get(coid)
            if order is not None and order.state in DONE_STATES:
                del orders[coid]
                done.pop(coid, None)
                self.booked.discard(coid)
                n += 1
        self.rolled += n
        return n

    def _retire(self, coid: str) -> None:
        self._finished.add(coid)
        self._done[coid] = None
        while len(self._done) > self._keep_done:
            old, _ = self._done.popitem(last=False)
            self._finished.discard(old)
            self.orders.pop(old, None)


def _signal_id_of(client_order_id: str) -> str:
    """'NAE-<signal_id>-<leg>' -> signal_id ("" for an id of another shape)."""
    parts = client_order_id.split("-")
    return parts[1] if len(parts) == 3 and parts[0] == "NAE" else ""
