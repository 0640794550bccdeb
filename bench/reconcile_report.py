"""Reconciliation at scale: 100,000 fills over 5,000 symbols, node vs broker, in one run.

    python -m bench.reconcile_report            # a table
    python -m bench.reconcile_report --json     # one JSON object

Two books are built outside the timed part: the broker's (100,000 fills of 25,000 orders over 5,000
symbols and 4 strategies, its positions and orders) and the node's, which lacks 100 of the fills
(dropped on the way), one order (placed behind its back) and sees one position edited at the venue.
Timed, each `--repeat` times (p50 / max reported):

- `diff`: `node.reconcile.diff_books` (typed structs) + `to_book` (what to book);
- `diff_pnl`: the same plus average-cost PnL per strategy and symbol (`node.pnl`): what a run computes;
- `plain`: the same diff written plainly, as a seed-style script would: rows as dicts (a DB cursor's
  shape), a full scan per question, positions recomputed from every fill on each side;
- `noop`: building the two dicts of fills by exec_id alone (the floor any diff pays);
- `ledger_load` (with `--database-url`): reading the node's 100,000 fills and 25,000 orders back from
  PostgreSQL as the reconciler does (a throwaway database, dropped afterwards), and `run_total`: that
  load + diff + PnL, a whole run's computation.

Every version must find the same discrepancies (checked), so the figures compare like with like.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter

from node.messages import Side
from node.pnl import pnl_by_strategy_symbol
from node.reconcile import BrokerBook, Fill, NodeBook, diff_books, orders_from_fills, positions_of, to_book

N_FILLS = 100_000
N_SYMBOLS = 5_000
FILLS_PER_ORDER = 4
DROPPED = 100
TARGET_S = 1.0


def make_books(n_fills: int = N_FILLS, n_symbols: int = N_SYMBOLS, seed: int = 7) -> tuple[NodeBook, BrokerBook]:
    rng = random.Random(seed)
    symbols = ["S%05d" % i for i in range(n_symbols)]
    strategies = ["momo", "meanrev", "pairs", "carry"]
    fills = []
    n_orders = n_fills // FILLS_PER_ORDER
    ts = 1_700_000_000_000_000_000
    for o in range(n_orders):
        coid = "NAE-%08d-0" % o
        sym = symbols[o % n_symbols]
        strat = strategies[o % len(strategies)]
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        for j in range(FILLS_PER_ORDER):
            ts += 1_000
            fills.append(Fill("E-%08d-%d" % (o, j), coid, strat, sym, side, float(rng.randint(1, 100)),
                              round(rng.uniform(10, 500), 2), ts, 0.0, "V-%d" % o))
    broker_orders = orders_from_fills(fills)
    positions = positions_of(fills)
    positions[symbols[17]] = positions.get(symbols[17], 0.0) + 5.0  # edited at the venue
    dropped = {f.exec_id for f in rng.sample(fills[FILLS_PER_ORDER:], DROPPED)}
    foreign = fills[0].client_order_id  # placed behind the node's back
    node_fills = [f for f in fills if f.exec_id not in dropped and f.client_order_id != foreign]
    node_orders = [o for o in orders_from_fills(node_fills) if o.client_order_id != foreign]
    node = NodeBook(fills=node_fills, orders=node_orders)
    broker = BrokerBook(broker="paper", fills=fills, orders=broker_orders, positions=positions)
    return node, broker


def run_diff(node: NodeBook, broker: BrokerBook) -> Counter:
    diff = diff_books(node, broker)
    to_book(diff, broker)
    return Counter(str(d.kind) for d in diff.discrepancies)


def run_diff_pnl(node: NodeBook, broker: BrokerBook) -> Counter:
    out = run_diff(node, broker)
    pnl_by_strategy_symbol(node.fills, {f.symbol: f.px for f in broker.fills})
    return out


def as_rows(book: NodeBook | BrokerBook) -> tuple[list[dict], list[dict]]:
    fills = [{"exec_id": f.exec_id, "client_order_id": f.client_order_id, "strategy_id": f.strategy_id,
              "symbol": f.symbol, "side": str(f.side), "qty": f.qty, "px": f.px, "ts_ns": f.ts_ns} for f in book.fills]
    orders = [{"client_order_id": o.client_order_id, "state": str(o.state), "cum_qty": o.cum_qty} for o in book.orders]
    return fills, orders


def plain_diff(node_fills: list[dict], node_orders: list[dict], broker_fills: list[dict], broker_orders: list[dict],
               broker_positions: dict[str, float], tol: float = 1e-6) -> Counter:
    """The same classification written plainly (rows as dicts, no explained-by bookkeeping shortcuts)."""
    out: Counter = Counter()
    node_by_id = {}
    for r in node_fills:
        node_by_id[r["exec_id"]] = r
    broker_by_id = {}
    for r in broker_fills:
        broker_by_id[r["exec_id"]] = r
    node_order_ids = set(r["client_order_id"] for r in node_orders)
    broker_order_ids = set(r["client_order_id"] for r in broker_orders)
    missing = [r for r in broker_fills if r["exec_id"] not in node_by_id]
    for r in missing:
        out["MISSING_FILL" if r["client_order_id"] in node_order_ids else "FILL_UNKNOWN_TO_LEDGER"] += 1
    for r in node_fills:
        if r["exec_id"] not in broker_by_id:
            out["FILL_UNKNOWN_TO_BROKER"] += 1
    for eid, r in node_by_id.items():
        b = broker_by_id.get(eid)
        if b is not None and abs(b["qty"] - r["qty"]) > tol:
            out["QUANTITY_MISMATCH"] += 1
        elif b is not None and abs(b["px"] - r["px"]) > tol * max(1.0, abs(r["px"])):
            out["PRICE_MISMATCH"] += 1
    for oid in broker_order_ids - node_order_ids:
        out["ORDER_UNKNOWN_TO_NODE"] += 1

    def position(rows: list[dict]) -> dict[str, float]:
        pos: dict[str, float] = {}
        for r in rows:
            pos[r["symbol"]] = pos.get(r["symbol"], 0.0) + (r["qty"] if r["side"] == "BUY" else -r["qty"])
        return pos

    node_pos = position(node_fills)
    missing_pos = position(missing)
    for sym in set(node_pos) | set(broker_positions):
        expected = node_pos.get(sym, 0.0) + missing_pos.get(sym, 0.0)
        if abs(broker_positions.get(sym, 0.0) - expected) > tol:
            out["POSITION_DRIFT"] += 1
    return out


def noop(node: NodeBook, broker: BrokerBook) -> int:
    a = {f.exec_id: f for f in node.fills}
    b = {f.exec_id: f for f in broker.fills}
    return len(a) + len(b)


def _time(fn, repeat: int) -> tuple[list[float], object]:
    out, result = [], None
    fn()  # warm-up, excluded
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        result = fn()
        out.append((time.perf_counter_ns() - t0) / 1e9)
    return out, result


def measure(n_fills: int = N_FILLS, n_symbols: int = N_SYMBOLS, repeat: int = 5,
            database_url: str | None = None) -> dict:
    node, broker = make_books(n_fills, n_symbols)
    rows = (*as_rows(node), *as_rows(broker), broker.positions)
    expected = {"MISSING_FILL": DROPPED, "FILL_UNKNOWN_TO_LEDGER": FILLS_PER_ORDER, "ORDER_UNKNOWN_TO_NODE": 1,
                "POSITION_DRIFT": 1}
    result: dict = {"fills": len(broker.fills), "symbols": len({f.symbol for f in broker.fills}),
                    "orders": len(broker.orders), "repeat": repeat, "target_s": TARGET_S, "versions": {}}
    for name, fn in (("diff", lambda: run_diff(node, broker)), ("diff_pnl", lambda: run_diff_pnl(node, broker)),
                     ("plain", lambda: plain_diff(*rows)), ("noop", lambda: noop(node, broker))):
        times, found = _time(fn, repeat)
        entry = {"p50_s": round(statistics.median(times), 4), "max_s": round(max(times), 4)}
        if isinstance(found, Counter):
            entry["found"] = dict(found)
            entry["same_as_expected"] = dict(found) == expected
        result["versions"][name] = entry
    v = result["versions"]
    if database_url:
        load = measure_ledger_load(database_url, node, repeat)
        v["ledger_load"] = {"p50_s": round(statistics.median(load), 4), "max_s": round(max(load), 4)}
        v["run_total"] = {"p50_s": round(v["ledger_load"]["p50_s"] + v["diff_pnl"]["p50_s"], 4),
                          "max_s": round(v["ledger_load"]["max_s"] + v["diff_pnl"]["max_s"], 4)}
    result["diff_pnl_under_target"] = v["diff_pnl"]["max_s"] < TARGET_S
    result["plain_over_diff"] = round(v["plain"]["p50_s"] / v["diff"]["p50_s"], 2)
    # load-independent: the whole computation in units of the bare cost of indexing both books
    result["diff_pnl_over_noop"] = round(v["diff_pnl"]["p50_s"] / v["noop"]["p50_s"], 2)
    return result


def measure_ledger_load(database_url: str, node: NodeBook, repeat: int) -> list[float]:
    """Write the node's book to a throwaway database, then time the reconciler's read of it."""
    import asyncio

    from actors.reconciler import Reconciler
    from node.config import NodeConfig
    from node.migrations import apply_migrations, create_database, drop_database

    async def go() -> list[float]:
        import asyncpg

        name, url = await create_database(database_url, "nae_bench_reconcile_")
        try:
            await apply_migrations(url)
            conn = await asyncpg.connect(url)
            try:
                await conn.copy_records_to_table("fills", columns=(
                    "exec_id", "client_order_id", "strategy_id", "symbol", "side", "qty", "px", "cum_qty", "ts_ns",
                    "stream_id"), records=[(f.exec_id, f.client_order_id, f.strategy_id, f.symbol, str(f.side), f.qty,
                                            f.px, f.qty, f.ts_ns, "0-0") for f in node.fills])
                await conn.copy_records_to_table("orders", columns=(
                    "client_order_id", "strategy_id", "symbol", "side", "state", "cum_qty", "leaves_qty", "avg_px",
                    "last_event_ns", "stream_pos", "stream_id"), records=[
                    (o.client_order_id, o.strategy_id, o.symbol, str(o.side), str(o.state), o.cum_qty, o.leaves_qty,
                     o.avg_px, 0, 0, "0-0") for o in node.orders])
            finally:
                await conn.close()
            rec = Reconciler(NodeConfig(), "redis://unused", url, _no_brokers)
            await rec._node_book()  # warm-up
            out = []
            for _ in range(repeat):
                t0 = time.perf_counter_ns()
                book = await rec._node_book()
                out.append((time.perf_counter_ns() - t0) / 1e9)
            assert len(book.fills) == len(node.fills)
            return out
        finally:
            await drop_database(database_url, name)

    return asyncio.run(go())


async def _no_brokers() -> list:
    return []


def table(r: dict) -> str:
    lines = ["reconciliation: %d fills, %d symbols, %d orders (%d runs each)" % (
        r["fills"], r["symbols"], r["orders"], r["repeat"]), "",
        "%-10s %10s %10s  %s" % ("version", "p50 s", "max s", "found = expected")]
    for name, e in r["versions"].items():
        lines.append("%-10s %10.4f %10.4f  %s" % (name, e["p50_s"], e["max_s"], e.get("same_as_expected", "-")))
    lines.append("")
    lines.append("diff + PnL under %.1f s: %s; plain / diff = %.2fx; diff + PnL / noop = %.2fx" % (
        r["target_s"], r["diff_pnl_under_target"], r["plain_over_diff"], r["diff_pnl_over_noop"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--fills", type=int, default=N_FILLS)
    ap.add_argument("--symbols", type=int, default=N_SYMBOLS)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--database-url", help="also time reading the ledger back from this PostgreSQL server")
    a = ap.parse_args(argv)
    result = measure(a.fills, a.symbols, a.repeat, a.database_url)
    sys.stdout.write((json.dumps(result) if a.json else table(result)) + "\n")
    return 0 if result["diff_pnl_under_target"] and all(
        e.get("same_as_expected", True) for e in result["versions"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
