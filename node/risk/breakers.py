"""Circuit breakers: system, execution, and one per strategy, each CLOSED / OPEN / HALF_OPEN.

State lives in the `ti` columns of the risk book (column 0 = system, 1 = execution, 2.. = strategies)
so the check kernel reads it in place. This module holds the transitions, all driven by an injected
clock (`now_ns` arguments, never the wall clock):

- CLOSED: failures are counted in a window of `breaker_window_ms`; reaching the threshold opens it.
- OPEN: blocks until `until_ns` (cool-down); after that the check treats it as HALF_OPEN.
- HALF_OPEN: lets `breaker_probe_orders` through (the commit kernel counts them); a success closes
  it, a failure re-opens it for another cool-down.
- `trip` opens immediately (loss limits, an operator), `reset` closes (manual reset).

`states()` / `restore()` give and take plain dicts for the `circuit_breaker_state` table.
"""

from __future__ import annotations

import numpy as np

from node.risk.book import COL_EXEC, COL_NODE, I_BR_FAILS, I_BR_PROBES, I_BR_STATE, I_BR_UNTIL, I_BR_WIN
from node.risk.config import BreakerState, RiskLimits

SYSTEM = "system"
EXECUTION = "execution"
STRATEGY_PREFIX = "strategy:"


def breaker_name(strategy_id: str | None) -> str:
    """`system`, `execution` or `strategy:<id>`."""
    return STRATEGY_PREFIX + strategy_id if strategy_id is not None else SYSTEM


class Breakers:
    """Transitions of every breaker column of `ti` (the arrays are owned by the risk book)."""

    def __init__(self, cfg: RiskLimits) -> None:
        self._window_ns = cfg.breaker_window_ms * 1_000_000
        self._cooldown_ns = cfg.breaker_cooldown_ms * 1_000_000
        self._thresholds = {COL_NODE: cfg.system_failure_threshold, COL_EXEC: cfg.execution_failure_threshold}
        self._strategy_threshold = cfg.strategy_failure_threshold

    def _threshold(self, col: int) -> int:
        return self._thresholds.get(col, self._strategy_threshold)

    @staticmethod
    def state(ti: np.ndarray, col: int, now_ns: int) -> BreakerState:
        """The effective state at `now_ns` (an OPEN breaker past its cool-down reads HALF_OPEN)."""
        st = BreakerState(int(ti[I_BR_STATE, col]))
        if st is BreakerState.OPEN and now_ns >= ti[I_BR_UNTIL, col]:
            return BreakerState.HALF_OPEN
        return st

    def failure(self, ti: np.ndarray, col: int, now_ns: int) -> bool:
        """Count one failure; returns True when this failure opened the breaker."""
        st = self.state(ti, col, now_ns)
        if st is BreakerState.HALF_OPEN:  # the probe failed
            self.trip(ti, col, now_ns)
            return True
        if st is BreakerState.OPEN:
            return False
        if now_ns - ti[I_BR_WIN, col] >= self._window_ns or ti[I_BR_FAILS, col] == 0:
            ti[I_BR_WIN, col] = now_ns
            ti[I_BR_FAILS, col] = 0
        ti[I_BR_FAILS, col] += 1
        if ti[I_BR_FAILS, col] >= self._threshold(col):
            self.trip(ti, col, now_ns)
            return True
        return False

    def success(self, ti: np.ndarray, col: int, now_ns: int) -> None:
        """A probe (or any order) went through: HALF_OPEN closes."""
        if self.state(ti, col, now_ns) is BreakerState.HALF_OPEN and ti[I_BR_PROBES, col] > 0:
            self.reset(ti, col)

    def trip(self, ti: np.ndarray, col: int, now_ns: int) -> None:
        ti[I_BR_STATE, col] = int(BreakerState.OPEN)
        ti[I_BR_UNTIL, col] = now_ns + self._cooldown_ns
        ti[I_BR_PROBES, col] = 0
        ti[I_BR_FAILS, col] = 0
        ti[I_BR_WIN, col] = now_ns

    @staticmethod
    def reset(ti: np.ndarray, col: int) -> None:
        ti[I_BR_STATE, col] = int(BreakerState.CLOSED)
        ti[I_BR_UNTIL, col] = 0
        ti[I_BR_PROBES, col] = 0
        ti[I_BR_FAILS, col] = 0
        ti[I_BR_WIN, col] = 0

    # ------------------------------------------------------------ persistence
    @staticmethod
    def snapshot(ti: np.ndarray, col: int) -> dict:
        """One breaker as a plain dict (the stored state, not the effective one)."""
        return {
            "state": BreakerState(int(ti[I_BR_STATE, col])).name,
            "until_ns": int(ti[I_BR_UNTIL, col]),
            "probes": int(ti[I_BR_PROBES, col]),
            "failures": int(ti[I_BR_FAILS, col]),
            "window_start_ns": int(ti[I_BR_WIN, col]),
        }

    @staticmethod
    def load(ti: np.ndarray, col: int, data: dict) -> None:
        ti[I_BR_STATE, col] = int(BreakerState[data["state"]])
        ti[I_BR_UNTIL, col] = int(data.get("until_ns", 0))
        ti[I_BR_PROBES, col] = int(data.get("probes", 0))
        ti[I_BR_FAILS, col] = int(data.get("failures", 0))
        ti[I_BR_WIN, col] = int(data.get("window_start_ns", 0))
