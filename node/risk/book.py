"""The risk state: preallocated numpy arrays indexed by symbol / strategy / group ids, and the id maps.

Layout (the row constants below are compile-time constants for the numba kernels):

- `sf[row, i]` float64, per symbol slot `i`: last price, filled and pending net quantity, effective
  exposure (filled + pending, USD), (C.w)_i, C_ii, group id, UNKNOWN-state flag, price at the last
  covariance sample, contract multiplier (`node/instruments.py`: prices in `PX` are per contract, a
  per-share tick is this many times larger there).
- `sa[c, i, :]` float64, per strategy column `c` and symbol: effective quantity, filled quantity,
  then the duplicate-order ring (K signed sizes, K kinds); `sn[c, i, k]` int64: the ring's times.
- `tf[row, c]` float64 / `ti[row, c]` int64, per column: column 0 is the node (kill switch, state,
  system breaker, node token bucket), column 1 the execution breaker, columns 2.. the strategies.
- `g` float64: the limits, the node aggregates (gross, net, w'Cw, equity), then one net exposure per group.
- `cov` float64 [cap, cap]: the return covariance over the risk horizon (dense).

Ids are handed out once per string; arrays grow by doubling (covariance by at most 2,048 rows at a
time), always off the per-signal path except when a burst of new symbols exhausts the headroom.
"""

from __future__ import annotations

import numpy as np

from node.instruments import node_multipliers
from node.risk.config import RiskLimits

# ---- sf rows (per symbol)
PX, QTY, PEND, EXP, CW, CII, GRP, UNK, WPX, MULT = range(10)
NSF = 10
# ---- sa layout (per strategy, symbol)
DUP_K = 4
SA_EFF, SA_FILL, SA_DUP = 0, 1, 2  # ring sizes at SA_DUP + k, kinds at SA_DUP + DUP_K + k
SA_W = 2 + 2 * DUP_K
# ---- tf rows (per column)
T_LONG, T_SHORT, T_CASH, T_MV, T_PEAK, T_DAY0, T_TOK = range(7)
NTF = 7
# ---- ti rows (per column)
I_KILLED, I_PAUSED, I_STATE, I_BR_STATE, I_BR_UNTIL, I_BR_PROBES, I_BR_FAILS, I_BR_WIN, I_TOK_NS, I_USED = range(10)
NTI = 10
COL_NODE, COL_EXEC, COL_FIRST_STRATEGY = 0, 1, 2
# ---- g layout: limits, node aggregates, groups
(
    L_MAX_QTY, L_MAX_NOTIONAL, L_POS_PCT, L_SYM_LONG, L_SYM_SHORT, L_STRAT_LONG, L_STRAT_SHORT,
    L_STRAT_EXP, L_GROSS, L_NET, L_GROUP, L_VAR, L_COLLAR_BPS, L_COLLAR_TICKS, L_TICK, L_SLIP_DEFAULT,
    L_SLIP_CAP, L_S_RATE, L_S_BURST, L_N_RATE, L_N_BURST, L_DUP_NS, L_DAILY, L_DD, L_PROBES,
) = range(25)
G_GROSS, G_NET, G_VAR, G_EQUITY = 25, 26, 27, 28
G_GROUPS = 32
# ---- order types as kernel codes
OT_MARKET, OT_LIMIT, OT_STOP, OT_STOP_LIMIT = 0, 1, 2, 3
NO_GROUP = -1


def limits_vector(cfg: RiskLimits, out: np.ndarray) -> None:
    """Write the limits of `cfg` into the head of `g`."""
    out[L_MAX_QTY] = cfg.max_quantity
    out[L_MAX_NOTIONAL] = cfg.max_notional_usd
    out[L_POS_PCT] = cfg.max_position_pct
    out[L_SYM_LONG] = cfg.max_symbol_long_usd
    out[L_SYM_SHORT] = cfg.max_symbol_short_usd
    out[L_STRAT_LONG] = cfg.max_strategy_long_usd
    out[L_STRAT_SHORT] = cfg.max_strategy_short_usd
    out[L_STRAT_EXP] = cfg.max_strategy_exposure_usd
    out[L_GROSS] = cfg.max_gross_exposure_usd
    out[L_NET] = cfg.max_net_exposure_usd
    out[L_GROUP] = cfg.max_group_exposure_usd
    out[L_VAR] = cfg.max_incremental_var_usd2
    out[L_COLLAR_BPS] = cfg.price_collar_bps
    out[L_COLLAR_TICKS] = float(cfg.price_collar_ticks)
    out[L_TICK] = cfg.tick_size_usd
    out[L_SLIP_DEFAULT] = cfg.default_max_slippage
    out[L_SLIP_CAP] = cfg.max_slippage_cap
    out[L_S_RATE] = cfg.strategy_orders_per_sec
    out[L_S_BURST] = cfg.strategy_burst
    out[L_N_RATE] = cfg.node_orders_per_sec
    out[L_N_BURST] = cfg.node_burst
    out[L_DUP_NS] = cfg.duplicate_window_ms * 1e6
    out[L_DAILY] = cfg.max_daily_loss_usd
    out[L_DD] = cfg.max_drawdown_usd
    out[L_PROBES] = float(cfg.breaker_probe_orders)


def _grow_cap(cap: int, need: int, step_max: int) -> int:
    while cap < need:
        cap = cap + min(cap, step_max)
    return cap


class RiskBook:
    """Arrays plus string -> id maps. Pure state: no checks here, no I/O."""

    def __init__(self, cfg: RiskLimits, equity: float) -> None:
        self.cfg = cfg
        self.prior_var = cfg.default_daily_vol * cfg.default_daily_vol
        self.multipliers = node_multipliers(cfg)
        self.sym_ids: dict[str, int] = {}
        self.sym_names: list[str] = []
        self.strat_ids: dict[str, int] = {}  # -> column c (>= COL_FIRST_STRATEGY)
        self.strat_names: list[str] = []
        self.group_ids: dict[str, int] = {}
        self.group_names: list[str] = []
        cs, cc, cg = cfg.initial_symbol_capacity, cfg.initial_strategy_capacity + COL_FIRST_STRATEGY, cfg.initial_group_capacity
        self.sf = np.zeros((NSF, cs))
        self.sf[GRP, :] = NO_GROUP
        self.sa = np.zeros((cc, cs, SA_W))
        self.sn = np.zeros((cc, cs, DUP_K), dtype=np.int64)
        self.tf = np.zeros((NTF, cc))
        self.ti = np.zeros((NTI, cc), dtype=np.int64)
        self.g = np.zeros(G_GROUPS + cg)
        self.cov = np.zeros((cs, cs))
        limits_vector(cfg, self.g)
        self.g[G_EQUITY] = equity
        self.tf[T_TOK, COL_NODE] = cfg.node_burst
        self.ti[I_USED, COL_NODE] = 1
        self.ti[I_USED, COL_EXEC] = 1

    # ------------------------------------------------------------ sizes
    @property
    def n_symbols(self) -> int:
        return len(self.sym_names)

    @property
    def n_cols(self) -> int:
        return COL_FIRST_STRATEGY + len(self.strat_names)

    @property
    def sym_capacity(self) -> int:
        return self.sf.shape[1]

    # ------------------------------------------------------------ ids
    def add_symbol(self, symbol: str) -> int:
        """The slot of `symbol`, added if new (grows the arrays when full)."""
        i = self.sym_ids.get(symbol)
        if i is not None:
            return i
        i = len(self.sym_names)
        if i >= self.sf.shape[1]:
            self.grow_symbols(i + 1)
        self.sym_ids[symbol] = i
        self.sym_names.append(symbol)
        self.sf[:, i] = 0.0
        self.sf[GRP, i] = NO_GROUP
        self.sf[CII, i] = self.prior_var
        self.sf[MULT, i] = self.multipliers.of(symbol)
        self.cov[i, i] = self.prior_var
        group = self.cfg.symbol_groups.get(symbol)
        if group is not None:
            self.sf[GRP, i] = self.add_group(group)
        return i

    def add_strategy(self, strategy_id: str) -> int:
        c = self.strat_ids.get(strategy_id)
        if c is not None:
            return c
        c = COL_FIRST_STRATEGY + len(self.strat_names)
        if c >= self.tf.shape[1]:
            self.grow_strategies(c + 1)
        self.strat_ids[strategy_id] = c
        self.strat_names.append(strategy_id)
        self.tf[:, c] = 0.0
        self.tf[T_TOK, c] = self.cfg.strategy_burst
        self.ti[:, c] = 0
        self.ti[I_USED, c] = 1
        return c

    def add_group(self, group: str) -> int:
        k = self.group_ids.get(group)
        if k is not None:
            return k
        k = len(self.group_names)
        if G_GROUPS + k >= self.g.shape[0]:
            g = np.zeros(G_GROUPS + 2 * (self.g.shape[0] - G_GROUPS))
            g[: self.g.shape[0]] = self.g
            self.g = g
        self.group_ids[group] = k
        self.group_names.append(group)
        return k

    # ------------------------------------------------------------ growth (copies; off the hot path)
    def grow_symbols(self, need: int) -> None:
        old = self.sf.shape[1]
        cap = _grow_cap(old, need, 2_048)
        sf = np.zeros((NSF, cap))
        sf[GRP, :] = NO_GROUP
        sf[:, :old] = self.sf
        sa = np.zeros((self.sa.shape[0], cap, SA_W))
        sa[:, :old, :] = self.sa
        sn = np.zeros((self.sn.shape[0], cap, DUP_K), dtype=np.int64)
        sn[:, :old, :] = self.sn
        cov = np.zeros((cap, cap))
        cov[:old, :old] = self.cov
        self.sf, self.sa, self.sn, self.cov = sf, sa, sn, cov

    def grow_strategies(self, need: int) -> None:
        old = self.tf.shape[1]
        cap = _grow_cap(old, need, 1 << 20)
        tf = np.zeros((NTF, cap))
        tf[:, :old] = self.tf
        ti = np.zeros((NTI, cap), dtype=np.int64)
        ti[:, :old] = self.ti
        sa = np.zeros((cap, self.sa.shape[1], SA_W))
        sa[:old] = self.sa
        sn = np.zeros((cap, self.sn.shape[1], DUP_K), dtype=np.int64)
        sn[:old] = self.sn
        self.tf, self.ti, self.sa, self.sn = tf, ti, sa, sn

    def ensure_headroom(self) -> None:
        """Grow before the arrays are full, so first-sight slots on the signal path never copy."""
        n = self.n_symbols
        if n + max(8, n // 4) > self.sf.shape[1]:
            self.grow_symbols(n + max(8, n // 4) + 1)
        c = self.n_cols
        if c + 2 > self.tf.shape[1]:
            self.grow_strategies(c + 3)
