"""Every message the node speaks, defined once as msgspec structs.

The msgpack wire form and the JSON form (HTTP, logs, `--json`) are both derived from these
definitions: `encode`/`decode_*` for msgpack, `to_json`/`from_json` for JSON. Field names of
`Signal` follow the NAE middleware so Optimus keeps its payload.

Sockets carry tagged unions: a decoder is built once per union and reused.
Commands are imperative (`SubmitOrder`), events past tense (`OrderFilled` lives in `ExecKind`).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated

import msgspec

# the client's wire, defined once in the nae_client distribution (client/): re-exported here
from nae_client.wire import (  # noqa: F401
    Discover,
    Endpoints,
    ExecKind,
    ExecutionReport,
    IntakeRequest,
    IntakeResponse,
    Reply,
    Side,
    SignedSignal,
    Status,
    event_topic,
    topic_prefixes,
)

# ---------------------------------------------------------------- constrained numbers

#: Quantities and notionals: strictly positive, finite, below an absurd bound.
Size = Annotated[float, msgspec.Meta(gt=0.0, le=1e9)]
#: Prices: strictly positive, finite, below an absurd bound.
Price = Annotated[float, msgspec.Meta(gt=0.0, le=1e7)]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Money = Annotated[float, msgspec.Meta(ge=0.0, le=1e12)]
Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._/:-]+$")]


class Action(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    BUY_TO_OPEN = "BUY_TO_OPEN"
    SELL_TO_OPEN = "SELL_TO_OPEN"
    BUY_TO_CLOSE = "BUY_TO_CLOSE"
    SELL_TO_CLOSE = "SELL_TO_CLOSE"


BUY_ACTIONS = frozenset({Action.BUY, Action.BUY_TO_OPEN, Action.BUY_TO_CLOSE})
CLOSING_ACTIONS = frozenset({Action.BUY_TO_CLOSE, Action.SELL_TO_CLOSE})


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    STOP_LIMIT = "STOP_LIMIT"


class TimeInForce(StrEnum):
    DAY = "DAY"  # until the session's close
    GTC = "GTC"  # until filled or canceled
    IOC = "IOC"  # what fills at once; the rest is canceled
    FOK = "FOK"  # all at once or nothing


class AmendKind(StrEnum):
    CANCEL = "CANCEL"
    REPLACE = "REPLACE"


# ---------------------------------------------------------------- the signal (Optimus payload)


class RiskMeta(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_slippage: Fraction | None = None
    max_exposure: Money | None = None
    max_position_pct: Fraction | None = None


class Amend(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Makes a signal a cancel or a replace of the order of `original_request_id` (FIX's
    OrigClOrdID). Like FIX's cancel request, the signal restates the order's strategy, symbol,
    action and size; the engine checks them against the original (AMEND_MISMATCH). A replace's
    size and prices are those of the new order, which takes the old one's place at the broker."""

    kind: AmendKind
    original_request_id: Ident


class Signal(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One trade signal from Optimus. `request_id` is the idempotency key; with `amend` it is a
    cancel or a replace of an earlier signal's order (its own `request_id` is still its own)."""

    request_id: Ident
    strategy_id: Ident
    timestamp: float | dt.datetime
    symbol: Symbol
    action: Action
    quantity: Size | None = None
    notional: Size | None = None
    order_type: OrderType = OrderType.MARKET
    limit_price: Price | None = None
    stop_price: Price | None = None
    risk_meta: RiskMeta | None = None
    correlation_group: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    model_id: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    confidence: Fraction | None = None
    expected_pnl: Annotated[float, msgspec.Meta(ge=-1e12, le=1e12)] | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    amend: Amend | None = None

    @property
    def side(self) -> Side:
        return Side.BUY if self.action in BUY_ACTIONS else Side.SELL

    def timestamp_s(self) -> float:
        """Seconds since the epoch; a naive datetime is UTC. May raise ValueError / OverflowError
        for an instant no float or platform represents (the gate refuses those: TIMESTAMP_INVALID)."""
        ts = self.timestamp
        if isinstance(ts, dt.datetime):
            return (ts.replace(tzinfo=dt.timezone.utc) if ts.tzinfo is None else ts).timestamp()
        return float(ts)


# ---------------------------------------------------------------- intake: client <-> validator


# ---------------------------------------------------------------- validator -> engine


class SignalAccepted(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="acc"):
    signal_id: str
    received_ns: int
    signal: Signal
    route: int = 0  # node.modes.Route: the validator's route for a strategy in modes (0: the router's)


class SignalBatch(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="batch"):
    """The accepted signals of one validator wake-up, and the `execution.signals` entry that holds
    exactly them: the engine checkpoints by entry id, and replays entries after its checkpoint.
    `prev_id`: the entry before it as the validator knows it (its previous append, or the log's tip
    when it started): an engine that never got that one reads the gap back from the log (a validator
    killed between its append and its forward left ACKed signals no engine had)."""

    entry_id: str
    signals: list[SignalAccepted]
    prev_id: str = ""


def pack_signal_batch(entry_id: str, packed_signals: bytes, prev_id: str = "") -> bytes:
    """Encode a SignalBatch around an already-packed msgpack array of SignalAccepted."""
    return _encoder.encode(("batch", entry_id, msgspec.Raw(packed_signals), prev_id))


# ---------------------------------------------------------------- engine <-> broker


class OrderIntent(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False):
    """What the engine wants at the broker: one order, named by a deterministic client order id."""

    client_order_id: str
    signal_id: str
    request_id: str
    strategy_id: str
    symbol: str
    side: Side
    order_type: OrderType
    quantity: float | None = None
    notional: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    max_slippage: float | None = None
    time_in_force: TimeInForce = TimeInForce.DAY


class SubmitOrder(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="submit"):
    epoch: int
    engine: str
    intent: OrderIntent
    group: str = ""  # the engine group: the broker fences epochs per group


class CancelOrder(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="cancel"):
    epoch: int
    engine: str
    client_order_id: str
    group: str = ""


class ReplaceOrder(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="replace"):
    """Replace the live order `client_order_id` by `intent` (a new client order id): the old one
    ends CANCELED, reason REPLACED, once the venue confirms; the new one is sent at most once."""

    epoch: int
    engine: str
    client_order_id: str
    intent: OrderIntent
    group: str = ""


class QueryOrders(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="query"):
    """Ask the broker what it has before re-driving: the orders named in `client_order_ids` (any
    age) with their fills, and every order and fill with activity at or after `since_ns` by the
    broker's clock (0 = every order and fill it has). A new leader names the orders whose fate it
    does not know and passes the time of the newest broker report it saw (less a margin), so the
    answer, and the broker's work, stay small however long the node has run."""

    epoch: int
    engine: str
    since_ns: int = 0
    client_order_ids: list[str] = []  # also these, whatever their age (what the asker holds open)
    group: str = ""
    #: the asker takes over the reports of the group's orders (a new leader: fenced by `epoch`);
    #: False: only look, whatever the epoch (a standby catching up; an adapter that starts beside
    #: another in front of a shared venue)
    take_over: bool = True
    #: the asker's tag for this query, echoed in the OrdersReport that answers it: an asker with
    #: several queries out (a whole-book query and a one-order look) matches each answer to its own
    query_id: int = 0


class Heartbeat(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="hb"):
    sender: str
    epoch: int
    seq: int
    ts_ns: int
    role: str = ""  # engines: "leader" or "standby"


BrokerCommand = SubmitOrder | CancelOrder | ReplaceOrder | QueryOrders | Heartbeat


class OrderSnapshot(msgspec.Struct, frozen=True, array_like=True, gc=False):
    client_order_id: str
    kind: ExecKind
    cum_qty: float
    leaves_qty: float


class OrdersReport(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="orders"):
    """The broker's answer to QueryOrders: every order it has, and every fill it reported (the
    executions sweep a new leader runs, so a fill whose report died with the old leader still
    reaches the events stream and the ledger; consumers dedupe on exec_id)."""

    orders: list[OrderSnapshot]
    fills: list["ExecutionReport"] = []
    #: ids asked about that the broker's gate took but its venue does not list yet (a remote venue
    #: still working through a burst): in flight there, never to be sent again (node.recovery)
    sent: list[str] = []
    query_id: int = 0  # the QueryOrders.query_id this answers


BrokerEvent = ExecutionReport | OrdersReport | Heartbeat


# ---------------------------------------------------------------- codecs, built once

_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode
signal_decoder = msgspec.msgpack.Decoder(Signal)
signal_json_decoder = msgspec.json.Decoder(Signal)  # the payload of a `fmt="json"` envelope
intake_request_decoder = msgspec.msgpack.Decoder(IntakeRequest)
intake_response_decoder = msgspec.msgpack.Decoder(IntakeResponse)
accepted_decoder = msgspec.msgpack.Decoder(SignalAccepted)
batch_decoder = msgspec.msgpack.Decoder(SignalBatch)
broker_command_decoder = msgspec.msgpack.Decoder(BrokerCommand)
broker_event_decoder = msgspec.msgpack.Decoder(BrokerEvent)
report_decoder = msgspec.msgpack.Decoder(ExecutionReport)
heartbeat_decoder = msgspec.msgpack.Decoder(Heartbeat)

_json_encoder = msgspec.json.Encoder()


def to_json(msg: msgspec.Struct) -> bytes:
    """The JSON form of a message (for HTTP, logs and `--json` output): always an object with
    the field names above, also for the structs that travel as msgpack arrays."""
    return _json_encoder.encode(to_builtins(msg))


def to_builtins(msg: msgspec.Struct) -> dict:
    """A plain dict keyed by field name (nested structs too), whatever the struct's wire shape."""
    out = {}
    for name in msg.__struct_fields__:
        value = getattr(msg, name)
        out[name] = to_builtins(value) if isinstance(value, msgspec.Struct) else msgspec.to_builtins(value)
    return out


def signal_from_json(data: bytes | str) -> Signal:
    return msgspec.json.decode(data, type=Signal)
