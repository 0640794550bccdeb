"""What a reconciliation run leaves behind: its summary, the `reconciliation_results` rows and the
Markdown report a person reads. Pure: no I/O.

One row per (symbol, strategy) the run looked at: the account-level position comparison of each
symbol (strategy_id "") and one row per strategy a discrepancy names; every discrepancy of the row
is in its `detail` (JSON) with both sides' values. The cash line is symbol `$CASH`.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import msgspec

from node.pnl import PnlLine
from node.reconcile import CASH, Diff, Discrepancy, DiscrepancyKind

#: columns of `reconciliation_results` the reconciler writes (sql/002_control.sql)
RESULT_COLUMNS = ("run_id", "broker", "account", "strategy_id", "symbol", "ledger_qty", "broker_qty",
                  "ledger_avg_px", "broker_avg_px", "matched", "action", "detail")
_ACCOUNT_LEVEL = frozenset({DiscrepancyKind.POSITION_DRIFT, DiscrepancyKind.CASH_DRIFT})


class Action(msgspec.Struct, frozen=True, kw_only=True):
    """A trading-state change the run made (through the validator's control path)."""

    state: str  # REDUCING or HALTED
    strategy_id: str | None = None  # None: node-wide
    reason: str = ""
    symbols: list[str] = []  # the symbols whose drift caused it


class RunSummary(msgspec.Struct, kw_only=True):
    """One run, as `execnode reconcile --json` prints it and the monitoring event carries it."""

    run_id: str
    trigger: str
    brokers: list[str]
    started_ns: int
    took_ms: float = 0.0
    matched: bool = True
    counts: dict[str, int] = {}
    in_flight: int = 0
    booked: int = 0
    actions: list[Action] = []
    discrepancies: list[Discrepancy] = []
    pnl: dict[str, dict[str, float]] = {}
    error: str = ""
    report_path: str = ""
    lifted: list[str] = []  # the RECONCILE_FAILED halts this run lifted (strategy ids, "*" the node)


def count_kinds(discrepancies: Iterable[Discrepancy]) -> dict[str, int]:
    return dict(Counter(str(d.kind) for d in discrepancies))


def result_rows(run_id: str, broker: str, account: str, diff: Diff, actions: list[Action],
                avg_px: dict[str, float] | None = None) -> list[tuple]:
    """The `reconciliation_results` rows of one run (see the module docstring)."""
    by_row: dict[tuple[str, str], list[Discrepancy]] = {}
    for d in diff.discrepancies:
        account_level = d.kind in _ACCOUNT_LEVEL or not d.strategy_id
        by_row.setdefault(("" if account_level else d.strategy_id, d.symbol or "?"), []).append(d)
    node_action = next((a.state for a in actions if a.strategy_id is None), "")
    act_of = {a.strategy_id: a.state for a in actions if a.strategy_id is not None}
    act_on = {sym: a.state for a in actions for sym in a.symbols}
    avg = avg_px or {}
    rows = []
    keys = {("", s) for s in diff.node_positions} | set(by_row)
    for strategy, sym in sorted(keys):
        found = by_row.get((strategy, sym), [])
        node_q = diff.node_positions.get(sym, 0.0) if not strategy else _sum_q(found, "node_qty")
        broker_q = diff.broker_positions.get(sym, 0.0) if not strategy else _sum_q(found, "broker_qty")
        if sym == CASH:
            cash = found[0] if found else None
            node_q = (cash.node_qty or 0.0) if cash else 0.0
            broker_q = (cash.broker_qty or 0.0) if cash else 0.0
        detail = {"discrepancies": [msgspec.to_builtins(d) for d in found]}
        action = (act_of.get(strategy) or act_on.get(sym) or node_action) if found else ""
        rows.append((run_id, broker, account, strategy, sym, float(node_q), float(broker_q),
                     avg.get(sym), None, not found, action, msgspec.json.encode(detail).decode()))
    return rows


def _sum_q(found: list[Discrepancy], attr: str) -> float:
    return sum(getattr(d, attr) or 0.0 for d in found)


def markdown(summary: RunSummary, diff: Diff | None, pnl: dict[tuple[str, str], PnlLine] | None = None,
             max_rows: int = 500) -> str:
    """The report a person reads: the verdict, the actions, the table of differences, PnL."""
    lines = [
        "# Reconciliation " + summary.run_id,
        "",
        "- trigger: " + summary.trigger,
        "- brokers: " + (", ".join(summary.brokers) or "-"),
        "- verdict: " + ("**MATCHED**" if summary.matched else "**MISMATCH**"),
        "- took: %.1f ms" % summary.took_ms,
        "- fills in flight (not judged): %d" % summary.in_flight,
        "- booked from the broker: %d reports" % summary.booked,
    ]
    if summary.error:
        lines.append("- error: " + summary.error)
    if summary.actions:
        lines += ["", "## Actions", ""]
        lines += ["- " + a.state + " " + (a.strategy_id or "node-wide") + (": " + a.reason if a.reason else "")
                  for a in summary.actions]
    if summary.counts:
        lines += ["", "## Counts", "", "| kind | count |", "|---|---:|"]
        lines += ["| %s | %d |" % (k, v) for k, v in sorted(summary.counts.items())]
    if diff is not None and diff.discrepancies:
        lines += ["", "## Differences", "",
                  "| kind | symbol | strategy | order | exec | node qty | broker qty | node px | broker px | node state "
                  "| broker state | node PnL | broker PnL |",
                  "|---|---|---|---|---|---:|---:|---:|---:|---|---|---:|---:|"]
        for d in diff.discrepancies[:max_rows]:
            lines.append("| " + " | ".join((
                d.kind, d.symbol, d.strategy_id, d.client_order_id, d.exec_id, _num(d.node_qty), _num(d.broker_qty),
                _num(d.node_px), _num(d.broker_px), d.node_state, d.broker_state, _num(d.node_pnl),
                _num(d.broker_pnl))) + " |")
        if len(diff.discrepancies) > max_rows:
            lines.append("")
            lines.append("(%d more in reconciliation_results)" % (len(diff.discrepancies) - max_rows))
    if pnl:
        lines += ["", "## PnL (average cost, net of fees)", "",
                  "| strategy | symbol | position | avg cost | mark | realised | unrealised | fees |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for (strategy, sym), p in sorted(pnl.items())[:max_rows]:
            lines.append("| %s | %s | %s | %.4f | %.4f | %.2f | %.2f | %.2f |" % (
                strategy, sym, _num(p.position), p.avg_cost, p.mark, p.realised, p.unrealised, p.fees))
    return "\n".join(lines) + "\n"


def _num(x: float | None) -> str:
    return "" if x is None else ("%.6g" % x)
