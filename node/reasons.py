"""Reason codes: why a signal was refused or an order went where it went.

A client acts on the code, never on the text. Codes are stable strings on the wire.
"""

from enum import StrEnum


class Reason(StrEnum):
    # framing and schema
    FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
    MALFORMED_FRAME = "MALFORMED_FRAME"
    SCHEMA_INVALID = "SCHEMA_INVALID"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    INVALID_NUMBER = "INVALID_NUMBER"
    SIZE_SPEC = "SIZE_SPEC"  # quantity and notional both or neither
    PRICE_REQUIRED = "PRICE_REQUIRED"  # LIMIT / STOP without its price
    PRICE_NOT_ALLOWED = "PRICE_NOT_ALLOWED"  # MARKET with a limit price, etc.
    # authentication
    SIGNATURE_MISSING = "SIGNATURE_MISSING"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    STALE_TIMESTAMP = "STALE_TIMESTAMP"
    REPLAY = "REPLAY"  # a request_id seen before with different content
    FUTURE_TIMESTAMP = "FUTURE_TIMESTAMP"  # the signal's timestamp is ahead of the node's clock
    TIMESTAMP_INVALID = "TIMESTAMP_INVALID"  # not finite, or not a representable instant
    INVALID_ID = "INVALID_ID"  # an id or text field holds a NUL or another control character
    KEY_NOT_ALLOWED = "KEY_NOT_ALLOWED"  # this key id may not trade this strategy (signing.key_strategies)
    UNKNOWN_STRATEGY = "UNKNOWN_STRATEGY"  # not in the allow-list, or the gate's bound on strategies is reached
    ZERO_QUANTITY = "ZERO_QUANTITY"  # the order rounds to zero shares at the last price
    RATE_LIMITED = "RATE_LIMITED"  # this key or peer sent more than its share
    # pre-trade risk
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    MAX_QUANTITY = "MAX_QUANTITY"
    MAX_NOTIONAL = "MAX_NOTIONAL"
    MAX_POSITION = "MAX_POSITION"
    MAX_EXPOSURE = "MAX_EXPOSURE"
    MAX_POSITION_PCT = "MAX_POSITION_PCT"
    GROSS_EXPOSURE = "GROSS_EXPOSURE"
    NET_EXPOSURE = "NET_EXPOSURE"
    GROUP_EXPOSURE = "GROUP_EXPOSURE"
    PORTFOLIO_VARIANCE = "PORTFOLIO_VARIANCE"
    PRICE_COLLAR = "PRICE_COLLAR"
    SLIPPAGE_COLLAR = "SLIPPAGE_COLLAR"
    THROTTLE_STRATEGY = "THROTTLE_STRATEGY"
    THROTTLE_NODE = "THROTTLE_NODE"
    DUPLICATE_ORDER = "DUPLICATE_ORDER"
    DAILY_LOSS = "DAILY_LOSS"
    MAX_DRAWDOWN = "MAX_DRAWDOWN"
    KILL_SWITCH = "KILL_SWITCH"
    STRATEGY_KILLED = "STRATEGY_KILLED"
    STRATEGY_PAUSED = "STRATEGY_PAUSED"
    HALTED = "HALTED"
    REDUCE_ONLY = "REDUCE_ONLY"
    BREAKER_SYSTEM = "BREAKER_SYSTEM"
    BREAKER_EXECUTION = "BREAKER_EXECUTION"
    BREAKER_STRATEGY = "BREAKER_STRATEGY"
    SYMBOL_UNKNOWN_STATE = "SYMBOL_UNKNOWN_STATE"  # an order on this symbol is UNKNOWN
    NO_PRICE = "NO_PRICE"  # no last price for the symbol: exposure and collars cannot be checked
    # node state
    OVERLOADED = "OVERLOADED"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"  # cannot persist, so cannot accept
    #: the append was sent and not answered (Redis stalled): status ERROR, the signal may yet be
    #: logged; a retry with the same request_id gets the true answer once Redis answers again
    STORE_OUTCOME_UNKNOWN = "STORE_OUTCOME_UNKNOWN"
    NO_ENGINE = "NO_ENGINE"
    NO_ROUTE = "NO_ROUTE"  # no route names a group for this strategy / symbol (reject_unrouted)
    INTERNAL = "INTERNAL"
    # broker side
    STALE_EPOCH = "STALE_EPOCH"
    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
    UNKNOWN_GROUP = "UNKNOWN_GROUP"  # a command naming no configured engine group: never fenced, so refused
    VENUE_REJECT = "VENUE_REJECT"
    VENUE_UNAVAILABLE = "VENUE_UNAVAILABLE"
    TIMEOUT = "TIMEOUT"
    #: a cancel with no word from the broker by its deadline: the order may or may not be canceled
    CANCEL_TIMEOUT = "CANCEL_TIMEOUT"
    #: sent to a broker that died before answering, the group moved to a broker of another account:
    #: never sent again; UNKNOWN until that broker's word comes back
    BROKER_LOST = "BROKER_LOST"
    # the order's life at a real broker (node/venue.py, adapters/brokers/)
    REPLACED = "REPLACED"  # canceled because a replacement took its place
    EXPIRED = "EXPIRED"  # its time in force ran out
    BROKER_RATE_LIMITED = "BROKER_RATE_LIMITED"  # over the broker account's order budget: never sent
    LOGIN_EXPIRED = "LOGIN_EXPIRED"  # the broker login (OAuth refresh token) lapsed: never sent
    BROKER_MAINTENANCE = "BROKER_MAINTENANCE"  # the broker's nightly reset / restart window: never sent
    NO_CONNECTION = "NO_CONNECTION"  # not connected to the broker: never sent
    UNKNOWN_ORDER = "UNKNOWN_ORDER"  # a cancel / replace of an order the venue does not know
    NOT_AT_BROKER = "NOT_AT_BROKER"  # an UNKNOWN submit the broker's order list never showed: never placed
    # cancel and replace signals (`Signal.amend`; node/amends.py): the amend's own order id is refused
    AMEND_INVALID = "AMEND_INVALID"  # it names itself as the order to amend
    AMEND_UNSUPPORTED = "AMEND_UNSUPPORTED"  # the engine of its group cannot cancel or replace (Nautilus)
    AMEND_UNKNOWN_ORIGINAL = "AMEND_UNKNOWN_ORIGINAL"  # no order of that original request_id in its group
    AMEND_ORDER_DONE = "AMEND_ORDER_DONE"  # the original is filled, canceled or rejected already
    AMEND_NOT_LIVE = "AMEND_NOT_LIVE"  # a replace of an order the broker has not acknowledged (or UNKNOWN)
    AMEND_MISMATCH = "AMEND_MISMATCH"  # strategy, symbol, side or order type differ from the original
