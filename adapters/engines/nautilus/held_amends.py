"""A Nautilus standby's held cancels and replaces, and what a promotion does with them (no Nautilus import).

A standby child takes the same cancel and replace signals as its leader but sends nothing: it
records them (`HeldAmends`: a cancel held; a replace's original, its new order waiting for the
original's CANCELED in the strategy's `replacing`). The leader's published reports move them on:
the original finished (its own report) or the amend refused (a REJECTED on the amend's own client
order id) ends a held amend. On promotion, with the broker's answer (`plan_takeover`):

- a held cancel is sent again when the broker lists the original open (NEW, PARTIAL_FILL) or
  UNKNOWN (it may be there), or the original is sent now by the promotion itself or was taken by
  the broker's gate and is not listed yet (the cancel follows it on the same socket); an original the
  broker lists finished needs nothing (its own report is the answer: never a made-up second one);
- a replace whose new order the broker has (listed, or taken by its gate) is adopted: the new order
  is never sent again (it is submitted through Nautilus once the original's CANCELED is applied and
  the exec client takes the broker's word for it instead of sending it);
- a replace whose original the broker lists open: the original is canceled (the leader died before
  its cancel, or its cancel was lost) and the new order follows its CANCELED as on any leader;
- a replace whose original the broker lists CANCELED, FILL or REJECTED: nothing here (the broker's
  report, applied by the promotion, completes it or refuses it AMEND_ORDER_DONE);
- a replace whose original the broker lists UNKNOWN, or never acknowledged (sent now, in flight, not
  known): refused AMEND_NOT_LIVE on its own id, as a leader refuses a replace of such an order.
So there are never two live orders of one replace, and every answer is the broker's or a refusal.
"""

from __future__ import annotations

from typing import Collection, Mapping

import msgspec

from node.messages import ExecKind, ExecutionReport, OrderSnapshot, OrdersReport

_OPEN = frozenset({ExecKind.NEW, ExecKind.PARTIAL_FILL})
_FILLS = frozenset({ExecKind.PARTIAL_FILL, ExecKind.FILL})


class HeldAmends:
    """The amends a standby took and did not send: cancels (original -> the cancel's own client
    order id) and the own ids of replaces (-> their original), bounded (oldest dropped first)."""

    def __init__(self, max_held: int = 100_000) -> None:
        self._max = max_held
        self.cancels: dict[str, str] = {}  # original -> cancel's own client order id
        self._original_of: dict[str, str] = {}  # amend's own client order id -> original
        self.held = 0
        self.dropped = 0  # ended by the leader's word before a promotion

    def hold_cancel(self, original: str, amend_id: str) -> None:
        if original not in self.cancels and len(self.cancels) >= self._max:
            old = next(iter(self.cancels))
            self._original_of.pop(self.cancels.pop(old), None)
        self.cancels[original] = amend_id
        self._remember(amend_id, original)

    def hold_replace(self, original: str, amend_id: str) -> None:
        """A replace (its SignalAccepted is kept by the strategy's `replacing`): remembered so the
        leader's refusal of it is recognised."""
        self._remember(amend_id, original)

    def _remember(self, amend_id: str, original: str) -> None:
        ids = self._original_of
        if len(ids) >= self._max:
            del ids[next(iter(ids))]
        ids[amend_id] = original
        self.held += 1

    def is_amend(self, client_order_id: str) -> bool:
        return client_order_id in self._original_of

    def refused(self, amend_id: str) -> str | None:
        """The leader refused (or ended) the amend `amend_id`: forgotten; its original returned."""
        original = self._original_of.pop(amend_id, None)
        if original is not None and self.cancels.get(original) == amend_id:
            del self.cancels[original]
        if original is not None:
            self.dropped += 1
        return original

    def finished(self, original: str) -> None:
        """The original ended (the leader's report of it): a held cancel of it is moot."""
        amend_id = self.cancels.pop(original, None)
        if amend_id is not None:
            self._original_of.pop(amend_id, None)
            self.dropped += 1

    def clear(self) -> None:
        self.cancels.clear()
        self._original_of.clear()


class Adopted(msgspec.Struct, frozen=True, gc=False):
    """A replace's new order the broker already has: the reports to apply instead of sending it
    (empty when its gate took it and its venue does not list it yet: its reports come here)."""

    reports: list[ExecutionReport] = []


class Takeover(msgspec.Struct, frozen=True, gc=False):
    """What a promoted standby does with its held amends (see the module doc)."""

    cancel: list[str] = []  # originals to cancel now, each once, oldest first
    refuse: list[str] = []  # originals whose pending replace is refused AMEND_NOT_LIVE
    adopt: dict[str, Adopted] = {}  # replacement's client order id -> what the broker says of it


def plan_takeover(
    cancels: Collection[str], replaces: Mapping[str, str], answer: OrdersReport, sent_now: Collection[str],
) -> Takeover:
    """`cancels`: originals of the held cancels; `replaces`: original -> the pending replace's new
    order id; `answer`: the broker's answer to the promotion's query (which asked about every one of
    them); `sent_now`: the held orders the promotion sends (the broker had no trace of them)."""
    listed = {s.client_order_id: s for s in answer.orders}
    taken = set(answer.sent)
    sent = set(sent_now)
    cancel: dict[str, None] = {}
    refuse: list[str] = []
    adopt: dict[str, Adopted] = {}
    for original in cancels:
        snap = listed.get(original)
        if snap is not None:
            if snap.kind in _OPEN or snap.kind is ExecKind.UNKNOWN:
                cancel[original] = None
        elif original in sent or original in taken:
            cancel[original] = None
    for original, new_id in replaces.items():
        new = listed.get(new_id)
        if new is not None:
            adopt[new_id] = Adopted(_adopted_reports(new, answer.fills))
            continue
        if new_id in taken:
            adopt[new_id] = Adopted()
            continue
        snap = listed.get(original)
        if snap is None or snap.kind is ExecKind.UNKNOWN:
            refuse.append(original)  # never acknowledged (or UNKNOWN): not live, as a leader would say
        elif snap.kind in _OPEN:
            cancel[original] = None
    return Takeover(cancel=list(cancel), refuse=refuse, adopt=adopt)


def _adopted_reports(snap: OrderSnapshot, fills: list[ExecutionReport]) -> list[ExecutionReport]:
    """The broker's word on an adopted order, to apply in this order: acknowledged, its fills (each
    exec id once), then how it ended (a fill ends itself)."""
    coid = snap.client_order_id
    if snap.kind is ExecKind.UNKNOWN:
        return []  # the broker's adapter does not know either: no state to take (its reports come here)
    if snap.kind is ExecKind.REJECTED and snap.cum_qty <= 0.0:
        return [ExecutionReport(kind=ExecKind.REJECTED, client_order_id=coid, reason="RECOVERED")]
    out = [ExecutionReport(kind=ExecKind.NEW, client_order_id=coid, cum_qty=0.0,
                           leaves_qty=snap.cum_qty + snap.leaves_qty, reason="RECOVERED")]
    seen: set[str] = set()
    for fill in fills:
        if fill.client_order_id != coid or fill.kind not in _FILLS or fill.last_qty <= 0.0:
            continue
        key = fill.exec_id or coid + "-" + str(fill.cum_qty)
        if key in seen:
            continue
        seen.add(key)
        out.append(fill)
    if snap.kind is ExecKind.CANCELED or snap.kind is ExecKind.REJECTED:
        out.append(ExecutionReport(kind=snap.kind, client_order_id=coid, cum_qty=snap.cum_qty, leaves_qty=0.0,
                                   reason="RECOVERED"))
    return out
