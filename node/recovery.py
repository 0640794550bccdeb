"""The recovery planner shared by every engine host (pure logic: no sockets, no Redis, no Nautilus).

A new leader (a promotion, a Ray restart with `recover`, a broker switch or resync, a settle of
stranded orders) asks the broker about exactly the orders whose fate it does not know (QueryOrders,
which also fences the old epoch). This module turns the broker's answer into what to do; the
engine hosts (`actors/engine.py`, `adapters/engines/nautilus/bridge_client.py`) only carry it out.

For the orders asked about (`plan_recovery`), each lands in exactly one bucket:
- `adopt`: the broker's book lists it: take the broker's word for its state, never send it;
- `in_flight`: the broker's gate took it (`OrdersReport.sent`) but its venue does not list it yet
  (a remote venue still working through a burst): never sent again, its reports are on their way
  (the take-over routes them to the asker), its submit deadline makes it UNKNOWN if they never come;
- `redrive`: the broker answered and has no trace of it: send it now, same client order id;
- `unknown`: the broker did not answer: nothing is sent, the order stays UNKNOWN (not trading blind).

Fills (`fills_to_book`): every broker fill of an order the engine has, that it has not booked,
exactly once (by exec id), whatever list it came in. State moves of adopted open orders
(`moved_states`) and the settlement of stranded orders (`plan_settle`) are decided here too.
"""

from __future__ import annotations

from typing import Callable, Collection, Iterable, Sequence

import msgspec

from node.messages import ExecKind, ExecutionReport, OrderIntent, OrderSnapshot, OrdersReport

#: the kinds that carry a fill (a snapshot of these is a state, the fill comes as its own report)
FILL_KINDS = frozenset({ExecKind.PARTIAL_FILL, ExecKind.FILL})

#: what an engine has booked of an order: its exec ids, or None when the engine does not have it
BookedOf = Callable[[str], Collection[str] | None]


class RecoveryPlan(msgspec.Struct, frozen=True, gc=False):
    """What to do with the orders asked about (each in one bucket; see the module doc)."""

    adopt: list[OrderSnapshot] = []
    in_flight: list[OrderIntent] = []
    redrive: list[OrderIntent] = []
    unknown: list[OrderIntent] = []

    @property
    def waiting(self) -> list[str]:
        """The orders whose broker answer is still to come (re-driven or in flight)."""
        return [i.client_order_id for i in self.redrive] + [i.client_order_id for i in self.in_flight]


def plan_recovery(asked: Sequence[OrderIntent], answer: OrdersReport | None) -> RecoveryPlan:
    """Sort the orders asked about by the broker's `answer` (None: it did not answer). An id asked
    twice is planned once (its first intent)."""
    seen: set[str] = set()
    unique = []
    for intent in asked:
        if intent.client_order_id not in seen:
            seen.add(intent.client_order_id)
            unique.append(intent)
    if answer is None:
        return RecoveryPlan(unknown=unique)
    listed = {s.client_order_id: s for s in answer.orders}
    taken = set(answer.sent)
    adopt, in_flight, redrive = [], [], []
    for intent in unique:
        coid = intent.client_order_id
        snap = listed.get(coid)
        if snap is not None:
            adopt.append(snap)
        elif coid in taken:
            in_flight.append(intent)
        else:
            redrive.append(intent)
    return RecoveryPlan(adopt=adopt, in_flight=in_flight, redrive=redrive)


def fills_to_book(fills: Iterable[ExecutionReport], booked_of: BookedOf) -> list[ExecutionReport]:
    """The fills to book, in the order given: of an order the engine has (`booked_of` not None),
    carrying quantity, not booked yet (its exec id not in `booked_of(order)`), each (order, exec id) once."""
    out = []
    taken: set[tuple[str, str]] = set()
    for fill in fills:
        if fill.kind not in FILL_KINDS or fill.last_qty <= 0.0:
            continue
        key = fill.exec_id or fill.client_order_id + "-" + str(fill.cum_qty)
        once = (fill.client_order_id, key)
        if once in taken:
            continue
        booked = booked_of(fill.client_order_id)
        if booked is None or key in booked:
            continue
        taken.add(once)
        out.append(fill)
    return out


def moved_states(
    client_order_ids: Iterable[str], answer: OrdersReport, same_state: Callable[[OrderSnapshot], bool | None]
) -> list[OrderSnapshot]:
    """Adopted open orders (from the group's index) whose state moved while nobody led: the broker's
    snapshot where `same_state(snap)` is False (None: the engine does not have the order). A fill
    kind is left to the fills (they come with their own reports); an order the broker does not list
    stays as it was (no made-up state)."""
    listed = {s.client_order_id: s for s in answer.orders}
    out = []
    for coid in client_order_ids:
        snap = listed.get(coid)
        if snap is None or snap.kind in FILL_KINDS:
            continue
        if same_state(snap) is False:
            out.append(snap)
    return out


class SettlePlan(msgspec.Struct, frozen=True, gc=False):
    """The lost broker's word on the orders stranded there: `found` (adopt, book their fills);
    `never_got` (it has no trace, or refused it with nothing filled, NOT_AT_BROKER included: it can
    never execute there, so it is re-drivable, to the current broker, after asking it). The rest stay
    stranded, to be asked again: what its gate took that its venue does not list yet, and what it lists
    UNKNOWN (its new adapter does not know yet: a place saved before it was sent, whose answer died
    with the old adapter, until the venue's sweep finds the order or settles it)."""

    found: list[OrderSnapshot] = []
    never_got: list[str] = []
    fills: list[ExecutionReport] = []


def plan_settle(stranded: Sequence[str], answer: OrdersReport, booked_of: BookedOf) -> SettlePlan:
    """Orders the gate of the lost broker took (`answer.sent`) are neither found nor never-got: they
    stay stranded (the venue may yet execute them)."""
    wanted = set(stranded)
    listed = {s.client_order_id: s for s in answer.orders if s.client_order_id in wanted}
    taken = set(answer.sent)
    never_got = [c for c in dict.fromkeys(stranded)
                 if (c not in listed and c not in taken) or (c in listed and _refused(listed[c]))]
    found = [s for s in listed.values() if s.kind is not ExecKind.UNKNOWN and not _refused(s)]
    fills = fills_to_book((f for f in answer.fills if f.client_order_id in wanted), booked_of)
    return SettlePlan(found=found, never_got=never_got, fills=fills)


def _refused(snap: OrderSnapshot) -> bool:
    """REJECTED with nothing filled: the broker will never execute it."""
    return snap.kind is ExecKind.REJECTED and snap.cum_qty <= 0.0
