"""The routes of strategies in modes compared (node.modes): `execnode report modes`.

Per strategy and route (live, paper, shadow: the paper copy of a live order), from the signal log's
stamps and the reports of both streams (`execution.events`, and `execution.shadow` for the copies):
signals, orders filled, quantity, the average fill price, slippage against the signal's limit price
(bps, positive = worse for the trader), latency from acceptance to the last fill (p50 / p99, ms),
and, for shadow pairs, the gap between the live fill and its paper copy's (bps, positive = live
worse). `compare` is pure; `read_streams` reads Redis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import msgspec

from node.messages import ExecKind, ExecutionReport, SignalAccepted
from node.modes import AMEND_ROUTES, LIVE_ROUTES, SHADOW_SUFFIX, Route, is_shadow

_FILLS = (ExecKind.PARTIAL_FILL, ExecKind.FILL)
_SELLS = ("SELL", "SELL_SHORT", "SELL_TO_OPEN", "SELL_TO_CLOSE")
_PAGE = 10_000


@dataclass
class _Fill:
    qty: float = 0.0
    notional: float = 0.0
    last_ns: int = 0
    exec_ids: set[str] = field(default_factory=set)

    @property
    def avg_px(self) -> float:
        return self.notional / self.qty if self.qty else 0.0


class RouteFigures(msgspec.Struct, kw_only=True):
    signals: int = 0
    filled: int = 0
    quantity: float = 0.0
    avg_px: float = 0.0
    slippage_bps: float | None = None  # mean over filled limit orders
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None


class StrategyComparison(msgspec.Struct, kw_only=True):
    strategy_id: str
    routes: dict[str, RouteFigures]
    shadow_pairs: int = 0  # signals filled both live and as a paper copy
    shadow_gap_bps: float | None = None  # mean (live - paper) price gap, signed for the trader


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 3)


def _sign(action: str) -> float:
    return -1.0 if action in _SELLS else 1.0


def _route_name(route: int) -> str:
    return "live" if route in LIVE_ROUTES else "paper"


def compare(signals: Iterable[SignalAccepted], reports: Iterable[ExecutionReport],
            shadow_reports: Iterable[ExecutionReport] = (), strategy_id: str | None = None) -> list[StrategyComparison]:
    """The comparison of every strategy with stamped signals (or just `strategy_id`)."""
    stamped: dict[str, SignalAccepted] = {}
    for acc in signals:
        if acc.route and acc.route not in AMEND_ROUTES and (strategy_id is None or acc.signal.strategy_id == strategy_id):
            stamped[acc.signal_id] = acc
    fills: dict[tuple[str, str], _Fill] = {}  # (signal id, "live"/"paper"/"shadow")
    for reps, shadow in ((reports, False), (shadow_reports, True)):
        for rep in reps:
            of = stamped.get(rep.signal_id)
            if of is None or rep.kind not in _FILLS or is_shadow(rep.strategy_id) != shadow:
                continue
            f = fills.setdefault((rep.signal_id, "shadow" if shadow else _route_name(of.route)), _Fill())
            if rep.exec_id in f.exec_ids:
                continue
            f.exec_ids.add(rep.exec_id)
            f.qty += rep.last_qty
            f.notional += rep.last_qty * rep.last_px
            f.last_ns = max(f.last_ns, rep.ts_ns)
    out = []
    for sid in sorted({a.signal.strategy_id for a in stamped.values()}):
        accs = [a for a in stamped.values() if a.signal.strategy_id == sid]
        routes: dict[str, RouteFigures] = {}
        gaps: list[float] = []
        for name in ("live", "paper", "shadow"):
            mine = [a for a in accs if (a.route == Route.SHADOW if name == "shadow" else _route_name(a.route) == name)]
            done = [(a, fills[(a.signal_id, name)]) for a in mine if (a.signal_id, name) in fills]
            if not mine:
                continue
            qty = sum(f.qty for _, f in done)
            slips = [_sign(a.signal.action) * (f.avg_px - a.signal.limit_price) / a.signal.limit_price * 1e4
                     for a, f in done if a.signal.limit_price]
            lat = [(f.last_ns - a.received_ns) / 1e6 for a, f in done if f.last_ns > a.received_ns]
            routes[name] = RouteFigures(
                signals=len(mine), filled=len(done), quantity=qty,
                avg_px=round(sum(f.notional for _, f in done) / qty, 6) if qty else 0.0,
                slippage_bps=round(sum(slips) / len(slips), 3) if slips else None,
                latency_ms_p50=_pct(lat, 0.5), latency_ms_p99=_pct(lat, 0.99),
            )
        for a in accs:
            live, paper = fills.get((a.signal_id, "live")), fills.get((a.signal_id, "shadow"))
            if a.route == Route.SHADOW and live and paper and paper.avg_px:
                gaps.append(_sign(a.signal.action) * (live.avg_px - paper.avg_px) / paper.avg_px * 1e4)
        out.append(StrategyComparison(strategy_id=sid, routes=routes, shadow_pairs=len(gaps),
                                      shadow_gap_bps=round(sum(gaps) / len(gaps), 3) if gaps else None))
    return out


def markdown(rows: list[StrategyComparison]) -> str:
    lines = ["| strategy | route | signals | filled | quantity | avg px | slippage bps | latency p50 / p99 ms |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for name, f in row.routes.items():
            lat = "-" if f.latency_ms_p50 is None else str(f.latency_ms_p50) + " / " + str(f.latency_ms_p99)
            slip = "-" if f.slippage_bps is None else str(f.slippage_bps)
            lines.append("| " + " | ".join([row.strategy_id, name, str(f.signals), str(f.filled), str(f.quantity),
                                           str(f.avg_px), slip, lat]) + " |")
        if row.shadow_pairs:
            lines.append("| " + row.strategy_id + " | shadow gap (live - paper) | " + str(row.shadow_pairs)
                         + " pairs | | | | " + str(row.shadow_gap_bps) + " | |")
    if len(lines) == 2:
        lines.append("| (no signal of a strategy in modes) | | | | | | | |")
    return "\n".join(lines)


def read_streams(client: Any, signals_stream: str, events_stream: str, shadow_stream: str, since_ms: int = 0
                 ) -> tuple[list[SignalAccepted], list[ExecutionReport], list[ExecutionReport]]:
    """Every signal, report and shadow report logged since `since_ms` (Redis stream ids), page by page."""
    from node.streams import EVENTS_FIELD, SIGNALS_FIELD, unpack_reports, unpack_signals

    def entries(stream: str) -> Iterable[dict]:
        cursor = str(since_ms) + "-0"
        while True:
            page = client.xrange(stream, min=cursor, max="+", count=_PAGE)
            if not page:
                return
            for _, fields in page:
                yield fields
            last = page[-1][0].decode()
            ms, seq = last.split("-")
            cursor = ms + "-" + str(int(seq) + 1)

    signals = [a for f in entries(signals_stream) if SIGNALS_FIELD in f for a in _safe(unpack_signals, f)]
    reports = [r for f in entries(events_stream) if EVENTS_FIELD in f for r in _safe(unpack_reports, f)]
    shadow = [r for f in entries(shadow_stream) if EVENTS_FIELD in f for r in _safe(unpack_reports, f)]
    return signals, reports, shadow


def _safe(unpack: Any, fields: dict) -> list:
    try:
        return list(unpack(fields))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []  # the ledger dead-letters it


__all__ = ["SHADOW_SUFFIX", "StrategyComparison", "compare", "markdown", "read_streams"]
