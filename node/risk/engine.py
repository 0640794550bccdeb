"""`PreTradeRisk`: the facade the validator calls on every signal, hostable without Ray or sockets.

Per signal: map symbol / strategy / group to ids (dict lookups), one numba call that runs every check
and returns a bitmask, reasons built only when the mask is non-zero. `check` never changes risk state;
`commit` reserves what an accepted order uses (throttle tokens, breaker probes, the duplicate window,
pending exposure) and `release` gives it back if the acceptance is undone; `check_commit` is the two
in one kernel call (the gate's path: the arguments built and the kernel dispatched once a signal). Fills, prices, rejects and
operator controls update the state off the pre-trade path. Every time is an injected `now_ns`.

Exposure checks see filled + pending (committed, not yet filled or cancelled) positions; the
covariance check sees filled positions (C.w follows fills and prices, O(n) each).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from node.messages import BUY_ACTIONS, ExecKind, ExecutionReport, OrderType, Side, Signal
from node.reasons import Reason
from node.risk.book import (
    COL_EXEC, COL_FIRST_STRATEGY, COL_NODE, DUP_K, G_EQUITY, G_GROSS, G_NET, G_VAR, I_BR_PROBES, I_BR_STATE,
    I_KILLED, I_PAUSED, I_STATE, L_N_BURST, L_S_BURST, OT_LIMIT, OT_MARKET, OT_STOP, OT_STOP_LIMIT, PX, SA_DUP,
    SA_FILL, T_CASH, T_DAY0, T_MV, T_PEAK, T_TOK, UNK, RiskBook, limits_vector,
)
from node.risk.breakers import EXECUTION, STRATEGY_PREFIX, SYSTEM, Breakers
from node.risk.config import BreakerState, RiskLimits, TradingState
from node.risk.controls import checked_limits
from node.risk.kernels import (
    BR_HALF_OPEN, apply_fill, apply_price, check_commit_order, check_order, commit_order, ewma_step, mask_to_reasons, recompute_cw,
    release_pending, symmetrize,
)

_OTYPE = {OrderType.MARKET: OT_MARKET, OrderType.LIMIT: OT_LIMIT, OrderType.STOP: OT_STOP,
          OrderType.STOP_LIMIT: OT_STOP_LIMIT}
_FILLS = frozenset({ExecKind.PARTIAL_FILL, ExecKind.FILL})
_DONE = frozenset({ExecKind.CANCELED, ExecKind.REJECTED})
_DAY_NS = 86_400 * 1_000_000_000
_SEEN_FILLS_MAX = 200_000


class PreTradeRisk:
    """Pre-trade risk for one node: checks, reservations, fills, prices, breakers, controls."""

    def __init__(self, cfg: RiskLimits, symbols: list[str], prices: dict[str, float], equity: float) -> None:
        self.cfg = cfg
        self.book = RiskBook(cfg, equity)
        self._breakers = Breakers(cfg)
        self._allowed = frozenset(cfg.symbols)
        #: prices in the book are per contract (price x multiplier): every notional the kernels take
        #: (qty x price) is then the contract's; limit, stop and fill prices are scaled on the way in
        self._mult = self.book.multipliers
        self._pending: dict[str, list] = {}  # request_id -> [col, sym, remaining signed qty, commit ns]
        self._seen_fills: OrderedDict[str, None] = OrderedDict()
        self._reasons: dict[int, tuple[Reason, ...]] = {}
        self._loss_tripped: set[int] = set()
        self._day_end_ns = 0
        self._sample_ns = 0
        interval = cfg.cov_sample_interval_ms
        self._sample_every_ns = interval * 1_000_000
        self._ewma_scale = math.sqrt(cfg.cov_horizon_secs * 1000.0 / interval) if interval else 0.0
        for symbol in list(cfg.symbols) + list(symbols) + list(prices):
            if self._allowed and symbol not in self._allowed:
                continue
            self.book.add_symbol(symbol)
        for symbol, price in prices.items():
            i = self.book.sym_ids.get(symbol)
            if i is not None and price > 0.0:
                self._set_price(i, float(price) * self._mult.of(symbol))
        self.book.ensure_headroom()

    # ------------------------------------------------------------ start-up
    def warm(self) -> None:
        """Compile (or load from the numba cache) every kernel on a scratch book, never the live one."""
        scratch = RiskBook(self.cfg, 1_000_000.0)
        i = scratch.add_symbol("WARM")
        c = scratch.add_strategy("warm")
        gid = scratch.add_group("warm")
        b = scratch
        apply_price(b.sf, b.tf, b.sa, b.g, b.cov, 1, b.n_cols, i, 100.0)
        for otype in (OT_MARKET, OT_LIMIT):
            check_order(b.sf, b.tf, b.ti, b.sa, b.sn, b.g, c, i, gid, 1.0, 1.0, False, otype, 100.0, 0.0,
                        -1.0, -1.0, -1.0, 1)
        dq = commit_order(b.sf, b.tf, b.ti, b.sa, b.sn, b.g, c, i, gid, 1.0, 1.0, False, OT_MARKET, 0.0, 0.0, 1)
        for otype in (OT_MARKET, OT_LIMIT):
            check_commit_order(b.sf, b.tf, b.ti, b.sa, b.sn, b.g, c, i, gid, 1.0, 1.0, False, otype, 100.0, 0.0,
                               -1.0, -1.0, -1.0, 1)
        apply_fill(b.sf, b.tf, b.sa, b.g, b.cov, 1, c, i, 1.0, dq, 100.0)
        release_pending(b.sf, b.tf, b.sa, b.g, c, i, 0.0)
        recompute_cw(b.sf, b.g, b.cov, 1)
        symmetrize(b.cov, 1)
        ewma_step(b.sf, b.g, b.cov, 1, 0.94, 1.0)

    # ------------------------------------------------------------ the per-signal path
    def check(self, signal: Signal, now_ns: int) -> list[Reason]:
        """Every failed check's reason ([] = pass). Does not change risk state."""
        return self._reasons_of(check_order(*self._order_args(signal, now_ns)))

    def check_commit(self, signal: Signal, now_ns: int) -> list[Reason]:
        """`check`, then `commit` if every check passed, in one kernel call: the failed checks' reasons
        ([] = passed and reserved, exactly as `check` then `commit` would have left the book)."""
        args = self._order_args(signal, now_ns)
        mask, dq = check_commit_order(*args)
        if mask != 0:
            return self._reasons_of(mask)
        self._pending[signal.request_id] = [args[6], args[7], dq, now_ns]
        self.book.ensure_headroom()
        return []

    def _reasons_of(self, mask: int) -> list[Reason]:
        if mask == 0:
            return []
        reasons = self._reasons.get(mask)
        if reasons is None:
            reasons = self._reasons[mask] = tuple(mask_to_reasons(mask))
        return list(reasons)

    def _order_args(self, signal: Signal, now_ns: int) -> tuple:
        """`check_order`'s arguments for `signal` (rolls the day; a new symbol, strategy or group takes
        its slot here)."""
        if now_ns >= self._day_end_ns:
            self._roll_day(now_ns)
        b = self.book
        i = b.sym_ids.get(signal.symbol)
        if i is None:
            i = self._first_sight(signal.symbol)
        c = b.strat_ids.get(signal.strategy_id)
        if c is None:
            c = b.add_strategy(signal.strategy_id)
        group = signal.correlation_group
        gid = -1 if group is None else b.group_ids.get(group, -1)
        if gid < 0 and group is not None:
            gid = b.add_group(group)
        qty = signal.quantity
        notional = qty is None
        size = float(signal.notional if notional else qty)
        meta = signal.risk_meta
        if meta is None:
            m_exp = m_pct = m_slip = -1.0
        else:
            m_exp = -1.0 if meta.max_exposure is None else float(meta.max_exposure)
            m_pct = -1.0 if meta.max_position_pct is None else float(meta.max_position_pct)
            m_slip = -1.0 if meta.max_slippage is None else float(meta.max_slippage)
        lp = signal.limit_price
        sp = signal.stop_price
        mult = self._mult.of(signal.symbol)
        if mult != 1.0:
            lp = None if lp is None else lp * mult
            sp = None if sp is None else sp * mult
        return (b.sf, b.tf, b.ti, b.sa, b.sn, b.g, c, i, gid, 1.0 if signal.action in BUY_ACTIONS else -1.0, size,
                notional, _OTYPE[signal.order_type], 0.0 if lp is None else float(lp),
                0.0 if sp is None else float(sp), m_exp, m_pct, m_slip, now_ns)

    def kernel_args(self, signal: Signal, now_ns: int) -> tuple:
        """The exact `check_order` arguments `check` builds (tests and benchmarks); ids must exist."""
        b = self.book
        group = signal.correlation_group
        gid = b.group_ids.get(group, -1) if group is not None else -1
        qty = signal.quantity
        notional = qty is None
        meta = signal.risk_meta
        m = [-1.0, -1.0, -1.0]
        if meta is not None:
            for k, v in enumerate((meta.max_exposure, meta.max_position_pct, meta.max_slippage)):
                if v is not None:
                    m[k] = float(v)
        lp, sp = signal.limit_price, signal.stop_price
        mult = self._mult.of(signal.symbol)
        lp = None if lp is None else lp * mult
        sp = None if sp is None else sp * mult
        return (b.sf, b.tf, b.ti, b.sa, b.sn, b.g, b.strat_ids[signal.strategy_id], b.sym_ids.get(signal.symbol, -1),
                gid, 1.0 if signal.action in BUY_ACTIONS else -1.0, float(signal.notional if notional else qty),
                notional, _OTYPE[signal.order_type], 0.0 if lp is None else float(lp),
                0.0 if sp is None else float(sp), m[0], m[1], m[2], now_ns)

    def commit(self, signal: Signal, now_ns: int) -> None:
        """Reserve an ACCEPTED order: throttle tokens, breaker probe, duplicate window, pending exposure."""
        b = self.book
        i = b.sym_ids.get(signal.symbol, -1)
        c = b.add_strategy(signal.strategy_id)
        group = signal.correlation_group
        gid = -1 if group is None else b.add_group(group)
        qty = signal.quantity
        notional = qty is None
        lp, sp = signal.limit_price, signal.stop_price
        mult = self._mult.of(signal.symbol)
        if mult != 1.0:
            lp = None if lp is None else lp * mult
            sp = None if sp is None else sp * mult
        dq = commit_order(
            b.sf, b.tf, b.ti, b.sa, b.sn, b.g, c, i, gid, 1.0 if signal.action in BUY_ACTIONS else -1.0,
            float(signal.notional if notional else qty), notional, _OTYPE[signal.order_type],
            0.0 if lp is None else float(lp), 0.0 if sp is None else float(sp), now_ns,
        )
        self._pending[signal.request_id] = [c, i, dq, now_ns]
        b.ensure_headroom()

    def release(self, signal: Signal, now_ns: int) -> None:
        """Undo `commit` (the acceptance could not be made durable): exposure, tokens, window, probe."""
        rec = self._pending.pop(signal.request_id, None)
        if rec is None:
            return
        b = self.book
        c, i, dq, t = rec
        if i >= 0 and dq != 0.0:
            release_pending(b.sf, b.tf, b.sa, b.g, c, i, dq)
        b.tf[T_TOK, COL_NODE] = min(b.tf[T_TOK, COL_NODE] + 1.0, b.g[L_N_BURST])
        b.tf[T_TOK, c] = min(b.tf[T_TOK, c] + 1.0, b.g[L_S_BURST])
        if i >= 0:
            for k in range(DUP_K):
                if b.sn[c, i, k] == t:
                    b.sn[c, i, k] = 0
                    b.sa[c, i, SA_DUP + k] = 0.0
        for col in (COL_NODE, COL_EXEC, c):
            if b.ti[I_BR_STATE, col] == BR_HALF_OPEN and b.ti[I_BR_PROBES, col] > 0:
                b.ti[I_BR_PROBES, col] -= 1

    # ------------------------------------------------------------ off the pre-trade path
    def on_fill(self, report: ExecutionReport, strategy_id: str) -> None:
        """Book a fill (positions, cash, C.w) or free what a cancel / reject left pending. Idempotent per exec_id."""
        kind = report.kind
        rec = self._pending.get(report.request_id) if report.request_id else None
        now_ns = report.ts_ns
        if now_ns > 0 and now_ns >= self._day_end_ns:
            self._roll_day(now_ns)  # a fill after midnight counts toward the new day
        b = self.book
        if kind in _FILLS and report.last_qty > 0.0:
            if report.exec_id:
                if report.exec_id in self._seen_fills:
                    return
                self._seen_fills[report.exec_id] = None
                if len(self._seen_fills) > _SEEN_FILLS_MAX:
                    self._seen_fills.popitem(last=False)
            i = b.add_symbol(report.symbol)
            c = b.add_strategy(strategy_id)
            px = report.last_px * self._mult.of(report.symbol)
            if b.sf[PX, i] <= 0.0:
                self._set_price(i, px)
            fq = report.last_qty if report.side is Side.BUY else -report.last_qty
            matched = 0.0
            if rec is not None and rec[0] == c and rec[1] == i and rec[2] * fq > 0.0:
                matched = fq if abs(fq) <= abs(rec[2]) else rec[2]
                rec[2] -= matched
            if apply_fill(b.sf, b.tf, b.sa, b.g, b.cov, b.n_symbols, c, i, fq, matched, px):
                self._check_losses(now_ns)
            self._success(c, now_ns)
            if kind is ExecKind.FILL or report.leaves_qty <= 0.0:
                self._drop_pending(report.request_id)
            b.ensure_headroom()
        elif kind in _DONE:
            self._drop_pending(report.request_id)
        elif kind is ExecKind.NEW and strategy_id in b.strat_ids:
            self._success(b.strat_ids[strategy_id], now_ns)

    def on_price(self, symbol: str, price: float, now_ns: int) -> None:
        """A last price: exposures, marks, C.w; an EWMA covariance step when a sample is due."""
        if now_ns >= self._day_end_ns:
            self._roll_day(now_ns)
        b = self.book
        i = b.sym_ids.get(symbol)
        if i is None:
            if self._allowed and symbol not in self._allowed:
                return
            i = b.add_symbol(symbol)
            b.ensure_headroom()
        if price > 0.0 and self._set_price(i, float(price) * self._mult.of(symbol)):
            self._check_losses(now_ns)
        if self._sample_every_ns and now_ns - self._sample_ns >= self._sample_every_ns:
            self._sample_ns = now_ns
            ewma_step(b.sf, b.g, b.cov, b.n_symbols, self.cfg.cov_ewma_lambda, self._ewma_scale)

    def on_broker_reject(self, strategy_id: str, now_ns: int) -> None:
        """A broker refused an order: a failure for the strategy's and the execution breaker."""
        c = self.book.add_strategy(strategy_id)
        self._breakers.failure(self.book.ti, c, now_ns)
        # the strategy's own breaker first: once it is open, its rejects no longer count node-wide,
        # so one strategy cannot open the execution breaker of every strategy (issue 10 item 4)
        if self._breakers.state(self.book.ti, c, now_ns) is BreakerState.CLOSED:
            self._breakers.failure(self.book.ti, COL_EXEC, now_ns)

    def on_engine_error(self, now_ns: int) -> None:
        """An execution engine failed: a failure for the system breaker."""
        self._breakers.failure(self.book.ti, COL_NODE, now_ns)

    # ------------------------------------------------------------ controls
    def kill(self, strategy_id: str | None = None) -> None:
        """Kill switch: node-wide (None) or one strategy. Refuses every order until `unkill`."""
        c = self._col(strategy_id)  # first: a new column may grow (replace) the arrays
        self.book.ti[I_KILLED, c] = 1

    def unkill(self, strategy_id: str | None = None) -> None:
        c = self._col(strategy_id)
        self.book.ti[I_KILLED, c] = 0

    def set_state(self, state: TradingState | str, strategy_id: str | None = None) -> None:
        """ACTIVE / REDUCING (only position-reducing orders) / HALTED, node-wide or per strategy."""
        st = state if isinstance(state, TradingState) else TradingState[str(state)]
        c = self._col(strategy_id)
        self.book.ti[I_STATE, c] = int(st)

    def pause(self, strategy_id: str) -> None:
        c = self.book.add_strategy(strategy_id)
        self.book.ti[I_PAUSED, c] = 1

    def resume(self, strategy_id: str) -> None:
        c = self.book.add_strategy(strategy_id)
        self.book.ti[I_PAUSED, c] = 0

    def multiplier(self, symbol: str) -> float:
        """Shares per unit of `symbol` (an OCC option's contract: 100), `node/instruments.py`."""
        return self._mult.of(symbol)

    def last_price(self, symbol: str) -> float:
        """The symbol's last price, per share as quoted (0.0: none, or an unknown symbol); never adds a slot."""
        i = self.book.sym_ids.get(symbol)
        return 0.0 if i is None else float(self.book.sf[PX, i]) / self._mult.of(symbol)

    def set_symbol_unknown(self, symbol: str, unknown: bool) -> None:
        """An order on `symbol` is UNKNOWN at the broker: refuse every new order on it until cleared."""
        i = self.book.add_symbol(symbol)
        self.book.sf[UNK, i] = 1.0 if unknown else 0.0
        self.book.ensure_headroom()

    def set_limits(self, changes: dict[str, float]) -> None:
        """Change limits at run time (`node.risk.controls.RUNTIME_LIMITS`), validated as a whole
        (raises `ControlError`); the kernels read them from the limits vector on the next signal."""
        cfg = checked_limits(self.cfg, changes)
        self.cfg = cfg
        self.book.cfg = cfg
        limits_vector(cfg, self.book.g)

    def set_equity(self, equity: float) -> None:
        self.book.g[G_EQUITY] = equity

    def reset_breaker(self, name: str) -> None:
        """Manual reset: `system`, `execution` or `strategy:<id>` goes CLOSED."""
        col = self._breaker_col(name)  # first: a new strategy column may grow (replace) `ti`
        Breakers.reset(self.book.ti, col)

    def trip_breaker(self, name: str, now_ns: int) -> None:
        col = self._breaker_col(name)
        self._breakers.trip(self.book.ti, col, now_ns)

    def breaker_state(self, name: str, now_ns: int) -> BreakerState:
        col = self._breaker_col(name)
        return Breakers.state(self.book.ti, col, now_ns)

    def breaker_states(self) -> dict[str, dict]:
        """Every breaker as plain dicts, for the `circuit_breaker_state` table."""
        ti = self.book.ti
        out = {SYSTEM: Breakers.snapshot(ti, COL_NODE), EXECUTION: Breakers.snapshot(ti, COL_EXEC)}
        for sid, c in self.book.strat_ids.items():
            out[STRATEGY_PREFIX + sid] = Breakers.snapshot(ti, c)
        return out

    def restore_breakers(self, states: dict[str, dict]) -> None:
        for name, data in states.items():
            col = self._breaker_col(name)  # first: it may grow `ti`, which must be read after
            Breakers.load(self.book.ti, col, data)
        self.book.ensure_headroom()

    def load_covariance(self, symbols: list[str], matrix: "np.ndarray | list[list[float]]") -> None:
        """Replace the covariance block of `symbols` (returns over the risk horizon); C.w is rebuilt, O(n^2)."""
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape != (len(symbols), len(symbols)):
            raise ValueError("covariance matrix must be len(symbols) x len(symbols)")
        b = self.book
        idx = np.array([b.add_symbol(s) for s in symbols], dtype=np.int64)
        b.ensure_headroom()
        k = len(symbols)
        if k and idx[0] == 0 and idx[-1] == k - 1 and np.all(np.diff(idx) == 1):
            b.cov[:k, :k] = m  # the common case: the universe in slot order, no scatter copy
        else:
            b.cov[np.ix_(idx, idx)] = m
        symmetrize(b.cov, b.n_symbols)
        recompute_cw(b.sf, b.g, b.cov, b.n_symbols)

    def exposures(self) -> dict[str, float]:
        """Node aggregates for metrics: gross, net, portfolio variance (USD^2)."""
        g = self.book.g
        return {"gross_usd": float(g[G_GROSS]), "net_usd": float(g[G_NET]), "variance_usd2": float(g[G_VAR]),
                "equity_usd": float(g[G_EQUITY])}

    def positions(self) -> dict[str, dict[str, float]]:
        """Filled positions (not pending reservations): strategy -> symbol -> signed quantity."""
        b = self.book
        held = b.sa[COL_FIRST_STRATEGY : b.n_cols, : b.n_symbols, SA_FILL]
        out: dict[str, dict[str, float]] = {}
        for c, i in zip(*held.nonzero()):
            out.setdefault(b.strat_names[c], {})[b.sym_names[i]] = float(held[c, i])
        return out

    def strategy_pnl(self, strategy_id: str) -> float:
        c = self.book.strat_ids.get(strategy_id)
        return 0.0 if c is None else float(self.book.tf[T_CASH, c] + self.book.tf[T_MV, c])

    # ------------------------------------------------------------ helpers
    def _first_sight(self, symbol: str) -> int:
        b = self.book
        if (self._allowed and symbol not in self._allowed) or b.n_symbols >= self.cfg.max_symbols:
            return -1
        return b.add_symbol(symbol)

    def _col(self, strategy_id: str | None) -> int:
        return COL_NODE if strategy_id is None else self.book.add_strategy(strategy_id)

    def _breaker_col(self, name: str) -> int:
        if name == SYSTEM:
            return COL_NODE
        if name == EXECUTION:
            return COL_EXEC
        if name.startswith(STRATEGY_PREFIX):
            return self.book.add_strategy(name[len(STRATEGY_PREFIX):])
        raise ValueError("unknown breaker " + repr(name))

    def _set_price(self, i: int, price: float) -> bool:
        b = self.book
        return apply_price(b.sf, b.tf, b.sa, b.g, b.cov, b.n_symbols, b.n_cols, i, price) > 0

    def _success(self, c: int, now_ns: int) -> None:
        ti = self.book.ti
        for col in (COL_NODE, COL_EXEC, c):
            if ti[I_BR_STATE, col] != 0:  # only a non-CLOSED breaker has anything to do
                self._breakers.success(ti, col, now_ns)

    def _drop_pending(self, request_id: str) -> None:
        rec = self._pending.pop(request_id, None) if request_id else None
        if rec is not None and rec[1] >= 0 and rec[2] != 0.0:
            b = self.book
            release_pending(b.sf, b.tf, b.sa, b.g, rec[0], rec[1], rec[2])

    def _check_losses(self, now_ns: int) -> None:
        """Trip a strategy's breaker once per trading day when it is past a loss limit."""
        if not self.cfg.trip_breaker_on_loss:
            return
        tf = self.book.tf
        for c in range(COL_FIRST_STRATEGY, self.book.n_cols):
            if c in self._loss_tripped:
                continue
            pnl = tf[T_CASH, c] + tf[T_MV, c]
            if tf[T_DAY0, c] - pnl > self.cfg.max_daily_loss_usd or tf[T_PEAK, c] - pnl > self.cfg.max_drawdown_usd:
                self._loss_tripped.add(c)
                self._breakers.trip(self.book.ti, c, now_ns)

    def _roll_day(self, now_ns: int) -> None:
        """A new trading day: the daily-loss baseline is each strategy's PnL now."""
        offset = self.cfg.day_start_offset_secs * 1_000_000_000
        self._day_end_ns = ((now_ns - offset) // _DAY_NS + 1) * _DAY_NS + offset
        tf = self.book.tf
        tf[T_DAY0, :] = tf[T_CASH, :] + tf[T_MV, :]
        self._loss_tripped.clear()
