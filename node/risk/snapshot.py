"""What the validator's risk learned from the execution reports, as a small snapshot; and back.

The risk book is rebuilt from fills (positions, cash, last prices, peaks, the day's baseline), the
reservations of accepted orders not yet done (pending), and the symbols blocked by an UNKNOWN order.
A `RiskSnapshot` holds exactly those, sparse (the non-zero positions as index and quantity arrays);
`take` reads it from a `PreTradeRisk`, `restore` writes it into a fresh one (after the controls and the
covariance, so C.w and w'Cw are rebuilt under the covariance in force). Pure: no I/O, no clock.

The snapshot also carries `events_mark`, the stream entry id of `execution.events` after which a
restart replays the reports, and `signals_mark` likewise for `execution.signals`; the exec ids booked
near the marks (`recent_exec_ids`) make that replay idempotent for fills seen on both sides of a mark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import numpy as np

from node.risk.book import COL_FIRST_STRATEGY, GRP, PX, SA_FILL, T_CASH, T_DAY0, T_PEAK, UNK
from node.risk.kernels import apply_fill, release_pending

if TYPE_CHECKING:
    from node.risk.engine import PreTradeRisk

SNAPSHOT_VERSION = 1
_F8 = np.dtype("<f8")
_I4 = np.dtype("<i4")


class Pending(msgspec.Struct, frozen=True, array_like=True):
    request_id: str
    strategy_id: str
    symbol: str  # "" when the order's symbol had no slot
    qty: float  # signed quantity still reserved
    commit_ns: int


class RiskSnapshot(msgspec.Struct, kw_only=True):
    """Arrays travel as raw little-endian bytes (float64 / int32): a 10,000-position book encodes
    without a Python object per position."""

    version: int = SNAPSHOT_VERSION
    taken_ns: int = 0
    events_mark: str = "0"
    signals_mark: str = "0"
    day_end_ns: int = 0
    symbols: list[str] = []  # slot order
    strategies: list[str] = []  # column order (from COL_FIRST_STRATEGY)
    groups: list[str] = []
    prices: bytes = b""  # float64 per symbol (0 = none)
    group_of: bytes = b""  # int32 per symbol: index in `groups`, -1 none
    pos_strategy: bytes = b""  # int32 per position: index in `strategies`
    pos_symbol: bytes = b""  # int32 per position: index in `symbols`
    pos_qty: bytes = b""  # float64 per position (signed, filled)
    cash: bytes = b""  # float64 per strategy
    peak: bytes = b""
    day0: bytes = b""
    pending: list[Pending] = []
    unknown: dict[str, list[str]] = {}  # symbol -> client order ids in UNKNOWN
    loss_tripped: list[str] = []
    recent_exec_ids: list[str] = []
    #: canary strategies' counts (node.modes.CanaryUsage as [signals, notional, live, live notional])
    canary: dict[str, list[float]] = {}
    #: where the orders of strategies in modes went (node.amend_routes): request_id -> route, open / done
    amend_routes_open: dict[str, int] = {}
    amend_routes_done: dict[str, int] = {}

    def positions(self) -> list[tuple[str, str, float]]:
        """(strategy, symbol, qty) of every position (for people and tests)."""
        cols = np.frombuffer(self.pos_strategy, dtype=_I4).tolist()
        slots = np.frombuffer(self.pos_symbol, dtype=_I4).tolist()
        qtys = np.frombuffer(self.pos_qty, dtype=_F8).tolist()
        return [(self.strategies[c], self.symbols[i], q) for c, i, q in zip(cols, slots, qtys)]


def take(risk: "PreTradeRisk", unknown: dict[str, set[str]], recent_exec_ids: list[str]) -> RiskSnapshot:
    """The state of `risk` worth keeping across a restart (marks are set by the caller)."""
    b = risk.book
    sym, strat = b.sym_names, b.strat_names
    n, ncols = len(sym), b.n_cols
    held = b.sa[COL_FIRST_STRATEGY:ncols, :n, SA_FILL]  # one vectorised scan, not one per strategy
    cols, slots = held.nonzero()
    tf = b.tf[:, COL_FIRST_STRATEGY:ncols]
    pending = [
        Pending(rid, strat[c - COL_FIRST_STRATEGY], sym[i] if i >= 0 else "", float(dq), int(t))
        for rid, (c, i, dq, t) in risk._pending.items()
    ]
    return RiskSnapshot(
        day_end_ns=risk._day_end_ns,
        symbols=list(sym),
        strategies=list(strat),
        groups=list(b.group_names),
        prices=_f8(b.sf[PX, :n]),
        group_of=b.sf[GRP, :n].astype(_I4).tobytes(),
        pos_strategy=cols.astype(_I4).tobytes(),
        pos_symbol=slots.astype(_I4).tobytes(),
        pos_qty=_f8(held[cols, slots]),
        cash=_f8(tf[T_CASH]),
        peak=_f8(tf[T_PEAK]),
        day0=_f8(tf[T_DAY0]),
        pending=pending,
        unknown={s: sorted(ids) for s, ids in unknown.items() if ids},
        loss_tripped=[strat[c - COL_FIRST_STRATEGY] for c in sorted(risk._loss_tripped)],
        recent_exec_ids=list(recent_exec_ids),
    )


def restore(risk: "PreTradeRisk", snap: RiskSnapshot) -> dict[str, set[str]]:
    """Rebuild positions, cash, marks, pending and UNKNOWN symbols of a fresh `risk` from `snap`;
    returns the UNKNOWN map (symbol -> client order ids) for the caller to keep following. Raises
    ValueError on a snapshot whose arrays do not match its names."""
    check(snap)  # before anything changes: a bad snapshot leaves `risk` as it was
    b = risk.book
    prices = np.frombuffer(snap.prices, dtype=_F8)
    group_of = np.frombuffer(snap.group_of, dtype=_I4)
    slot = [b.add_symbol(symbol) for symbol in snap.symbols]
    b.ensure_headroom()
    for k, g in enumerate(group_of.tolist()):
        if 0 <= g < len(snap.groups):
            b.sf[GRP, slot[k]] = b.add_group(snap.groups[g])
    for k, px in enumerate(prices.tolist()):
        if px > 0.0:
            risk._set_price(slot[k], px)
    col = [b.add_strategy(sid) for sid in snap.strategies]
    b.ensure_headroom()
    for c, i, q in zip(
        np.frombuffer(snap.pos_strategy, dtype=_I4).tolist(), np.frombuffer(snap.pos_symbol, dtype=_I4).tolist(),
        np.frombuffer(snap.pos_qty, dtype=_F8).tolist(),
    ):
        i = slot[i]
        apply_fill(b.sf, b.tf, b.sa, b.g, b.cov, b.n_symbols, col[c], i, q, 0.0, b.sf[PX, i])
    cols = np.array(col, dtype=np.int64)
    if len(cols):  # cash as it was (the fills above booked them at the last price), marks as they were
        b.tf[T_CASH, cols] = np.frombuffer(snap.cash, dtype=_F8)
        b.tf[T_PEAK, cols] = np.frombuffer(snap.peak, dtype=_F8)
        b.tf[T_DAY0, cols] = np.frombuffer(snap.day0, dtype=_F8)
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


def check(snap: RiskSnapshot) -> None:
    """Raise ValueError unless every array of `snap` matches its names (version, lengths, indices)."""
    if snap.version != SNAPSHOT_VERSION:
        raise ValueError("risk snapshot: version " + str(snap.version) + ", expected " + str(SNAPSHOT_VERSION))
    n, m = len(snap.symbols), len(snap.strategies)
    try:
        arrays = [np.frombuffer(raw, dtype=dt) for raw, dt in (
            (snap.prices, _F8), (snap.group_of, _I4), (snap.pos_strategy, _I4), (snap.pos_symbol, _I4),
            (snap.pos_qty, _F8), (snap.cash, _F8), (snap.peak, _F8), (snap.day0, _F8))]  # fmt: skip
    except ValueError as exc:
        raise ValueError("risk snapshot: an array is not whole: " + str(exc)) from exc
    prices, group_of, pos_c, pos_i, pos_q, cash, peak, day0 = arrays
    if len(prices) != n or len(group_of) != n or not len(cash) == len(peak) == len(day0) == m:
        raise ValueError("risk snapshot: per-symbol or per-strategy arrays do not match the names")
    if not len(pos_c) == len(pos_i) == len(pos_q):
        raise ValueError("risk snapshot: position arrays of different lengths")
    if len(pos_c) and (int(pos_c.min()) < 0 or int(pos_c.max()) >= m or int(pos_i.min()) < 0 or int(pos_i.max()) >= n):
        raise ValueError("risk snapshot: a position names no strategy or symbol")
    if not all(np.isfinite(a).all() for a in (prices, pos_q, cash, peak, day0)):
        raise ValueError("risk snapshot: a number is not finite")


def _f8(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=_F8).tobytes()


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(RiskSnapshot)


def encode(snap: RiskSnapshot) -> bytes:
    return _encoder.encode(snap)


def decode(raw: bytes) -> RiskSnapshot:
    """Raises msgspec.DecodeError / ValidationError on bytes that are not a snapshot."""
    return _decoder.decode(raw)
