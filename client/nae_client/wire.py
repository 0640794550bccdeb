"""The node's wire messages the client speaks, as typed msgspec structs (msgpack on the wire).

These mirror `node/messages.py` of the node field for field (the node's own copy is the reference; the
test tests/unit/test_nae_client_slim.py holds the two schemas equal), so the client carries none of
the node's dependencies.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Iterable, Literal

import msgspec


class Status(StrEnum):
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    ERROR = "ERROR"


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class ExecKind(StrEnum):
    """What an execution report says happened to an order."""

    NEW = "NEW"
    PARTIAL_FILL = "PARTIAL_FILL"
    FILL = "FILL"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"  # the outcome is ambiguous until the broker answers


class SignedSignal(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="sig"):
    """HMAC-SHA256 over `ts_ns` (8 bytes big-endian) + `payload` (the signal's exact bytes)."""

    key_id: str
    ts_ns: int
    payload: bytes
    sig: bytes = b""
    fmt: Literal["msgpack", "json"] = "msgpack"


class Discover(msgspec.Struct, frozen=True, tag="hello"):
    """Ask the intake for the node's endpoints (the events feed)."""


class Reply(msgspec.Struct, frozen=True, kw_only=True, tag="reply"):
    status: Status
    request_id: str
    signal_id: str = ""
    reasons: list[str] = []
    detail: str = ""
    duplicate: bool = False  # a retry of a request_id already answered: no new order
    ts_ns: int = 0  # the signing time of the envelope answered


class Endpoints(msgspec.Struct, frozen=True, kw_only=True, tag="endpoints"):
    intake: str
    events: str
    node_id: str


class ExecutionReport(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False, tag="exec"):
    """One event on one order. `exec_id` is unique per fill at the broker: dedupe on it."""

    kind: ExecKind
    client_order_id: str
    venue_order_id: str = ""
    exec_id: str = ""
    symbol: str = ""
    side: Side = Side.BUY
    last_qty: float = 0.0
    last_px: float = 0.0
    cum_qty: float = 0.0
    leaves_qty: float = 0.0
    avg_px: float = 0.0
    reason: str = ""
    ts_ns: int = 0
    strategy_id: str = ""
    request_id: str = ""
    signal_id: str = ""


def topic_prefixes(strategy_id: str = "", kinds: Iterable[ExecKind] | None = None) -> list[bytes]:
    """Subscription prefixes of the events feed, whose topics are `<kind>/<len(strategy_id)>:<strategy_id>`
    (the length makes a strategy's prefix exact: `s` never matches `s/evil`); "" = every strategy."""
    tail = str(len(strategy_id)) + ":" + strategy_id if strategy_id else ""
    return [(k + "/" + tail).encode() for k in (kinds or ExecKind)]


encode = msgspec.msgpack.Encoder().encode
response_decoder = msgspec.msgpack.Decoder(Reply | Endpoints)
report_decoder = msgspec.msgpack.Decoder(ExecutionReport)
report_batch_decoder = msgspec.msgpack.Decoder(list[ExecutionReport])
