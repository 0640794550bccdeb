"""A Nautilus standby's shadow of the leader's orders, and its promotion plan (no Nautilus import).

A standby child runs the same kernel as a leader and takes the same signals: each becomes a
Nautilus order that passes the RiskEngine and the ExecutionEngine, but the bridge client *holds*
the intent instead of sending it (the order is SUBMITTED in Nautilus, nothing left the process).
The leader's published reports (the node's events feed) then move the orders on, exactly as the
broker's reports move the leader's, so the standby's cache, positions and sizing prices stay
current.

On promotion the client asks the broker (QueryOrders under the new epoch, which also fences the old
leader and routes every order's reports to this engine) and `plan_promotion` decides, with the
recovery planner every engine shares (`node.recovery`):
- a held order the broker has: adopted (its state and fills are applied from the broker's word);
- a held order the broker's gate took but its venue does not list yet: left in flight (its reports
  come here), never sent again;
- a held order the broker does not have: sent now, same client order id, new epoch;
- fills of any open order of ours the broker reported but the leader never published: applied
  once each (exec ids already booked are left out).
So a promoted Nautilus engine sends no order the broker already has: the broker gate's silent
DUPLICATE answer is never the normal path (it stays the safety net).
"""

from __future__ import annotations

from typing import Callable, Collection

import msgspec

from node.messages import ExecKind, ExecutionReport, OrderIntent, OrdersReport
from node.recovery import fills_to_book, plan_recovery

_TERMINAL = frozenset({ExecKind.FILL, ExecKind.CANCELED, ExecKind.REJECTED})
_STATE_KINDS = frozenset({ExecKind.NEW, ExecKind.CANCELED, ExecKind.REJECTED})


class ShadowBook:
    """Orders a standby holds (passed its exec client, not sent) and reports that came too early.

    `held`: client order id -> intent, from the hold until a terminal report; `answered`: held ids
    the leader reported on (the broker has them); `early`: followed reports about an order that has
    not reached the exec client yet (the leader can be faster than this kernel's queues).
    """

    def __init__(self, max_held: int = 1_000_000, max_early: int = 10_000) -> None:
        self._max_held = max_held
        self._max_early = max_early
        self.held: dict[str, OrderIntent] = {}
        self.answered: set[str] = set()
        self.early: dict[str, list[ExecutionReport]] = {}
        self.holds = 0
        self.followed = 0
        self.early_applied = 0
        self.early_dropped = 0

    def hold(self, intent: OrderIntent) -> list[ExecutionReport]:
        """Keep the intent; returns the reports that were waiting for it (apply them now)."""
        held = self.held
        if len(held) >= self._max_held:
            old = next(iter(held))
            del held[old]
            self.answered.discard(old)
        coid = intent.client_order_id
        held[coid] = intent
        self.holds += 1
        waiting = self.early.pop(coid, None)
        if waiting:
            self.early_applied += len(waiting)
            return waiting
        return []

    def holds_order(self, client_order_id: str) -> bool:
        return client_order_id in self.held

    def answer(self, client_order_id: str, kind: ExecKind) -> None:
        """The leader reported on a held order: the broker has it."""
        self.followed += 1
        if client_order_id not in self.held:
            return
        if kind in _TERMINAL:
            del self.held[client_order_id]
            self.answered.discard(client_order_id)
        else:
            self.answered.add(client_order_id)

    def keep_early(self, rep: ExecutionReport) -> None:
        early = self.early
        if len(early) >= self._max_early and rep.client_order_id not in early:
            del early[next(iter(early))]
            self.early_dropped += 1
        early.setdefault(rep.client_order_id, []).append(rep)

    def unanswered(self) -> list[OrderIntent]:
        """Held orders the leader never reported on, oldest first: the broker may not have them."""
        answered = self.answered
        return [i for c, i in self.held.items() if c not in answered]

    def clear(self) -> None:
        self.held.clear()
        self.answered.clear()
        self.early.clear()


class PromotionPlan(msgspec.Struct, frozen=True, gc=False):
    """What a promoted standby does with the broker's answer, in this order: apply `reports`
    (states first, then fills, then terminal states), then send `send` under the new epoch."""

    reports: list[ExecutionReport]
    send: list[OrderIntent]
    adopted: int
    swept: int
    in_flight: int = 0


def plan_promotion(
    unanswered: list[OrderIntent], answer: OrdersReport, is_open: Callable[[str], bool | None],
    booked: Collection[str] = frozenset(),
) -> PromotionPlan:
    """`is_open(client order id)`: True for an open order of this engine, False for a closed one,
    None for an order it does not have. Reports are only built for open orders; `booked`: the exec
    ids this client has applied (their fills are not applied again)."""
    new: list[ExecutionReport] = []
    ends: list[ExecutionReport] = []
    for snap in answer.orders:
        if snap.kind not in _STATE_KINDS or not is_open(snap.client_order_id):
            continue
        rep = ExecutionReport(kind=snap.kind, client_order_id=snap.client_order_id, cum_qty=snap.cum_qty,
                              leaves_qty=snap.leaves_qty, reason="RECOVERED")
        (new if snap.kind is ExecKind.NEW else ends).append(rep)
    fills = fills_to_book(answer.fills, lambda coid: booked if is_open(coid) else None)
    plan = plan_recovery(unanswered, answer)
    return PromotionPlan(new + fills + ends, plan.redrive, len(plan.adopt), len(fills), len(plan.in_flight))
