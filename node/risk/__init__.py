"""Pre-trade risk: numba kernels over numpy state, a pure-Python reference, breakers and the facade."""

from node.risk.config import BreakerState, RiskLimits, TradingState
from node.risk.engine import PreTradeRisk

__all__ = ["BreakerState", "PreTradeRisk", "RiskLimits", "TradingState"]
