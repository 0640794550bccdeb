"""What the validator's risk learned from the execution reports, as a small snapshot; and back.

The risk book is rebuilt from fills (positions, cash, last prices, peaks, the day's baseline), the
reservations of accepted orders not yet done (pending), and the symbols blocked by an UNKNOWN order.
A `RiskSnapshot` holds exactly those, sparse (one row per non-zero position), not the numpy arrays;
`take` reads it from a `PreTradeRisk`, `restore` writes it into a fresh one (after the controls and the
covariance, so C.w and w'Cw are rebuilt under the covariance in force). Pure: no I/O, no clock.

The snapshot also carries `events_mark`, the stream entry id of `execution.events` after which a
restart replays the reports, and `signals_mark` likewise for `execution.signals`; the exec ids booked
near the marks (`recent_exec_ids`) make that replay idempotent for fills seen on both sides of a mark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from node.risk.book import COL_FIRST_STRATEGY, GRP, PX, SA_FILL, T_CASH, T_DAY0, T_PEAK, UNK
from node.risk.kernels import apply_fill, release_pending

if TYPE_CHECKING:
    from node.risk.engine import PreTradeRisk

SNAPSHOT_VERSION = 1


class Position(msgspec.Struct, frozen=True, array_like=True):
    strategy_id: str
    symbol: str
    qty: float


class Pending(msgspec.Struct, frozen=True, array_like=True):
    request_id: str
    strategy_id: str
    symbol: str  # "" when the order's symbol had no slot
    qty: float  # signed quantity still reserved
    commit_ns: int


class StrategyMarks(msgspec.Struct, frozen=True, array_like=True):
    strategy_id: str
    cash: float
    peak: float
    day0: float


class RiskSnapshot(msgspec.Struct, kw_only=True):
    version: int = SNAPSHOT_VERSION
    taken_ns: int = 0
    events_mark: str = "0"
    signals_mark: str = "0"
    day_end_ns: int = 0
    prices: dict[str, float] = {}
    groups: dict[str, str] = {}  # symbol -> correlation group learned from signals
    positions: list[Position] = []
    marks: list[StrategyMarks] = []
    pending: list[Pending] = []
    unknown: dict[str, list[str]] = {}  # symbol -> client order ids in UNKNOWN
    loss_tripped: list[str] = []
    recent_exec_ids: list[str] = []


def take(risk: "PreTradeRisk", unknown: dict[str, set[str]], recent_exec_ids: list[str]) -> RiskSnapshot:
    """The state of `risk` worth keeping across a restart (marks are set by the caller)."""
    b = risk.book
    sym, strat = b.sym_names, b.strat_names
    n, ncols = len(sym), b.n_cols
    px = b.sf[PX, :n]
    priced = (px > 0.0).nonzero()[0].tolist()
    prices = dict(zip([sym[i] for i in priced], px[priced].tolist()))
    grp = b.sf[GRP, :n]
    groups = {sym[i]: b.group_names[int(grp[i])] for i in (grp >= 0).nonzero()[0].tolist()}
    held = b.sa[COL_FIRST_STRATEGY:ncols, :n, SA_FILL]  # one vectorised scan, not one per strategy
    cols, slots = held.nonzero()
    qtys = held[cols, slots].tolist()
    positions = [Position(strat[c], sym[i], q) for c, i, q in zip(cols.tolist(), slots.tolist(), qtys)]
    tf = b.tf[:, COL_FIRST_STRATEGY:ncols]
    marks = [StrategyMarks(sid, c, p, d) for sid, c, p, d in
             zip(strat, tf[T_CASH].tolist(), tf[T_PEAK].tolist(), tf[T_DAY0].tolist())]
    pending = [
        Pending(rid, strat[c - COL_FIRST_STRATEGY], sym[i] if i >= 0 else "", float(dq), int(t))
        for rid, (c, i, dq, t) in risk._pending.items()
    ]
    return RiskSnapshot(
        day_end_ns=risk._day_end_ns,
        prices=prices,
        groups=groups,
        positions=positions,
        marks=marks,
        pending=pending,
        unknown={s: sorted(ids) for s, ids in unknown.items() if ids},
        loss_tripped=[strat[c - COL_FIRST_STRATEGY] for c in sorted(risk._loss_tripped)],
        recent_exec_ids=list(recent_exec_ids),
    )


def restore(risk: "PreTradeRisk", snap: RiskSnapshot) -> dict[str, set[str]]:
    """Rebuild positions, cash, marks, pending and UNKNOWN symbols of a fresh `risk` from `snap`;
    returns the UNKNOWN map (symbol -> client order ids) for the caller to keep following."""
    b = risk.book
    for symbol, group in snap.groups.items():
        i = b.add_symbol(symbol)
        b.sf[GRP, i] = b.add_group(group)
    for symbol, px in snap.prices.items():
        i = b.add_symbol(symbol)
        b.ensure_headroom()
        if px > 0.0:
            risk._set_price(i, px)
    for pos in snap.positions:
        c = b.add_strategy(pos.strategy_id)
        i = b.add_symbol(pos.symbol)
        b.ensure_headroom()
        apply_fill(b.sf, b.tf, b.sa, b.g, b.cov, b.n_symbols, c, i, pos.qty, 0.0, b.sf[PX, i])
    for m in snap.marks:  # cash as it was (the fills above booked them at the last price)
        c = b.add_strategy(m.strategy_id)
        b.ensure_headroom()
        b.tf[T_CASH, c] = m.cash
        b.tf[T_PEAK, c] = m.peak
        b.tf[T_DAY0, c] = m.day0
    for p in snap.pending:
        c = b.add_strategy(p.strategy_id)
        i = b.add_symbol(p.symbol) if p.symbol else -1
        b.ensure_headroom()
        if i >= 0 and p.qty != 0.0:
            release_pending(b.sf, b.tf, b.sa, b.g, c, i, -p.qty)  # reserve again
        risk._pending[p.request_id] = [c, i, p.qty, p.commit_ns]
    if snap.day_end_ns > risk._day_end_ns:
        risk._day_end_ns = snap.day_end_ns
    risk._loss_tripped.update(b.add_strategy(s) for s in snap.loss_tripped)
    unknown: dict[str, set[str]] = {}
    for symbol, ids in snap.unknown.items():
        if ids:
            unknown[symbol] = set(ids)
            i = b.add_symbol(symbol)
            b.sf[UNK, i] = 1.0
    for exec_id in snap.recent_exec_ids:
        risk._seen_fills[exec_id] = None
    b.ensure_headroom()
    return unknown


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(RiskSnapshot)


def encode(snap: RiskSnapshot) -> bytes:
    return _encoder.encode(snap)


def decode(raw: bytes) -> RiskSnapshot:
    """Raises msgspec.DecodeError / ValidationError on bytes that are not a snapshot."""
    return _decoder.decode(raw)
