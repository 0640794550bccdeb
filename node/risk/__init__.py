"""Pre-trade risk: numba kernels over numpy state, a pure-Python reference, breakers and the facade.

`PreTradeRisk` (and with it numba and the kernels) is imported on first use: every actor reads its
limits through `node.config` -> `node.risk.config`, and only the validator checks risk, so the
others do not pay numba's import at start."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from node.risk.config import BreakerState, RiskLimits, TradingState

if TYPE_CHECKING:
    from node.risk.engine import PreTradeRisk

__all__ = ["BreakerState", "PreTradeRisk", "RiskLimits", "TradingState"]


def __getattr__(name: str) -> Any:
    if name == "PreTradeRisk":
        from node.risk.engine import PreTradeRisk

        return PreTradeRisk
    raise AttributeError("module 'node.risk' has no attribute " + repr(name))
