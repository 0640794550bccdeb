"""The wire protocol between the node's LEAN bridge and `NaeBridgeAlgorithm.cs` (pure, no I/O).

Transport: the LEAN algorithm connects a NetMQ DEALER to the bridge's ROUTER; every message is one
ZeroMQ frame holding one UTF-8 JSON object whose `"type"` field names the struct below. JSON (not
msgpack) because LEAN ships Newtonsoft.Json and no msgpack library, so the algorithm file needs no
extra package. The C# mirror lives in `NaeBridgeAlgorithm.cs` (classes of the same names, fields
spelled exactly as here through `[JsonProperty]`); `fake_lean.py` speaks these same structs.

Node -> LEAN (commands): `PlaceOrder`, `CancelOrder`, `StatusQuery`.
LEAN -> node (events): `Hello` (once per connection and algorithm start; a new `session_id` means
LEAN restarted), `Heartbeat`, `OrderEvent` (one per LEAN `OrderEvent`), `StatusReport` (the answer
to a `StatusQuery`: every order the algorithm knows by client order id, with LEAN's status).

Quantities follow LEAN's sign convention (positive buys, negative sells). Order statuses are LEAN's
`OrderStatus` names ("Submitted", "PartiallyFilled", "Filled", "Canceled", "Invalid", ...), plus
the bridge's own "Unknown" in a `StatusReport` for an order sent before a LEAN restart that LEAN no
longer lists (LEAN reloads only open orders, and without their tags: Lean#5777).
"""

from __future__ import annotations

import msgspec

PROTOCOL_VERSION = 1

#: LEAN `OrderStatus` names as they travel (`OrderStatus.ToString()`).
SUBMITTED = "Submitted"
PARTIALLY_FILLED = "PartiallyFilled"
FILLED = "Filled"
CANCELED = "Canceled"
INVALID = "Invalid"
NEW = "New"
CANCEL_PENDING = "CancelPending"
UPDATE_SUBMITTED = "UpdateSubmitted"
#: not a LEAN status: a client order id the algorithm sent before a restart and no longer sees
UNKNOWN = "Unknown"

#: LEAN order types the bridge places (`MarketOrder`, `LimitOrder`, `StopMarketOrder`, `StopLimitOrder`).
MARKET = "Market"
LIMIT = "Limit"
STOP_MARKET = "StopMarket"
STOP_LIMIT = "StopLimit"

_MSG = dict(frozen=True, kw_only=True, tag_field="type")


# ---------------------------------------------------------------- node -> LEAN


class PlaceOrder(msgspec.Struct, tag="place", **_MSG):
    """Place one order; `client_order_id` becomes the LEAN order tag. Exactly one of `quantity`
    (signed shares) and `notional` (signed cash, sized by the algorithm at LEAN's current price)
    is non-zero. Prices are 0 where the order type has none."""

    client_order_id: str
    symbol: str
    order_type: str
    quantity: float = 0.0
    notional: float = 0.0
    limit_price: float = 0.0
    stop_price: float = 0.0


class CancelOrder(msgspec.Struct, tag="cancel", **_MSG):
    client_order_id: str


class StatusQuery(msgspec.Struct, tag="status", **_MSG):
    """Ask for every order the algorithm knows by client order id (answered by `StatusReport`)."""

    query_id: int


NodeCommand = PlaceOrder | CancelOrder | StatusQuery


# ---------------------------------------------------------------- LEAN -> node


class Hello(msgspec.Struct, tag="hello", **_MSG):
    """Sent when the algorithm (re)connects; `session_id` is new on every algorithm start."""

    session_id: str
    protocol: int = PROTOCOL_VERSION
    algorithm: str = ""
    live_mode: bool = True


class Heartbeat(msgspec.Struct, tag="heartbeat", **_MSG):
    session_id: str
    seq: int
    utc_ms: int


class OrderEvent(msgspec.Struct, tag="order_event", **_MSG):
    """One LEAN `OrderEvent` (OrderId, Id, Status, FillQuantity, FillPrice, Quantity, Message),
    with the client order id the algorithm holds for that order (its tag). `order_id` is -1 when
    LEAN refused the order before creating one (the ticket's error response is the message)."""

    session_id: str
    order_id: int
    event_id: int
    client_order_id: str
    symbol: str
    status: str
    fill_quantity: float = 0.0
    fill_price: float = 0.0
    order_quantity: float = 0.0
    message: str = ""
    utc_ms: int = 0


class OrderState(msgspec.Struct, frozen=True, kw_only=True):
    """One order in a `StatusReport`. `broker_ids` are the brokerage's own ids (stable across a
    LEAN restart; the algorithm restores tags through them)."""

    client_order_id: str
    order_id: int
    symbol: str
    status: str
    quantity: float
    filled_quantity: float = 0.0
    broker_ids: list[str] = []


class StatusReport(msgspec.Struct, tag="status_report", **_MSG):
    session_id: str
    query_id: int
    orders: list[OrderState] = []


LeanMessage = Hello | Heartbeat | OrderEvent | StatusReport


# ---------------------------------------------------------------- codecs, built once

_encoder = msgspec.json.Encoder()
encode = _encoder.encode
command_decoder = msgspec.json.Decoder(NodeCommand)
lean_decoder = msgspec.json.Decoder(LeanMessage)
