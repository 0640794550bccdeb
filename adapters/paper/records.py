"""What the paper venue writes down so its account outlives the process: its book as a log.

Pure: typed records and their encoding, no I/O (the Redis side is `adapters.paper.journal`).

The venue logs what it has *shown* outside, before it shows it: an order the first time one of its
reports is handed out (`OrderTaken`), every report handed out (`ExecutionReport`, as sent), and every
position change with no fill (`PositionAdjusted`). Replaying the log rebuilds the orders, fills,
positions and cash exactly as the node could have seen them; an order whose reports were still
inside the venue when it stopped was never seen, so it is as if it never arrived (the engine's
recovery re-drives it under the same client order id).
"""

from __future__ import annotations

from typing import Iterable, Protocol

import msgspec

from node.messages import ExecutionReport, OrderIntent


class OrderTaken(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="order"):
    """An order the venue took: the intent, its venue id, and the quantity it works (a notional
    order's size at the mid it arrived at)."""

    intent: OrderIntent
    venue_order_id: str
    qty: float


class PositionAdjusted(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="adjust"):
    """A position change with no fill (a journal entry, a transfer, a hand edit at the venue)."""

    symbol: str
    qty: float


Record = OrderTaken | ExecutionReport | PositionAdjusted

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Record])


def encode_records(records: Iterable[Record]) -> bytes:
    """One log entry: a msgpack array of records."""
    return _encoder.encode(list(records))


def decode_records(entry: bytes) -> list[Record]:
    """The records of one log entry (msgspec.DecodeError / ValidationError on a malformed one)."""
    return _decoder.decode(entry)


class BookLog(Protocol):
    """Where the venue writes its log. `append` returns once the records are durable, or raises
    (the venue then hands nothing out and tries again on its next wake-up)."""

    def append(self, records: list[Record]) -> None: ...
