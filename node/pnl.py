"""Profit and loss per strategy and symbol from the ledger's fills, with fees and commissions.

Pure logic. Average-cost accounting (what brokers' account views show): a fill that adds to a
position moves its average cost; a fill that reduces it realises (fill price - average cost) x the
quantity closed; a fill that crosses zero closes the old position and opens the rest at its price.
Fees (`Fill.fee`, or a `FeeSchedule` for a ledger that has none) always reduce realised PnL.
Unrealised = position x (mark - average cost), at the mark given per symbol (the last fill price
when none is given). Prices and average costs are per share; realised and unrealised PnL are in
dollars, at each symbol's contract multiplier (node/instruments.py: an OCC option's 100).

`compare_pnl` sets the node's PnL per symbol beside the broker's account view of it, at the
broker's mark: the total (realised + unrealised) where the broker gives both (where a broker puts
a commission, in the cost or in realised, then does not matter), else the unrealised alone.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import msgspec

from node.instruments import DEFAULT_MULTIPLIERS, Multipliers
from node.messages import Side
from node.reconcile import BrokerPnl, Discrepancy, DiscrepancyKind, Fill, Opening

_FLAT = 1e-9


class FeeSchedule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fees of one fill when the broker reports none: per share (per contract) + bps of the notional
    (quantity x price x `multiplier`), at least `min_per_fill_usd` (0 everywhere: no fees, the paper
    venue's default)."""

    per_share_usd: float = 0.0
    bps_of_notional: float = 0.0
    min_per_fill_usd: float = 0.0

    def fee(self, qty: float, px: float, multiplier: float = 1.0) -> float:
        f = qty * self.per_share_usd + qty * px * multiplier * self.bps_of_notional * 1e-4
        return f if f >= self.min_per_fill_usd else self.min_per_fill_usd

    @property
    def free(self) -> bool:
        return not (self.per_share_usd or self.bps_of_notional or self.min_per_fill_usd)


class PnlLine(msgspec.Struct, kw_only=True):
    """One (strategy, symbol): the open position, its average cost, realised PnL net of fees,
    the fees paid, unrealised PnL at `mark`."""

    strategy_id: str
    symbol: str
    position: float = 0.0
    avg_cost: float = 0.0
    realised: float = 0.0
    fees: float = 0.0
    unrealised: float = 0.0
    mark: float = 0.0
    fills: int = 0

    @property
    def total(self) -> float:
        return self.realised + self.unrealised


def pnl_by_strategy_symbol(
    fills: Iterable[Fill], marks: dict[str, float] | None = None, fees: FeeSchedule | None = None,
    mult: Multipliers = DEFAULT_MULTIPLIERS,
) -> dict[tuple[str, str], PnlLine]:
    """Average-cost PnL per (strategy_id, symbol), fills taken in the order given (ledger order:
    by time), at each symbol's multiplier. A fill's own `fee` counts; with none and a `fees`
    schedule, the schedule's."""
    # per key: [position, avg cost, realised, fees, last px, fills] (plain lists: this loop is the cost)
    acc: defaultdict[tuple[str, str], list] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0, 0.0, 0])
    schedule = fees if fees is not None and not fees.free else None
    buy = Side.BUY
    for f in fills:
        a = acc[(f.strategy_id, f.symbol)]
        px = f.px
        q = f.qty if f.side is buy else -f.qty
        fee = f.fee if f.fee or schedule is None else schedule.fee(f.qty, px, mult.of(f.symbol))
        pos = a[0]
        if pos * q >= 0.0:  # opening or adding
            new = pos + q
            a[1] = (a[1] * pos + px * q) / new if (new > _FLAT or new < -_FLAT) else 0.0
            a[0] = new
        else:
            aq, ap = abs(q), abs(pos)
            closed = aq if aq < ap else ap
            a[2] += (px - a[1]) * closed * (1.0 if pos > 0.0 else -1.0) * mult.of(f.symbol)
            new = pos + q
            if abs(new) <= _FLAT:
                a[0] = a[1] = 0.0
            elif new * pos < 0.0:  # crossed zero: the rest opens at the fill price
                a[0], a[1] = new, px
            else:
                a[0] = new
        a[2] -= fee
        a[3] += fee
        a[4] = px
        a[5] += 1
    lines: dict[tuple[str, str], PnlLine] = {}
    for (strategy, symbol), (pos, avg, realised, paid, last, n) in acc.items():
        mark = marks.get(symbol, last) if marks else last
        unrealised = mult.value(symbol, pos, mark - avg) if abs(pos) > _FLAT else 0.0
        lines[(strategy, symbol)] = PnlLine(strategy_id=strategy, symbol=symbol, position=pos, avg_cost=avg,
                                            realised=realised, fees=paid, unrealised=unrealised, mark=mark, fills=n)
    return lines


def totals_by_strategy(lines: dict[tuple[str, str], PnlLine]) -> dict[str, dict[str, float]]:
    """Realised, unrealised and fees summed per strategy."""
    out: dict[str, dict[str, float]] = {}
    for (strategy, _), line in lines.items():
        t = out.setdefault(strategy, {"realised": 0.0, "unrealised": 0.0, "fees": 0.0})
        t["realised"] += line.realised
        t["unrealised"] += line.unrealised
        t["fees"] += line.fees
    return out


#: the strategy of the opening positions' stand-in fills (positions held before the node's first fill)
OPENING = "$OPENING"


def opening_fills(opening: Opening) -> list[Fill]:
    """The opening positions as fills at their average cost (before every ledger fill), for the
    symbols whose cost the broker gave."""
    return [Fill("opening:" + sym, "", OPENING, sym, Side.BUY if q > 0 else Side.SELL, abs(q), opening.costs[sym])
            for sym, q in sorted(opening.positions.items()) if sym in opening.costs]


def compare_pnl(fills: list[Fill], opening: Opening, broker: dict[str, BrokerPnl], tolerance_usd: float,
                skip: frozenset[str] | set[str] = frozenset(),
                mult: Multipliers = DEFAULT_MULTIPLIERS) -> list[Discrepancy]:
    """A PNL_DRIFT for each symbol the broker values whose PnL differs from the node's (its
    opening position at cost, then its fills, all strategies together, at the broker's mark) by
    more than `tolerance_usd`. Not judged: symbols in `skip` (another difference explains them),
    an opening position whose cost the broker never gave, a broker line with no PnL. Fees: the
    fills' own (the caller puts the broker's, or the schedule's, on them)."""
    wanted = {sym for sym, p in broker.items() if sym not in skip and (p.unrealised is not None)
              and not (sym in opening.positions and sym not in opening.costs)}
    if not wanted:
        return []
    mine = [f for f in opening_fills(opening) if f.symbol in wanted]
    mine += [f for f in fills if f.symbol in wanted]
    by_symbol: dict[str, list[float]] = {}  # symbol -> [position, realised, unrealised]
    marks = {sym: broker[sym].mark for sym in wanted}
    for (_, sym), line in pnl_by_strategy_symbol(mine, marks, mult=mult).items():
        a = by_symbol.setdefault(sym, [0.0, 0.0, 0.0])
        a[0] += line.position
        a[1] += line.realised
        a[2] += line.unrealised
    out = []
    for sym in sorted(wanted):
        p = broker[sym]
        pos, realised, unrealised = by_symbol.get(sym, (0.0, 0.0, 0.0))
        both = p.realised is not None
        node_value = realised + unrealised if both else unrealised
        broker_value = (p.realised or 0.0) + (p.unrealised or 0.0) if both else (p.unrealised or 0.0)
        if abs(node_value - broker_value) > tolerance_usd:
            out.append(Discrepancy(kind=DiscrepancyKind.PNL_DRIFT, symbol=sym, node_qty=pos, broker_qty=p.qty,
                                   node_pnl=node_value, broker_pnl=broker_value))
    return out
