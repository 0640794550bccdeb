"""The engine group's orders resting at the venue, kept where the next leader finds them (pure logic).

The replay checkpoint (`node.checkpoint`) passes an entry once the broker has *answered* its orders,
so an order acked and left resting (a limit order) is behind it: a new leader (a promotion, a Ray
restart, a whole-node restart) would never read it again, and the venue's later fills of it would
reach nobody. So the leader also keeps an index of its group's open orders in a Redis hash
(`open_orders_key`): client order id -> `OpenOrder` (the intent and the fills already booked),
written with each events flush, in the same round trip as the checkpoint, and only what changed
(an order acked and done between two flushes never touches Redis). A new leader reads it and adopts
every order it does not know before it trades, asks the broker what became of them, and books only
the fills not booked yet.
"""

from __future__ import annotations

import msgspec

from node.config import DEFAULT_GROUP
from node.messages import ExecutionReport, OrderIntent
from node.orders import DONE_STATES, Order, OrderState

#: states in which the venue holds the order: what a new leader must adopt
_RESTING = frozenset({OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED, OrderState.UNKNOWN})


def open_orders_key(node_id: str, group: str) -> str:
    """The Redis hash of a group's open orders (one per group, like the checkpoint)."""
    return node_id + (".engine.open" if group == DEFAULT_GROUP else ".engine." + group + ".open")


class OpenOrder(msgspec.Struct, frozen=True, array_like=True, gc=False):
    intent: OrderIntent
    state: OrderState
    cum_qty: float = 0.0
    avg_px: float = 0.0
    exec_ids: list[str] = []


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(OpenOrder).decode


def decode_open_orders(raw: dict) -> list[OpenOrder]:
    """HGETALL's answer -> the open orders (an entry that does not decode is skipped, counted by the caller)."""
    out = []
    for value in raw.values():
        try:
            out.append(_decode(value))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    return out


def order_of(entry: OpenOrder) -> Order:
    """The engine's view of an adopted order: as the index last saw it."""
    return Order(intent=entry.intent, state=entry.state, cum_qty=entry.cum_qty, avg_px=entry.avg_px,
                 exec_ids=set(entry.exec_ids))


class OpenOrderIndex:
    """What to write to the hash at the next flush: orders that rest (set) and orders that left it (delete)."""

    def __init__(self) -> None:
        self._written: set[str] = set()  # in the hash, as far as this leader knows
        self._dirty: dict[str, Order] = {}
        self._gone: set[str] = set()

    def __len__(self) -> int:
        return len(self._written)

    def load(self, client_order_ids: list[str]) -> None:
        """What the hash holds now (read by a new leader)."""
        self._written = set(client_order_ids)
        self._dirty.clear()
        self._gone.clear()

    def touch(self, order: Order) -> None:
        """`order` changed (a report was booked): rest it, or take it out once done."""
        coid = order.intent.client_order_id
        if order.state in DONE_STATES or order.state not in _RESTING:
            self._dirty.pop(coid, None)
            if coid in self._written and order.state in DONE_STATES:
                self._gone.add(coid)
            return
        self._gone.discard(coid)
        self._dirty[coid] = order

    def changes(self) -> tuple[dict[str, bytes], list[str]] | None:
        """(to set, to delete), or None when nothing changed."""
        if not self._dirty and not self._gone:
            return None
        sets = {
            coid: _encode(OpenOrder(o.intent, o.state, o.cum_qty, o.avg_px, sorted(o.exec_ids)))
            for coid, o in self._dirty.items()
        }
        return sets, list(self._gone)

    def flushed(self) -> None:
        """The last `changes()` are in Redis."""
        self._written.update(self._dirty)
        self._written.difference_update(self._gone)
        self._dirty.clear()
        self._gone.clear()


class BookedOrphans:
    """Reports of orders an engine does not know (no order book to dedupe them, as in a Nautilus
    kernel's cache): each fill (exec_id) and each status (order, kind) is booked once."""

    def __init__(self, keep: int = 1_000_000) -> None:
        self._seen: dict[tuple[str, str], None] = {}
        self._keep = keep

    def first_time(self, report: ExecutionReport) -> bool:
        key = (report.exec_id, "") if report.exec_id else (report.client_order_id, report.kind.value)
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self._keep:
            del self._seen[next(iter(self._seen))]
        return True
