"""The numba kernels: every pre-trade check in one call, and the state updates (commit, fill, price).

`check_order` reads the state and returns a bitmask of failed checks (0 = pass); it allocates
nothing and writes nothing. `commit_order` reserves what an accepted order uses (tokens, breaker
probes, the duplicate window, pending exposure). Fills and prices keep the aggregates and the
vector C.w current, so the covariance check is O(1): dVar = 2 x (C.w)_i + x^2 C_ii.

The bit order is `BITS`; `node.risk.reference` is the pure-Python twin of every function here.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from node.reasons import Reason
from node.risk.book import (
    CII, COL_EXEC, COL_FIRST_STRATEGY, COL_NODE, CW, DUP_K, EXP, G_EQUITY, G_GROSS, G_GROUPS, G_NET, G_VAR, GRP,
    I_BR_PROBES, I_BR_STATE, I_BR_UNTIL, I_KILLED, I_PAUSED, I_STATE, I_TOK_NS, L_COLLAR_BPS, L_COLLAR_TICKS,
    L_DAILY, L_DD, L_DUP_NS, L_GROSS, L_GROUP, L_MAX_NOTIONAL, L_MAX_QTY, L_N_BURST, L_N_RATE, L_NET, L_POS_PCT,
    L_PROBES, L_S_BURST, L_S_RATE, L_SLIP_CAP, L_SLIP_DEFAULT, L_STRAT_EXP, L_STRAT_LONG, L_STRAT_SHORT,
    L_SYM_LONG, L_SYM_SHORT, L_TICK, L_VAR, MULT, OT_LIMIT, OT_MARKET, OT_STOP, OT_STOP_LIMIT, PEND, PX, QTY,
    SA_DUP, SA_EFF, SA_FILL, T_CASH, T_DAY0, T_LONG, T_MV, T_PEAK, T_SHORT, T_TOK, UNK, WPX,
)

#: bit k of a check mask means BITS[k] failed
BITS: tuple[Reason, ...] = (
    Reason.KILL_SWITCH, Reason.STRATEGY_KILLED, Reason.STRATEGY_PAUSED, Reason.HALTED, Reason.REDUCE_ONLY,
    Reason.BREAKER_SYSTEM, Reason.BREAKER_EXECUTION, Reason.BREAKER_STRATEGY, Reason.MAX_QUANTITY,
    Reason.MAX_NOTIONAL, Reason.MAX_POSITION, Reason.MAX_EXPOSURE, Reason.MAX_POSITION_PCT,
    Reason.GROSS_EXPOSURE, Reason.NET_EXPOSURE, Reason.GROUP_EXPOSURE, Reason.PORTFOLIO_VARIANCE,
    Reason.PRICE_COLLAR, Reason.SLIPPAGE_COLLAR, Reason.THROTTLE_STRATEGY, Reason.THROTTLE_NODE,
    Reason.DUPLICATE_ORDER, Reason.DAILY_LOSS, Reason.MAX_DRAWDOWN, Reason.UNKNOWN_SYMBOL,
    Reason.SYMBOL_UNKNOWN_STATE, Reason.NO_PRICE,
)
(
    B_KILL, B_STRAT_KILLED, B_PAUSED, B_HALTED, B_REDUCE, B_BR_SYS, B_BR_EXEC, B_BR_STRAT, B_MAX_QTY,
    B_MAX_NOTIONAL, B_MAX_POS, B_MAX_EXP, B_POS_PCT, B_GROSS, B_NET, B_GROUP, B_VAR, B_COLLAR, B_SLIP,
    B_THR_STRAT, B_THR_NODE, B_DUP, B_DAILY, B_DD, B_UNKNOWN_SYMBOL, B_UNKNOWN_STATE, B_NO_PRICE,
) = (1 << k for k in range(len(BITS)))

ST_REDUCING, ST_HALTED = 1, 2
BR_OPEN, BR_HALF_OPEN = 1, 2
_EPS = 1e-9

_jit = nb.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)


def mask_to_reasons(mask: int) -> list[Reason]:
    """The reason codes of a non-zero mask, in BITS order."""
    return [r for k, r in enumerate(BITS) if mask >> k & 1]


# ---------------------------------------------------------------- helpers


@_jit
def bucket_tokens(tokens: float, last_ns: int, now_ns: int, rate: float, burst: float) -> float:
    """Tokens a bucket holds at `now_ns` (refilled at `rate` per second, capped at `burst`)."""
    if now_ns > last_ns:
        tokens += (now_ns - last_ns) * 1e-9 * rate
    return min(tokens, burst)


@_jit
def breaker_blocks(ti: np.ndarray, c: int, now_ns: int, probes: float) -> bool:
    """OPEN before its cool-down ends blocks; after it (HALF_OPEN) only `probes` orders pass."""
    state = ti[I_BR_STATE, c]
    if state == BR_OPEN:
        return now_ns < ti[I_BR_UNTIL, c] or probes < 1.0
    if state == BR_HALF_OPEN:
        return ti[I_BR_PROBES, c] >= probes
    return False


@_jit
def _reduces(q: float, dq: float) -> bool:
    return q * dq < 0.0 and abs(dq) <= abs(q) * (1.0 + _EPS)


# ---------------------------------------------------------------- the check


@_jit
def check_order(sf, tf, ti, sa, sn, g, c, i, gid, side, size, is_notional, otype, limit_px, stop_px,
                meta_exposure, meta_pct, meta_slippage, now_ns) -> int:
    """All checks for one order; returns the failed-check bitmask. `i` < 0: symbol not allowed.

    side is +1 / -1; size is a quantity or (is_notional) USD; meta_* < 0 means "not given".
    """
    mask = 0
    if ti[I_KILLED, COL_NODE] != 0:
        mask |= B_KILL
    if ti[I_KILLED, c] != 0:
        mask |= B_STRAT_KILLED
    if ti[I_PAUSED, c] != 0:
        mask |= B_PAUSED
    nstate = ti[I_STATE, COL_NODE]
    sstate = ti[I_STATE, c]
    if nstate == ST_HALTED or sstate == ST_HALTED:
        mask |= B_HALTED
    probes = g[L_PROBES]
    if breaker_blocks(ti, COL_NODE, now_ns, probes):
        mask |= B_BR_SYS
    if breaker_blocks(ti, COL_EXEC, now_ns, probes):
        mask |= B_BR_EXEC
    if breaker_blocks(ti, c, now_ns, probes):
        mask |= B_BR_STRAT
    if bucket_tokens(tf[T_TOK, COL_NODE], ti[I_TOK_NS, COL_NODE], now_ns, g[L_N_RATE], g[L_N_BURST]) < 1.0:
        mask |= B_THR_NODE
    if bucket_tokens(tf[T_TOK, c], ti[I_TOK_NS, c], now_ns, g[L_S_RATE], g[L_S_BURST]) < 1.0:
        mask |= B_THR_STRAT
    if otype == OT_MARKET:
        slip = meta_slippage if meta_slippage >= 0.0 else g[L_SLIP_DEFAULT]
        if slip > g[L_SLIP_CAP]:
            mask |= B_SLIP
    pnl = tf[T_CASH, c] + tf[T_MV, c]
    daily_hit = tf[T_DAY0, c] - pnl > g[L_DAILY]
    dd_hit = tf[T_PEAK, c] - pnl > g[L_DD]
    px = 0.0
    if i < 0:
        mask |= B_UNKNOWN_SYMBOL
    else:
        px = sf[PX, i]
        if sf[UNK, i] != 0.0:
            mask |= B_UNKNOWN_STATE
        if px <= 0.0:
            mask |= B_NO_PRICE
    if px <= 0.0:  # no slot or no price: only what needs neither
        if is_notional:
            if size > g[L_MAX_NOTIONAL]:
                mask |= B_MAX_NOTIONAL
        elif size > g[L_MAX_QTY]:
            mask |= B_MAX_QTY
        if nstate == ST_REDUCING or sstate == ST_REDUCING:
            mask |= B_REDUCE
        if daily_hit:
            mask |= B_DAILY
        if dd_hit:
            mask |= B_DD
        return mask
    # ---- size
    ref = px
    if otype == OT_LIMIT or otype == OT_STOP_LIMIT:
        ref = limit_px
    elif otype == OT_STOP:
        ref = stop_px
    qty = size / ref if is_notional else size
    if qty > g[L_MAX_QTY]:
        mask |= B_MAX_QTY
    if qty * ref > g[L_MAX_NOTIONAL] * (1.0 + _EPS):
        mask |= B_MAX_NOTIONAL
    # ---- collars
    band = px * g[L_COLLAR_BPS] * 1e-4
    ticks = g[L_COLLAR_TICKS] * g[L_TICK] * sf[MULT, i]  # the tick is per share, prices per contract
    if otype == OT_LIMIT or otype == OT_STOP_LIMIT:
        dev = abs(limit_px - px)
        if dev > band or (ticks > 0.0 and dev > ticks):
            mask |= B_COLLAR
    if otype == OT_STOP or otype == OT_STOP_LIMIT:
        dev = abs(stop_px - px)
        if dev > band or (ticks > 0.0 and dev > ticks):
            mask |= B_COLLAR
    # ---- reduce-only
    dq = side * qty
    x = dq * px
    sq = sa[c, i, SA_EFF]
    red_node = _reduces(sf[QTY, i] + sf[PEND, i], dq)
    red_strat = _reduces(sq, dq)
    if (nstate == ST_REDUCING and not red_node) or (sstate == ST_REDUCING and not red_strat):
        mask |= B_REDUCE
    # ---- symbol position (node net), long and short
    e = sf[EXP, i]
    e2 = e + x
    if (e2 > g[L_SYM_LONG] and e2 > e) or (-e2 > g[L_SYM_SHORT] and e2 < e):
        mask |= B_MAX_POS
    # ---- strategy long / short / gross
    sq2 = sq + dq
    lng = tf[T_LONG, c]
    sht = tf[T_SHORT, c]
    lng2 = lng + (max(sq2, 0.0) - max(sq, 0.0)) * px
    sht2 = sht + (max(-sq2, 0.0) - max(-sq, 0.0)) * px
    if (lng2 > g[L_STRAT_LONG] and lng2 > lng) or (sht2 > g[L_STRAT_SHORT] and sht2 > sht):
        mask |= B_MAX_POS
    cap = g[L_STRAT_EXP]
    if meta_exposure >= 0.0 and meta_exposure < cap:
        cap = meta_exposure
    if lng2 + sht2 > cap and lng2 + sht2 > lng + sht:
        mask |= B_MAX_EXP
    pct = g[L_POS_PCT]
    if meta_pct >= 0.0 and meta_pct < pct:
        pct = meta_pct
    if abs(sq2) * px > pct * g[G_EQUITY] and abs(sq2) > abs(sq):
        mask |= B_POS_PCT
    # ---- node gross / net
    gross = g[G_GROSS]
    gross2 = gross - abs(e) + abs(e2)
    if gross2 > g[L_GROSS] and gross2 > gross:
        mask |= B_GROSS
    net = g[G_NET]
    net2 = net + x
    if abs(net2) > g[L_NET] and abs(net2) > abs(net):
        mask |= B_NET
    # ---- correlation group: the symbol's own, else the signal's (the symbol joins it, exposure and all)
    grp_i = int(sf[GRP, i])
    if grp_i >= 0:
        gid = grp_i
    if gid >= 0:
        ge = g[G_GROUPS + gid]
        ge2 = ge + x if grp_i == gid else ge + e2
        if abs(ge2) > g[L_GROUP] and abs(ge2) > abs(ge):
            mask |= B_GROUP
    # ---- incremental portfolio variance
    if 2.0 * x * sf[CW, i] + x * x * sf[CII, i] > g[L_VAR]:
        mask |= B_VAR
    # ---- duplicate (same strategy, symbol, side, size inside the window; on either side of it: a
    # fallback entry is judged as of its append, which may be before an order already taken)
    key = side * size
    kind = 1.0 if is_notional else 0.0
    window = g[L_DUP_NS]
    for k in range(DUP_K):
        t = sn[c, i, k]
        if t > 0 and abs(now_ns - t) < window and sa[c, i, SA_DUP + k] == key and sa[c, i, SA_DUP + DUP_K + k] == kind:
            mask |= B_DUP
            break
    # ---- loss limits: only orders that reduce the strategy's position pass once hit
    if daily_hit and not red_strat:
        mask |= B_DAILY
    if dd_hit and not red_strat:
        mask |= B_DD
    return mask


# ---------------------------------------------------------------- state updates


@_jit
def shift_effective(sf, tf, sa, g, c, i, dq) -> None:
    """The effective (filled + pending) quantity of strategy column c in symbol i moved by dq:
    QTY/PEND already hold the new node values; refresh exposure and every aggregate."""
    px = sf[PX, i]
    e = sf[EXP, i]
    e2 = (sf[QTY, i] + sf[PEND, i]) * px
    de = e2 - e
    sf[EXP, i] = e2
    g[G_GROSS] += abs(e2) - abs(e)
    g[G_NET] += de
    grp = int(sf[GRP, i])
    if grp >= 0:
        g[G_GROUPS + grp] += de
    sq = sa[c, i, SA_EFF]
    sq2 = sq + dq
    sa[c, i, SA_EFF] = sq2
    tf[T_LONG, c] += (max(sq2, 0.0) - max(sq, 0.0)) * px
    tf[T_SHORT, c] += (max(-sq2, 0.0) - max(-sq, 0.0)) * px


@_jit
def commit_order(sf, tf, ti, sa, sn, g, c, i, gid, side, size, is_notional, otype, limit_px, stop_px,
                 now_ns) -> float:
    """Reserve what an accepted order uses; returns its signed quantity (0 if it has no price)."""
    tf[T_TOK, COL_NODE] = bucket_tokens(tf[T_TOK, COL_NODE], ti[I_TOK_NS, COL_NODE], now_ns, g[L_N_RATE],
                                        g[L_N_BURST]) - 1.0
    ti[I_TOK_NS, COL_NODE] = now_ns
    tf[T_TOK, c] = bucket_tokens(tf[T_TOK, c], ti[I_TOK_NS, c], now_ns, g[L_S_RATE], g[L_S_BURST]) - 1.0
    ti[I_TOK_NS, c] = now_ns
    for col in (COL_NODE, COL_EXEC, c):
        st = ti[I_BR_STATE, col]
        if st == BR_OPEN and now_ns >= ti[I_BR_UNTIL, col]:
            ti[I_BR_STATE, col] = BR_HALF_OPEN
            ti[I_BR_PROBES, col] = 1
        elif st == BR_HALF_OPEN:
            ti[I_BR_PROBES, col] += 1
    if i < 0:
        return 0.0
    oldest = 0
    for k in range(1, DUP_K):
        if sn[c, i, k] < sn[c, i, oldest]:
            oldest = k
    sn[c, i, oldest] = now_ns
    sa[c, i, SA_DUP + oldest] = side * size
    sa[c, i, SA_DUP + DUP_K + oldest] = 1.0 if is_notional else 0.0
    px = sf[PX, i]
    if px <= 0.0:
        return 0.0
    if gid >= 0 and sf[GRP, i] < 0.0:  # the symbol joins the order's group, with its exposure
        sf[GRP, i] = gid
        g[G_GROUPS + gid] += sf[EXP, i]
    ref = px
    if otype == OT_LIMIT or otype == OT_STOP_LIMIT:
        ref = limit_px
    elif otype == OT_STOP:
        ref = stop_px
    dq = side * (size / ref if is_notional else size)
    sf[PEND, i] += dq
    shift_effective(sf, tf, sa, g, c, i, dq)
    return dq


@_jit
def check_commit_order(sf, tf, ti, sa, sn, g, c, i, gid, side, size, is_notional, otype, limit_px, stop_px,
                       meta_exposure, meta_pct, meta_slippage, now_ns):
    """`check_order`, then `commit_order` with the same arguments if every check passed: (failed-check
    bitmask, the reserved signed quantity; 0.0 when refused). One call per signal instead of two (the
    dispatch and the arguments built once)."""
    mask = check_order(sf, tf, ti, sa, sn, g, c, i, gid, side, size, is_notional, otype, limit_px, stop_px,
                       meta_exposure, meta_pct, meta_slippage, now_ns)
    if mask != 0:
        return mask, 0.0
    return mask, commit_order(sf, tf, ti, sa, sn, g, c, i, gid, side, size, is_notional, otype, limit_px, stop_px,
                              now_ns)


@_jit
def release_pending(sf, tf, sa, g, c, i, dq) -> None:
    """Drop `dq` of pending quantity (cancel, reject, an acceptance undone)."""
    sf[PEND, i] -= dq
    shift_effective(sf, tf, sa, g, c, i, -dq)


@_jit
def apply_fill(sf, tf, sa, g, cov, n, c, i, fq, matched, fill_px) -> bool:
    """A fill of signed quantity `fq` at `fill_px`; `matched` (signed) of it was pending. O(n) for C.w.
    Returns whether the strategy is past a loss limit after it."""
    px = sf[PX, i]
    dw = fq * px
    g[G_VAR] += 2.0 * dw * sf[CW, i] + dw * dw * cov[i, i]
    if dw != 0.0:
        row = cov[i]
        for j in range(n):
            sf[CW, j] += row[j] * dw
    sf[QTY, i] += fq
    sf[PEND, i] -= matched
    shift_effective(sf, tf, sa, g, c, i, fq - matched)
    sa[c, i, SA_FILL] += fq
    tf[T_CASH, c] -= fq * fill_px
    tf[T_MV, c] += fq * px
    pnl = tf[T_CASH, c] + tf[T_MV, c]
    if pnl > tf[T_PEAK, c]:
        tf[T_PEAK, c] = pnl
    return tf[T_DAY0, c] - pnl > g[L_DAILY] or tf[T_PEAK, c] - pnl > g[L_DD]


@_jit
def apply_price(sf, tf, sa, g, cov, n, ncols, i, p) -> int:
    """A new last price for symbol i: C.w (O(n)), exposures, strategy marks (O(strategies)).
    Returns how many strategies are past a loss limit after it."""
    dp = p - sf[PX, i]
    dw = sf[QTY, i] * dp
    if dw != 0.0:
        g[G_VAR] += 2.0 * dw * sf[CW, i] + dw * dw * cov[i, i]
        row = cov[i]
        for j in range(n):
            sf[CW, j] += row[j] * dw
    sf[PX, i] = p
    e = sf[EXP, i]
    e2 = (sf[QTY, i] + sf[PEND, i]) * p
    sf[EXP, i] = e2
    g[G_GROSS] += abs(e2) - abs(e)
    g[G_NET] += e2 - e
    grp = int(sf[GRP, i])
    if grp >= 0:
        g[G_GROUPS + grp] += e2 - e
    hit = 0
    for c in range(COL_FIRST_STRATEGY, ncols):
        sq = sa[c, i, SA_EFF]
        if sq > 0.0:
            tf[T_LONG, c] += sq * dp
        elif sq < 0.0:
            tf[T_SHORT, c] -= sq * dp
        f = sa[c, i, SA_FILL]
        if f != 0.0:
            tf[T_MV, c] += f * dp
            pnl = tf[T_CASH, c] + tf[T_MV, c]
            if pnl > tf[T_PEAK, c]:
                tf[T_PEAK, c] = pnl
            if tf[T_DAY0, c] - pnl > g[L_DAILY] or tf[T_PEAK, c] - pnl > g[L_DD]:
                hit += 1
    return hit


@_jit
def recompute_cw(sf, g, cov, n) -> None:
    """C.w and w'Cw from scratch, O(n^2): only after a covariance reload."""
    var = 0.0
    for i in range(n):
        acc = 0.0
        row = cov[i]
        for j in range(n):
            acc += row[j] * sf[QTY, j] * sf[PX, j]
        sf[CW, i] = acc
        sf[CII, i] = cov[i, i]
        var += sf[QTY, i] * sf[PX, i] * acc
    g[G_VAR] = var


@_jit
def symmetrize(cov, n) -> None:
    """C <- (C + C') / 2 in place over the first n symbols."""
    for i in range(n):
        for j in range(i + 1, n):
            v = 0.5 * (cov[i, j] + cov[j, i])
            cov[i, j] = v
            cov[j, i] = v


@_jit
def ewma_step(sf, g, cov, n, lam, scale) -> int:
    """One EWMA covariance step from the returns since the last sample, O(n^2).
    C <- lam C + (1-lam) r r' over the symbols with a return; C.w follows exactly in O(n).
    Returns the number of symbols that had a return."""
    r = np.zeros(n)
    ok = np.zeros(n, dtype=np.bool_)
    m = 0
    for i in range(n):
        a = sf[PX, i]
        b = sf[WPX, i]
        if a > 0.0 and b > 0.0:
            r[i] = (a / b - 1.0) * scale
            ok[i] = True
            m += 1
        if a > 0.0:
            sf[WPX, i] = a
    if m == 0:
        return 0
    rw = 0.0
    for i in range(n):
        rw += r[i] * sf[QTY, i] * sf[PX, i]
    for i in range(n):
        if not ok[i]:
            continue
        row = cov[i]
        ri = (1.0 - lam) * r[i]
        for j in range(n):
            if ok[j]:
                row[j] = lam * row[j] + ri * r[j]
    var = 0.0
    for i in range(n):
        if ok[i]:
            sf[CII, i] = cov[i, i]
            sf[CW, i] = lam * sf[CW, i] + (1.0 - lam) * r[i] * rw
    # rows/cols of symbols without a return kept their entries: refresh their C.w exactly
    if m < n:
        for i in range(n):
            acc = 0.0
            row = cov[i]
            for j in range(n):
                acc += row[j] * sf[QTY, j] * sf[PX, j]
            sf[CW, i] = acc
    for i in range(n):
        var += sf[QTY, i] * sf[PX, i] * sf[CW, i]
    g[G_VAR] = var
    return m
