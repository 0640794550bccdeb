"""The wire between a client and the node's intake and events feed, as typed msgspec structs
(msgpack on the wire), defined here once: the node imports these (`node.messages` re-exports them
beside its internal messages), so a client and the node cannot disagree on a field.

This module needs msgspec alone: the client carries none of the node's dependencies.
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
    """The signed envelope: HMAC-SHA256 over `ts_ns` (8 bytes big-endian) + `payload`.

    `payload` is the exact bytes of a signal, msgpack or (`fmt="json"`, the HTTP intake) JSON;
    the signature covers those bytes, so the verifier never re-encodes anything. Defaults are left
    off the wire, so a msgpack envelope is byte for byte what it was before `fmt` existed.
    """

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
    ts_ns: int = 0  # the signing time of the envelope answered: tells apart attempts of one request_id


class Endpoints(msgspec.Struct, frozen=True, kw_only=True, tag="endpoints"):
    intake: str
    events: str
    node_id: str


class ExecutionReport(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False, tag="exec"):
    """One event on one order: new, partial fill, fill, cancel, reject, unknown.

    `exec_id` is unique per fill at the broker (broker-stable); consumers dedupe on it.
    """

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
    # filled in by the engine before it publishes, so a subscriber can match its signal
    strategy_id: str = ""
    request_id: str = ""
    signal_id: str = ""


IntakeRequest = SignedSignal | Discover
IntakeResponse = Reply | Endpoints


def event_topic(kind: ExecKind, strategy_id: str) -> bytes:
    """The events feed's topic: `<kind>/<len(strategy_id)>:<strategy_id>`.

    The length makes a strategy's prefix exact: ZeroMQ matches topics by prefix, and without it a
    subscriber of `s` would also get `s/evil`'s reports. `<kind>/` alone still matches every
    strategy of one kind."""
    return (kind + "/" + str(len(strategy_id)) + ":" + strategy_id).encode()


def topic_prefixes(strategy_id: str = "", kinds: Iterable[ExecKind] | None = None) -> list[bytes]:
    """Subscription prefixes for some kinds (default all) of exactly one strategy ("" = every strategy)."""
    tail = str(len(strategy_id)) + ":" + strategy_id if strategy_id else ""
    return [(k + "/" + tail).encode() for k in (kinds or ExecKind)]


#: The events feed's greeting topic: a subscriber that adds `HELLO_TOPIC + <nonce>` after its own
#: prefixes gets one message on exactly that topic from the relay once the relay holds all of them
#: (a subscription is otherwise silent: reports published before it lands are lost to that subscriber).
HELLO_TOPIC = b"hello/"


def hello_topic(nonce: str) -> bytes:
    return HELLO_TOPIC + nonce.encode()


encode = msgspec.msgpack.Encoder().encode
response_decoder = msgspec.msgpack.Decoder(IntakeResponse)
report_decoder = msgspec.msgpack.Decoder(ExecutionReport)
report_batch_decoder = msgspec.msgpack.Decoder(list[ExecutionReport])
