"""A Nautilus group's cancel deadline (pure logic: no Nautilus import, no I/O, no clock).

The native engine's rule (adapters/engines/native.py), kept by the kernel's bridge strategy: a
cancel sent to the broker and no word that finishes the order within `cancel_timeout_ms` (a partial
fill is not the cancel's answer) makes the order UNKNOWN (`CANCEL_TIMEOUT`), never a made-up
CANCELED; the validator then refuses new risk on the symbol until the broker's next word on the
order. An order already UNKNOWN by its deadline gets no second deadline (a cancel of it is still
sent: it may be there).

Nautilus's own in-flight check would, after its retries, close a PENDING_CANCEL order with a
CANCELED it makes up itself; the strategy tells that one apart (no broker report behind it) and
publishes UNKNOWN instead (`made_up_cancel`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable


class CancelDeadlines:
    """Client order id -> when its cancel left, for cancels with no finishing word yet."""

    def __init__(self, timeout_ns: int) -> None:
        self.timeout_ns = timeout_ns
        self._sent: OrderedDict[str, int] = OrderedDict()
        #: orders published UNKNOWN (CANCEL_TIMEOUT), waiting for the broker's word
        self.timed_out: set[str] = set()
        self.count = 0  # orders made UNKNOWN by a cancel's deadline

    def sent(self, client_order_id: str, now_ns: int) -> None:
        """A cancel of this order left for the broker: its deadline starts (none for an UNKNOWN one)."""
        if client_order_id in self.timed_out:
            return
        self._sent[client_order_id] = now_ns
        self._sent.move_to_end(client_order_id)

    def waiting(self, client_order_id: str) -> bool:
        """A cancel of ours is out for this order, or made it UNKNOWN: no finishing word yet."""
        return client_order_id in self._sent or client_order_id in self.timed_out

    def finished(self, client_order_id: str) -> None:
        """The broker's word finished the order (canceled, filled, rejected, expired)."""
        self._sent.pop(client_order_id, None)
        self.timed_out.discard(client_order_id)

    def overdue(self, now_ns: int, still_open: Callable[[str], bool]) -> list[str]:
        """The orders whose cancel's deadline passed and that are still open: now UNKNOWN (the
        caller publishes them), oldest first."""
        out = []
        sent = self._sent
        while sent:
            coid, ts = next(iter(sent.items()))
            if now_ns - ts < self.timeout_ns:
                break
            del sent[coid]
            if still_open(coid):
                self.timed_out.add(coid)
                self.count += 1
                out.append(coid)
        return out

    def made_up_cancel(self, client_order_id: str) -> bool:
        """Nautilus closed an order we are `waiting` on with a CANCELED no broker report stands behind:
        the order is UNKNOWN. True when that is news (its deadline had not passed yet: publish UNKNOWN
        now); False when it was published UNKNOWN already."""
        if client_order_id in self._sent:
            del self._sent[client_order_id]
            self.timed_out.add(client_order_id)
            self.count += 1
            return True
        return False
