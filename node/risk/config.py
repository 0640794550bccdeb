"""Pre-trade risk limits: one frozen config struct, units in the names.

Defaults are sane for a paper account of 1,000,000 USD equity. Fractions are 0..1 (0.25 = 25%).
`risk_meta` on a signal may only tighten a limit (the smaller of the two applies), never loosen it.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated

import msgspec

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0.0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0.0)]
Fraction = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]


class TradingState(IntEnum):
    """Node or strategy trading state (Nautilus semantics)."""

    ACTIVE = 0
    REDUCING = 1  # only orders that reduce the position in the symbol
    HALTED = 2  # nothing


class BreakerState(IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class RiskLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every pre-trade limit of the node. Exposures are in USD at the last price."""

    # universe
    symbols: list[str] = []  # allowlist; empty = any symbol, a slot is added on first sight
    max_symbols: PositiveInt = 16_384  # beyond: UNKNOWN_SYMBOL (dense covariance: 8 * n^2 bytes)
    symbol_groups: dict[str, str] = {}  # symbol -> correlation group (else the first signal naming one)
    initial_symbol_capacity: PositiveInt = 64
    initial_strategy_capacity: PositiveInt = 8
    initial_group_capacity: PositiveInt = 16
    # order size
    max_quantity: PositiveFloat = 100_000.0
    max_notional_usd: PositiveFloat = 250_000.0
    #: an OCC option symbol's contract size: its notional is quantity x price x this (node/instruments.py)
    option_multiplier: PositiveFloat = 100.0
    contract_multipliers: dict[str, PositiveFloat] = {}  # symbol -> multiplier, over the default above
    max_position_pct: Fraction = 0.25  # |strategy position in the symbol| / equity
    # positions and exposure (orders that reduce are always allowed through these)
    max_symbol_long_usd: PositiveFloat = 300_000.0  # node net position per symbol
    max_symbol_short_usd: PositiveFloat = 200_000.0
    max_strategy_long_usd: PositiveFloat = 1_000_000.0  # sum of a strategy's long positions
    max_strategy_short_usd: PositiveFloat = 500_000.0
    max_strategy_exposure_usd: PositiveFloat = 1_500_000.0  # strategy gross
    max_gross_exposure_usd: PositiveFloat = 2_000_000.0  # node gross
    max_net_exposure_usd: PositiveFloat = 1_000_000.0  # |node net|
    max_group_exposure_usd: PositiveFloat = 400_000.0  # |net exposure of one correlation group|
    # covariance: returns over the risk horizon; dVar = 2 x (C w)_i + x^2 C_ii in USD^2
    max_incremental_var_usd2: PositiveFloat = 1.0e8  # one order may add at most (10k USD)^2
    default_daily_vol: PositiveFloat = 0.02  # diagonal prior for a symbol without covariance
    cov_horizon_secs: PositiveFloat = 23_400.0  # one trading day
    cov_sample_interval_ms: NonNegInt = 60_000  # EWMA sample step from the price feed; 0 = off
    cov_ewma_lambda: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 0.94
    # price collars
    price_collar_bps: PositiveFloat = 500.0  # limit/stop price vs last price
    price_collar_ticks: NonNegInt = 0  # 0 = off
    tick_size_usd: PositiveFloat = 0.01
    default_max_slippage: NonNegFloat = 0.01  # market orders without risk_meta.max_slippage
    max_slippage_cap: NonNegFloat = 0.05  # a market order asking more slippage is refused
    # throttles and duplicates
    strategy_orders_per_sec: PositiveFloat = 20.0
    strategy_burst: PositiveFloat = 40.0
    node_orders_per_sec: PositiveFloat = 200.0
    node_burst: PositiveFloat = 400.0
    duplicate_window_ms: NonNegInt = 1_000  # same strategy, symbol, side, size
    # loss limits per strategy (realised + unrealised, marked at the last price)
    max_daily_loss_usd: PositiveFloat = 20_000.0
    max_drawdown_usd: PositiveFloat = 50_000.0
    day_start_offset_secs: NonNegInt = 0  # trading day starts at UTC midnight + this
    trip_breaker_on_loss: bool = True
    # circuit breakers
    system_failure_threshold: PositiveInt = 3  # engine errors
    execution_failure_threshold: PositiveInt = 10  # broker rejects, node-wide
    strategy_failure_threshold: PositiveInt = 5  # broker rejects of one strategy
    breaker_window_ms: PositiveInt = 60_000
    breaker_cooldown_ms: PositiveInt = 30_000
    breaker_probe_orders: PositiveInt = 1  # orders let through while HALF_OPEN


def throughput_limits(base: RiskLimits | None = None) -> RiskLimits:
    """The limits the demo and the benchmark run under: every check still runs on every signal,
    but throttles, exposure, loss and variance caps are far above what a random stream of
    thousands of signals per second builds up (run them with a large `equity_usd` too). Quantity,
    price collars, breakers and the kill switch stay as given; max notional is at least 5M USD."""
    base = base or RiskLimits()
    big = 1e15
    return msgspec.structs.replace(
        base,
        max_position_pct=1.0,
        max_notional_usd=max(base.max_notional_usd, 5_000_000.0),
        max_symbol_long_usd=big,
        max_symbol_short_usd=big,
        max_strategy_long_usd=big,
        max_strategy_short_usd=big,
        max_strategy_exposure_usd=big,
        max_gross_exposure_usd=big,
        max_net_exposure_usd=big,
        max_group_exposure_usd=big,
        max_incremental_var_usd2=1e30,
        strategy_orders_per_sec=1e9,
        strategy_burst=1e9,
        node_orders_per_sec=1e9,
        node_burst=1e9,
        duplicate_window_ms=0,
        max_daily_loss_usd=big,
        max_drawdown_usd=big,
    )
