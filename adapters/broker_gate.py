"""What every broker adapter enforces before an order reaches a venue (pure logic).

- Fencing, per engine group: a command carrying an epoch older than the newest one seen from its
  group is refused (STALE_EPOCH), so an engine that was failed over and wakes up cannot trade.
  Groups fail over independently, so each has its own epoch floor at every broker.
- Exactly-once: a client order id is sent to the venue at most once, whoever asks; a second
  submit of the same id is not sent (counted as refused_duplicate), and the order's reports go to
  the newest asker from then on. (A new leader asks with QueryOrders before it re-drives, so it
  learns the state of what the broker has without submitting it again.) An id the venue reports
  on is sent too (`note_sent`), whenever the venue learns of it.
"""

from __future__ import annotations

from enum import StrEnum


class Admit(StrEnum):
    SEND = "SEND"
    STALE_EPOCH = "STALE_EPOCH"
    DUPLICATE = "DUPLICATE"


class BrokerGate:
    def __init__(self, epoch: int = 0) -> None:
        self.epochs: dict[str, int] = {"": epoch} if epoch else {}
        self._sent: set[str] = set()
        self.refused_stale = 0
        self.refused_duplicate = 0

    @property
    def epoch(self) -> int:
        """The newest epoch seen from any group (what a heartbeat reply reports)."""
        return max(self.epochs.values(), default=0)

    def fence(self, epoch: int, group: str = "") -> bool:
        """True when `epoch` may act for `group`; raises the group's floor when it is newer."""
        floor = self.epochs.get(group, 0)
        if epoch < floor:
            self.refused_stale += 1
            return False
        if epoch > floor:
            self.epochs[group] = epoch
        return True

    def admit_submit(self, epoch: int, client_order_id: str, group: str = "") -> Admit:
        if not self.fence(epoch, group):
            return Admit.STALE_EPOCH
        if client_order_id in self._sent:
            self.refused_duplicate += 1
            return Admit.DUPLICATE
        self._sent.add(client_order_id)
        return Admit.SEND

    def known(self, client_order_id: str) -> bool:
        return client_order_id in self._sent

    def forget(self, client_order_ids: list[str]) -> None:
        """Drop finished orders from the sent set (the adapter's daily roll; the venue keeps its book)."""
        sent = self._sent
        for coid in client_order_ids:
            sent.discard(coid)

    def __len__(self) -> int:
        return len(self._sent)

    def load_sent(self, ids: list[str]) -> None:
        """Seed from the venue's own order list after a restart."""
        self._sent.update(ids)

    def note_sent(self, client_order_id: str) -> None:
        """The venue reported on this order, so it has it: never sent again (a restarted IBKR
        adapter learns its predecessor's open orders from TWS only once connected, after the
        seed)."""
        self._sent.add(client_order_id)
