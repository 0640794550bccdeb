"""The basic pre-trade limits: symbol allowlist, max quantity, max notional per order.

The validator uses the full `node.risk.PreTradeRisk` when it is configured; this is the small,
always-available set (and the fallback when no price is known for a notional check).
"""

from __future__ import annotations

from node.config import RiskConfig
from node.messages import Signal
from node.reasons import Reason


class BasicLimits:
    def __init__(self, cfg: RiskConfig, prices: dict[str, float]) -> None:
        self._allowed = frozenset(cfg.symbols)
        self._max_qty = cfg.max_quantity
        self._max_notional = cfg.max_notional
        self._prices = dict(prices)

    def on_price(self, symbol: str, price: float) -> None:
        self._prices[symbol] = price

    def check(self, signal: Signal, now_ns: int) -> list[Reason]:
        reasons: list[Reason] = []
        if self._allowed and signal.symbol not in self._allowed:
            reasons.append(Reason.UNKNOWN_SYMBOL)
        qty = signal.quantity
        if qty is not None and qty > self._max_qty:
            reasons.append(Reason.MAX_QUANTITY)
        if signal.notional is not None:
            notional = signal.notional
        else:
            px = signal.limit_price or signal.stop_price or self._prices.get(signal.symbol, 0.0)
            notional = (qty or 0.0) * px
        if notional > self._max_notional:
            reasons.append(Reason.MAX_NOTIONAL)
        return reasons
