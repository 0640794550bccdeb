"""Instruments: what a symbol is, read from its spelling (pure logic, no I/O).

An OCC option symbol (`AAPL250117C00150000`, or Schwab's padded `AAPL  250117C00150000`: root,
expiry yymmdd, C/P, strike x 1000 in 8 digits) is one contract on `option_multiplier` (100) shares;
anything else is one share, unless `contract_multipliers` names it. Pre-trade risk counts every
notional as quantity x price x multiplier (node/risk/engine.py); so does every cash and PnL figure
(`Multipliers.value`): the node's PnL (node/pnl.py), its expected cash and the reconciler's cash diff
(node/reconcile.py), the shadow copies taken out of a broker's book (node/modes.py), and the paper
venue's cash and equity. Prices stay per share (as fills and brokers quote them).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from node.risk.config import RiskLimits

#: OCC option symbol, the root padded or not: root, yymmdd, C/P, strike * 1000 in 8 digits
OCC_SYMBOL = re.compile(r"^([A-Z0-9.]{1,6}) *(\d{6})([CP])(\d{8})$")
DEFAULT_OPTION_MULTIPLIER = 100.0


def is_occ_option(symbol: str) -> bool:
    return OCC_SYMBOL.match(symbol) is not None


class Multipliers:
    """Symbol -> contract multiplier: the configured one, else `option_multiplier` for an OCC
    option symbol, else 1. Answers are cached (a dict lookup on the pre-trade path)."""

    def __init__(self, option_multiplier: float = DEFAULT_OPTION_MULTIPLIER,
                 configured: Mapping[str, float] | None = None) -> None:
        self._option = float(option_multiplier)
        self._known: dict[str, float] = {k: float(v) for k, v in (configured or {}).items()}

    def of(self, symbol: str) -> float:
        m = self._known.get(symbol)
        if m is None:
            m = self._option if OCC_SYMBOL.match(symbol) is not None else 1.0
            if len(self._known) < 1_000_000:
                self._known[symbol] = m
        return m

    def value(self, symbol: str, qty: float, px: float) -> float:
        """What `qty` contracts of `symbol` at `px` (per share) are worth: qty x px x multiplier."""
        return qty * px * self.of(symbol)


def node_multipliers(risk: RiskLimits) -> Multipliers:
    """The node's contract multipliers, from its risk config (`option_multiplier`,
    `contract_multipliers`): the one place every part of the node takes them from (pre-trade risk,
    the validator, the reconciler, the paper venue and the broker venues)."""
    return Multipliers(risk.option_multiplier, risk.contract_multipliers)


#: the default multipliers (OCC options 100, anything else 1): a caller without the node's risk config
DEFAULT_MULTIPLIERS = Multipliers()
