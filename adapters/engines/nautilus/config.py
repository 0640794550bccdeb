"""Configuration of the Nautilus engine: one frozen struct, shipped to the child process as JSON.

The host (`host.py`) encodes it on the child's command line; the child (`kernel_main.py`) decodes
it and turns it into Nautilus's own config objects. Nothing here imports nautilus_trader, so the
node can build and validate this config without paying the Nautilus import.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PositivePrice = Annotated[float, msgspec.Meta(gt=0.0)]

DEFAULT_SYMBOLS = ("AAPL", "MSFT", "NVDA", "SPY", "TSLA", "QQQ")


class NautilusEngineConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the Nautilus engine child needs; every field has a working default.

    Notional signals are sized in whole shares at a reference price: the signal's own limit price
    (LIMIT, STOP_LIMIT) or stop price (STOP), else the last fill price the engine saw for the
    symbol, else `reference_prices[symbol]`; with none of them the signal is REJECTED with reason
    NO_PRICE, and a notional below one share is REJECTED with SIZE_SPEC.
    """

    engine_name: str = "nautilus"
    epoch: NonNegInt = 1
    group: str = "default"  # the node's engine group: the broker fences epochs per group
    #: "leader" submits; "standby" runs the same kernel warm and sends nothing to the broker (see
    #: `standby.py`): its orders follow the leader's published reports until a promotion
    role: str = "leader"
    #: the node's events feed (the relay's XPUB side) a standby follows; "" = follow nothing
    follow_endpoint: str = ""
    #: how long a promotion waits for the broker's order list before it gives up (and stays standby)
    promote_query_timeout_ms: PositiveInt = 10_000
    bind_host: str = "127.0.0.1"
    trader_id: str = "NAE-001"
    #: the Nautilus venue the equities are listed on, and the exec client's name
    venue: str = "NAE"
    symbols: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_SYMBOLS))
    price_precision: Annotated[int, msgspec.Meta(ge=0, le=9)] = 2
    starting_cash_usd: PositivePrice = 10_000_000.0
    reference_prices: dict[str, PositivePrice] = {}
    #: Nautilus RiskEngine order throttle (it buffers beyond this rate)
    max_order_submit_count: PositiveInt = 100_000
    max_order_submit_window_ms: PositiveInt = 1_000
    #: Nautilus RiskEngine per-order notional cap in USD; 0 = none
    max_notional_per_order_usd: NonNegInt = 0
    #: Nautilus's in-flight check: a SUBMITTED order older than the threshold is asked about
    #: (QueryOrders to the broker) every interval, `retries` times, before Nautilus resolves it
    #: itself (published as UNKNOWN, never as REJECTED: see bridge_strategy)
    inflight_check_interval_ms: PositiveInt = 2_000
    inflight_check_threshold_ms: PositiveInt = 5_000
    inflight_check_retries: PositiveInt = 5
    #: a cancel sent with no finishing word from the broker by then makes the order UNKNOWN
    #: (CANCEL_TIMEOUT), as the native engine's (the node's `cancel_timeout_ms`; see bridge_strategy)
    cancel_timeout_ms: PositiveInt = 10_000
    #: the in-flight and open-order checks start this long after the node is up
    reconciliation_startup_delay_ms: PositiveInt = 10_000
    #: keep Nautilus's PortfolioAnalyzer trade statistics (each closed position appends to a pandas
    #: Series with pd.concat, O(n) per close; the node's ledger keeps PnL, so off by default)
    keep_portfolio_stats: bool = False
    #: run the child's loop on uvloop (what Nautilus itself installs outside pytest)
    use_uvloop: bool = True
    #: Nautilus log level in the child (its logger writes to the child's stdout)
    log_level: str = "ERROR"
    #: how long a status query to the broker may take before it counts as no answer
    query_timeout_ms: PositiveInt = 2_000
    #: the child stops itself when its parent process is gone (checked at this interval)
    parent_check_interval_ms: PositiveInt = 500
    ready_timeout_ms: PositiveInt = 60_000
    stop_timeout_ms: PositiveInt = 15_000


def rate_string(count: int, window_ms: int) -> str:
    """Nautilus's packed rate format "N/HH:MM:SS" (whole seconds, at least one)."""
    secs = max(1, window_ms // 1_000)
    return str(count) + "/" + "%02d:%02d:%02d" % (secs // 3600, (secs // 60) % 60, secs % 60)


def encode_config(cfg: NautilusEngineConfig) -> str:
    return msgspec.json.encode(cfg).decode()


def decode_config(text: str | bytes) -> NautilusEngineConfig:
    return msgspec.json.decode(text, type=NautilusEngineConfig)
