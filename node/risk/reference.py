"""The pure-Python reference of the risk kernels: the specification the numba code must match.

`check_order` is the same check set as `node.risk.kernels.check_order`, written plainly. It indexes
as `a[row][col]`, so it runs on the book's numpy arrays (tests) or on nested lists (`tolist()`, the
benchmark's pure-Python baseline). With `from_scratch=True` it ignores the cached aggregates and
recomputes what it needs from the positions (O(n)); `aggregates` recomputes every cached aggregate
from the positions, the oracle for the incremental updates.
"""

from __future__ import annotations

from node.risk.book import (
    CII, COL_EXEC, COL_FIRST_STRATEGY, COL_NODE, CW, DUP_K, EXP, G_EQUITY, G_GROSS, G_GROUPS, G_NET, GRP,
    I_BR_PROBES, I_BR_STATE, I_BR_UNTIL, I_KILLED, I_PAUSED, I_STATE, I_TOK_NS, L_COLLAR_BPS, L_COLLAR_TICKS,
    L_DAILY, L_DD, L_DUP_NS, L_GROSS, L_GROUP, L_MAX_NOTIONAL, L_MAX_QTY, L_N_BURST, L_N_RATE, L_NET, L_POS_PCT,
    L_PROBES, L_S_BURST, L_S_RATE, L_SLIP_CAP, L_SLIP_DEFAULT, L_STRAT_EXP, L_STRAT_LONG, L_STRAT_SHORT,
    L_SYM_LONG, L_SYM_SHORT, L_TICK, L_VAR, MULT, OT_LIMIT, OT_MARKET, OT_STOP, OT_STOP_LIMIT, PEND, PX, QTY,
    SA_DUP, SA_EFF, SA_FILL, T_CASH, T_DAY0, T_LONG, T_MV, T_PEAK, T_SHORT, T_TOK, UNK,
)
from node.risk.kernels import (
    B_BR_EXEC, B_BR_STRAT, B_BR_SYS, B_COLLAR, B_DAILY, B_DD, B_DUP, B_GROSS, B_GROUP, B_HALTED, B_KILL,
    B_MAX_EXP, B_MAX_NOTIONAL, B_MAX_POS, B_MAX_QTY, B_NET, B_NO_PRICE, B_PAUSED, B_POS_PCT, B_REDUCE, B_SLIP,
    B_STRAT_KILLED, B_THR_NODE, B_THR_STRAT, B_UNKNOWN_STATE, B_UNKNOWN_SYMBOL, B_VAR, BR_HALF_OPEN, BR_OPEN,
    ST_HALTED, ST_REDUCING,
)

_EPS = 1e-9


def tokens_at(tokens: float, last_ns: int, now_ns: int, rate: float, burst: float) -> float:
    if now_ns > last_ns:
        tokens += (now_ns - last_ns) * 1e-9 * rate
    return min(tokens, burst)


def breaker_blocks(ti, col: int, now_ns: int, probes: float) -> bool:
    state = ti[I_BR_STATE][col]
    if state == BR_OPEN:
        return now_ns < ti[I_BR_UNTIL][col] or probes < 1.0
    if state == BR_HALF_OPEN:
        return ti[I_BR_PROBES][col] >= probes
    return False


def reduces(q: float, dq: float) -> bool:
    """An order of signed quantity dq reduces position q without flipping it."""
    return q * dq < 0.0 and abs(dq) <= abs(q) * (1.0 + _EPS)


def _strategy_long_short(sf, sa, c: int, n: int) -> tuple[float, float]:
    lng = sht = 0.0
    for j in range(n):
        q = sa[c][j][SA_EFF]
        if q > 0.0:
            lng += q * sf[PX][j]
        elif q < 0.0:
            sht -= q * sf[PX][j]
    return lng, sht


def check_order(sf, tf, ti, sa, sn, g, c, i, gid, side, size, is_notional, otype, limit_px, stop_px,
                meta_exposure, meta_pct, meta_slippage, now_ns, *, cov=None, n: int = 0,
                from_scratch: bool = False) -> int:
    """Failed-check bitmask of one order (see the numba twin for the argument meanings).

    from_scratch: recompute gross, net, group, strategy long/short, symbol exposure and (C.w)_i from
    the positions (needs `cov` and `n`) instead of reading the cached aggregates.
    """
    mask = 0
    if ti[I_KILLED][COL_NODE]:
        mask |= B_KILL
    if ti[I_KILLED][c]:
        mask |= B_STRAT_KILLED
    if ti[I_PAUSED][c]:
        mask |= B_PAUSED
    nstate, sstate = ti[I_STATE][COL_NODE], ti[I_STATE][c]
    if ST_HALTED in (nstate, sstate):
        mask |= B_HALTED
    probes = g[L_PROBES]
    for col, bit in ((COL_NODE, B_BR_SYS), (COL_EXEC, B_BR_EXEC), (c, B_BR_STRAT)):
        if breaker_blocks(ti, col, now_ns, probes):
            mask |= bit
    if tokens_at(tf[T_TOK][COL_NODE], ti[I_TOK_NS][COL_NODE], now_ns, g[L_N_RATE], g[L_N_BURST]) < 1.0:
        mask |= B_THR_NODE
    if tokens_at(tf[T_TOK][c], ti[I_TOK_NS][c], now_ns, g[L_S_RATE], g[L_S_BURST]) < 1.0:
        mask |= B_THR_STRAT
    if otype == OT_MARKET:
        slip = meta_slippage if meta_slippage >= 0.0 else g[L_SLIP_DEFAULT]
        if slip > g[L_SLIP_CAP]:
            mask |= B_SLIP
    pnl = tf[T_CASH][c] + tf[T_MV][c]
    daily_hit = tf[T_DAY0][c] - pnl > g[L_DAILY]
    dd_hit = tf[T_PEAK][c] - pnl > g[L_DD]
    px = 0.0
    if i < 0:
        mask |= B_UNKNOWN_SYMBOL
    else:
        px = sf[PX][i]
        if sf[UNK][i] != 0.0:
            mask |= B_UNKNOWN_STATE
        if px <= 0.0:
            mask |= B_NO_PRICE
    if px <= 0.0:
        if is_notional:
            if size > g[L_MAX_NOTIONAL]:
                mask |= B_MAX_NOTIONAL
        elif size > g[L_MAX_QTY]:
            mask |= B_MAX_QTY
        if ST_REDUCING in (nstate, sstate):
            mask |= B_REDUCE
        if daily_hit:
            mask |= B_DAILY
        if dd_hit:
            mask |= B_DD
        return mask
    ref = limit_px if otype in (OT_LIMIT, OT_STOP_LIMIT) else stop_px if otype == OT_STOP else px
    qty = size / ref if is_notional else size
    if qty > g[L_MAX_QTY]:
        mask |= B_MAX_QTY
    if qty * ref > g[L_MAX_NOTIONAL] * (1.0 + _EPS):
        mask |= B_MAX_NOTIONAL
    band = px * g[L_COLLAR_BPS] * 1e-4
    ticks = g[L_COLLAR_TICKS] * g[L_TICK] * sf[MULT][i]  # the tick is per share, prices per contract
    for applies, price in ((otype in (OT_LIMIT, OT_STOP_LIMIT), limit_px), (otype in (OT_STOP, OT_STOP_LIMIT), stop_px)):
        if applies:
            dev = abs(price - px)
            if dev > band or (ticks > 0.0 and dev > ticks):
                mask |= B_COLLAR
    dq = side * qty
    x = dq * px
    sq = sa[c][i][SA_EFF]
    if (nstate == ST_REDUCING and not reduces(sf[QTY][i] + sf[PEND][i], dq)) or (
        sstate == ST_REDUCING and not reduces(sq, dq)
    ):
        mask |= B_REDUCE
    # ---- the aggregates: cached, or recomputed from the positions
    grp_i = int(sf[GRP][i])
    if grp_i >= 0:
        gid = grp_i
    if from_scratch:
        e = (sf[QTY][i] + sf[PEND][i]) * px
        lng, sht = _strategy_long_short(sf, sa, c, n)
        gross = net = ge = 0.0
        for j in range(n):
            ej = (sf[QTY][j] + sf[PEND][j]) * sf[PX][j]
            gross += abs(ej)
            net += ej
            if gid >= 0 and sf[GRP][j] == gid:
                ge += ej
        row = cov[i]
        cwi = 0.0
        for j in range(n):
            cwi += row[j] * sf[QTY][j] * sf[PX][j]
        cii = row[i]
    else:
        e = sf[EXP][i]
        lng, sht = tf[T_LONG][c], tf[T_SHORT][c]
        gross, net = g[G_GROSS], g[G_NET]
        ge = g[G_GROUPS + gid] if gid >= 0 else 0.0
        cwi, cii = sf[CW][i], sf[CII][i]
    e2 = e + x
    if (e2 > g[L_SYM_LONG] and e2 > e) or (-e2 > g[L_SYM_SHORT] and e2 < e):
        mask |= B_MAX_POS
    sq2 = sq + dq
    lng2 = lng + (max(sq2, 0.0) - max(sq, 0.0)) * px
    sht2 = sht + (max(-sq2, 0.0) - max(-sq, 0.0)) * px
    if (lng2 > g[L_STRAT_LONG] and lng2 > lng) or (sht2 > g[L_STRAT_SHORT] and sht2 > sht):
        mask |= B_MAX_POS
    cap = min(g[L_STRAT_EXP], meta_exposure) if meta_exposure >= 0.0 else g[L_STRAT_EXP]
    if lng2 + sht2 > cap and lng2 + sht2 > lng + sht:
        mask |= B_MAX_EXP
    pct = min(g[L_POS_PCT], meta_pct) if meta_pct >= 0.0 else g[L_POS_PCT]
    if abs(sq2) * px > pct * g[G_EQUITY] and abs(sq2) > abs(sq):
        mask |= B_POS_PCT
    gross2 = gross - abs(e) + abs(e2)
    if gross2 > g[L_GROSS] and gross2 > gross:
        mask |= B_GROSS
    net2 = net + x
    if abs(net2) > g[L_NET] and abs(net2) > abs(net):
        mask |= B_NET
    if gid >= 0:
        ge2 = ge + x if grp_i == gid else ge + e2
        if abs(ge2) > g[L_GROUP] and abs(ge2) > abs(ge):
            mask |= B_GROUP
    if 2.0 * x * cwi + x * x * cii > g[L_VAR]:
        mask |= B_VAR
    key, kind = side * size, (1.0 if is_notional else 0.0)
    for k in range(DUP_K):
        t = sn[c][i][k]
        if t > 0 and abs(now_ns - t) < g[L_DUP_NS] and sa[c][i][SA_DUP + k] == key and sa[c][i][SA_DUP + DUP_K + k] == kind:
            mask |= B_DUP
            break
    red_strat = reduces(sq, dq)
    if daily_hit and not red_strat:
        mask |= B_DAILY
    if dd_hit and not red_strat:
        mask |= B_DD
    return mask


def aggregates(sf, tf, sa, cov, n: int, ncols: int, n_groups: int) -> dict:
    """Every cached aggregate recomputed from positions and prices (O(n^2) for C.w): the test oracle."""
    w = [sf[QTY][j] * sf[PX][j] for j in range(n)]
    exp = [(sf[QTY][j] + sf[PEND][j]) * sf[PX][j] for j in range(n)]
    groups = [0.0] * n_groups
    for j in range(n):
        if sf[GRP][j] >= 0:
            groups[int(sf[GRP][j])] += exp[j]
    cw = [sum(cov[i][j] * w[j] for j in range(n)) for i in range(n)]
    strat = {}
    for c in range(COL_FIRST_STRATEGY, ncols):
        lng, sht = _strategy_long_short(sf, sa, c, n)
        mv = sum(sa[c][j][SA_FILL] * sf[PX][j] for j in range(n))
        strat[c] = (lng, sht, mv)
    return {
        "exp": exp,
        "gross": sum(abs(e) for e in exp),
        "net": sum(exp),
        "groups": groups,
        "cw": cw,
        "var": sum(w[i] * cw[i] for i in range(n)),
        "strategies": strat,
    }
