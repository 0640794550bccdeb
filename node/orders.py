"""Order identity and the order state machine (pure logic, no I/O).

Identity is deterministic: `signal_id_for(request_id)` and `client_order_id_for(signal_id, leg)`
give the same ids on every node, engine and restart, so a re-drive after failover or a replay
after a crash names the same order and the broker adapter can refuse it as a duplicate.

State moves only on broker evidence. An ambiguous outcome is UNKNOWN, never a made-up REJECTED or
CANCELED; only a later broker report takes an order out of UNKNOWN.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

import msgspec

from node.messages import ExecKind, ExecutionReport, OrderIntent


def signal_id_for(request_id: str) -> str:
    return hashlib.blake2b(request_id.encode(), digest_size=8).hexdigest()


def client_order_id_for(signal_id: str, leg: int = 0) -> str:
    """ASCII, <= 24 chars, stable: 'NAE-<signal_id>-<leg>'."""
    return "NAE-" + signal_id + "-" + str(leg)


class OrderState(StrEnum):
    PENDING = "PENDING"  # intent recorded, not sent
    SUBMITTED = "SUBMITTED"  # sent, no answer yet
    ACCEPTED = "ACCEPTED"  # the venue acknowledged it
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"  # outcome ambiguous: waiting for the broker's word


DONE_STATES = frozenset({OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED})
ACTIVE_STATES = frozenset(
    {OrderState.SUBMITTED, OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED, OrderState.UNKNOWN}
)

STATE_OF_KIND = {
    ExecKind.NEW: OrderState.ACCEPTED,
    ExecKind.PARTIAL_FILL: OrderState.PARTIALLY_FILLED,
    ExecKind.FILL: OrderState.FILLED,
    ExecKind.CANCELED: OrderState.CANCELED,
    ExecKind.REJECTED: OrderState.REJECTED,
    ExecKind.UNKNOWN: OrderState.UNKNOWN,
}


class Order(msgspec.Struct, kw_only=True):
    """The engine's live view of one order."""

    intent: OrderIntent
    state: OrderState = OrderState.PENDING
    venue_order_id: str = ""
    cum_qty: float = 0.0
    avg_px: float = 0.0
    reason: str = ""
    exec_ids: set[str] = msgspec.field(default_factory=set)
    accepted_ns: int = 0  # the validator's clock when it accepted the signal (signal -> fill latency)

    @property
    def done(self) -> bool:
        return self.state in DONE_STATES


class Applied(StrEnum):
    APPLIED = "APPLIED"
    DUPLICATE = "DUPLICATE"  # a fill (exec_id) seen before: ignored
    IGNORED = "IGNORED"  # an update on a finished order (peers replay these): ignored


def apply_report(order: Order, report: ExecutionReport) -> Applied:
    """Move `order` by one broker report. Idempotent: fills dedupe on exec_id."""
    kind = report.kind
    if kind in (ExecKind.PARTIAL_FILL, ExecKind.FILL):
        if report.exec_id in order.exec_ids:
            return Applied.DUPLICATE
        order.exec_ids.add(report.exec_id)
        order.cum_qty = report.cum_qty
        order.avg_px = report.avg_px
        order.venue_order_id = report.venue_order_id or order.venue_order_id
        order.state = STATE_OF_KIND[kind]
        return Applied.APPLIED
    if order.done:
        return Applied.IGNORED
    if kind is ExecKind.NEW and order.state is OrderState.PARTIALLY_FILLED:
        return Applied.IGNORED  # a late ack after a fill must not move the order back
    order.state = STATE_OF_KIND[kind]
    order.venue_order_id = report.venue_order_id or order.venue_order_id
    if report.reason:
        order.reason = report.reason
    return Applied.APPLIED
