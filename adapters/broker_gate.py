"""What every broker adapter enforces before an order reaches a venue (pure logic).

- Fencing: a command carrying an epoch older than the newest one seen is refused (STALE_EPOCH),
  so an engine that was failed over and wakes up cannot trade.
- Exactly-once: a client order id is sent to the venue at most once, whoever asks; a second
  submit of the same id is refused (DUPLICATE_CLIENT_ORDER_ID) and the order's current state is
  what the asker gets back.
"""

from __future__ import annotations

from enum import StrEnum


class Admit(StrEnum):
    SEND = "SEND"
    STALE_EPOCH = "STALE_EPOCH"
    DUPLICATE = "DUPLICATE"


class BrokerGate:
    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch
        self._sent: set[str] = set()
        self.refused_stale = 0
        self.refused_duplicate = 0

    def fence(self, epoch: int) -> bool:
        """True when `epoch` may act; raises the floor when it is newer."""
        if epoch < self.epoch:
            self.refused_stale += 1
            return False
        if epoch > self.epoch:
            self.epoch = epoch
        return True

    def admit_submit(self, epoch: int, client_order_id: str) -> Admit:
        if not self.fence(epoch):
            return Admit.STALE_EPOCH
        if client_order_id in self._sent:
            self.refused_duplicate += 1
            return Admit.DUPLICATE
        self._sent.add(client_order_id)
        return Admit.SEND

    def known(self, client_order_id: str) -> bool:
        return client_order_id in self._sent

    def load_sent(self, ids: list[str]) -> None:
        """Seed from the venue's own order list after a restart."""
        self._sent.update(ids)
