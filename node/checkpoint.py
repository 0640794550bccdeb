"""The engine's replay checkpoint over `execution.signals` (pure logic).

Each stream entry holds one batch of accepted signals. An entry is *done* when the broker has
answered (acked, filled or refused) every order of its batch. The checkpoint is the newest entry
with every entry up to it done: after a crash, entries after the checkpoint are read again and
every order in them is looked up at the broker before anything is re-sent, so nothing is lost and,
with deterministic client order ids, nothing is sent twice.
"""

from __future__ import annotations

from collections import OrderedDict

from node.config import DEFAULT_GROUP
from node.streams import entry_key


def checkpoint_key(node_id: str, group: str) -> str:
    """The Redis key of an engine group's checkpoint (one per group: groups move independently)."""
    return node_id + (".engine.checkpoint" if group == DEFAULT_GROUP else ".engine." + group + ".checkpoint")


def catch_up_from(position: str, taken_after: str | None, taken_through: str) -> str:
    """Where a recovery's read of the signal log starts: after the checkpoint `position`, or after
    `taken_through` when the engine took every entry in (`taken_after`, `taken_through`] (a hot
    standby's run of the batches forwarded to it as they were logged) and that run reaches back
    to the checkpoint: what it took, it knows (a pending order is asked about as such), so reading
    it again adds nothing. `taken_after` None: where the run starts is not known."""
    if taken_after is None or not taken_through:
        return position
    at = entry_key(position)
    if entry_key(taken_after) <= at < entry_key(taken_through):
        return taken_through
    return position


class EntryCheckpoint:
    def __init__(self, position: str = "0") -> None:
        self.position = position
        self._open: OrderedDict[str, int] = OrderedDict()  # entry id -> orders still unanswered
        self._entry_of: dict[str, str] = {}  # client order id -> entry id
        self.changed = False

    def __len__(self) -> int:
        return len(self._open)

    def add_entry(self, entry_id: str, client_order_ids: list[str]) -> None:
        """Orders sent for one entry (an entry seen again, in a replay, adds to what it waits for)."""
        waiting = 0
        for coid in client_order_ids:
            if coid not in self._entry_of:
                self._entry_of[coid] = entry_id
                waiting += 1
        self._open[entry_id] = self._open.get(entry_id, 0) + waiting
        self._advance()

    def hold(self, client_order_ids: list[str]) -> None:
        """Orders re-driven outside any entry (a new leader's): the checkpoint stays where it is
        until the broker has answered them all."""
        key = "hold@" + self.position
        waiting = 0
        for coid in client_order_ids:
            if coid not in self._entry_of:
                self._entry_of[coid] = key
                waiting += 1
        if waiting:
            self._open[key] = self._open.get(key, 0) + waiting
            self._open.move_to_end(key, last=False)

    def answered(self, client_order_id: str) -> None:
        entry = self._entry_of.pop(client_order_id, None)
        if entry is None or entry not in self._open:
            return
        self._open[entry] -= 1
        self._advance()

    def _advance(self) -> None:
        opened = self._open
        while opened:
            entry, waiting = next(iter(opened.items()))
            if waiting > 0:
                return
            opened.popitem(last=False)
            if not entry.startswith("hold@"):
                self.position = entry
                self.changed = True
