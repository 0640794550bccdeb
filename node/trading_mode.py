"""The paper / shadow / canary / live modes of a strategy (node.modes): a leaf module, so that the
config and the control stream both name them without importing each other."""

from __future__ import annotations

from enum import StrEnum


class TradingMode(StrEnum):
    """How much of a strategy's flow reaches its live broker (node.modes)."""

    PAPER = "paper"  # the paper group only
    SHADOW = "shadow"  # the live group, and a copy of every order at the paper group (kept apart)
    CANARY = "canary"  # a capped share live, the rest to the paper group
    LIVE = "live"  # the live group only


class CanaryBasis(StrEnum):
    COUNT = "count"  # the share counts signals
    NOTIONAL = "notional"  # the share counts notional (USD)
