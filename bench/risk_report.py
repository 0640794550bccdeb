"""Pre-trade risk benchmark: the whole check set for one order against a large book, numba vs the
pure-Python reference in the same run, plus the fill-side and price-side C.w updates.

    python -m bench.risk_report            # a table
    python -m bench.risk_report --json     # one JSON object

Inputs (book, signals, argument tuples, fill reports) are built before anything is timed; warm-up
calls are excluded; each call is timed alone with perf_counter_ns. "facade" is
`PreTradeRisk.check(signal, now)` exactly as the validator calls it (id lookups + one numba call);
"kernel" is the bare numba call; "reference" is the pure-Python twin on nested lists with the same
arguments (cached aggregates, same algorithm), "reference_scratch" recomputes the aggregates it
needs from the positions (O(n)). Memory: the dense covariance is 8 * n^2 bytes (800 MB at 10,000).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from time import perf_counter_ns

import numpy as np

from node.messages import ExecKind, ExecutionReport, RiskMeta, Side, Signal
from node.risk import PreTradeRisk, RiskLimits, reference
from node.risk.kernels import apply_fill, check_order

T0 = 1_700_000_000 * 1_000_000_000
STRATEGIES = 8


def build_book(n_symbols: int, n_groups: int, seed: int = 7) -> tuple[PreTradeRisk, list[str]]:
    """A node holding a position in every one of `n_symbols`, in `n_groups` correlation groups, with
    a dense factor-model covariance loaded; limits wide enough that the benchmark orders pass."""
    rng = np.random.default_rng(seed)
    syms = ["S" + str(k) for k in range(n_symbols)]
    big = 1e15
    cfg = RiskLimits(
        initial_symbol_capacity=n_symbols, max_symbols=n_symbols + 16, cov_sample_interval_ms=0,
        symbol_groups={s: "G" + str(k % n_groups) for k, s in enumerate(syms)},
        max_symbol_long_usd=big, max_symbol_short_usd=big, max_strategy_long_usd=big, max_strategy_short_usd=big,
        max_strategy_exposure_usd=big, max_gross_exposure_usd=big, max_net_exposure_usd=big,
        max_group_exposure_usd=big, max_incremental_var_usd2=big, max_daily_loss_usd=big, max_drawdown_usd=big,
        strategy_burst=1e12, node_burst=1e12, max_position_pct=1.0,
    )
    prices = {s: float(p) for s, p in zip(syms, rng.uniform(10.0, 500.0, n_symbols))}
    risk = PreTradeRisk(cfg, syms, prices, 10_000_000_000.0)
    factors = rng.normal(size=(n_symbols, 20)) * 0.004
    cov = factors @ factors.T
    cov[np.diag_indices(n_symbols)] += rng.uniform(1e-4, 6e-4, n_symbols)
    risk.load_covariance(syms, cov)
    del cov, factors
    qty = rng.integers(-500, 500, n_symbols)
    for k, s in enumerate(syms):
        q = float(qty[k]) or 1.0
        risk.on_fill(ExecutionReport(kind=ExecKind.FILL, client_order_id="seed", exec_id="seed-" + str(k), symbol=s,
                                     side=Side.BUY if q > 0 else Side.SELL, last_qty=abs(q), last_px=prices[s],
                                     ts_ns=T0), "strat" + str(k % STRATEGIES))
    return risk, syms


def make_signals(risk: PreTradeRisk, syms: list[str], count: int, seed: int = 11) -> list[Signal]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        s = syms[int(rng.integers(len(syms)))]
        px = float(risk.book.sf[0, risk.book.sym_ids[s]])
        limit = k % 2 == 0
        out.append(Signal(
            request_id="bench-" + str(k), strategy_id="strat" + str(k % STRATEGIES), timestamp=1.0, symbol=s,
            action="BUY" if k % 3 else "SELL", quantity=float(rng.integers(1, 200)),
            order_type="LIMIT" if limit else "MARKET", limit_price=round(px * 1.001, 2) if limit else None,
            risk_meta=RiskMeta(max_exposure=1e12, max_position_pct=1.0, max_slippage=0.01) if k % 4 == 0 else None,
            correlation_group="G" + str(k % 500) if k % 5 == 0 else None,
        ))
    return out


def kernel_args(risk: PreTradeRisk, sig: Signal, now: int) -> tuple:
    """The scalar arguments `check` passes to the kernel (the state arrays stripped)."""
    return risk.kernel_args(sig, now)[6:]


def pct(samples: np.ndarray) -> dict[str, float]:
    return {"p50_ns": float(np.percentile(samples, 50)), "p99_ns": float(np.percentile(samples, 99)),
            "p999_ns": float(np.percentile(samples, 99.9)), "n": int(samples.size)}


def time_calls(fn, items, rounds: int, warm: int) -> np.ndarray:
    for k in range(min(warm, rounds)):
        fn(items[k % len(items)])
    out = np.empty(rounds, dtype=np.int64)
    n = len(items)
    for k in range(rounds):
        item = items[k % n]
        t = perf_counter_ns()
        fn(item)
        out[k] = perf_counter_ns() - t
    return out


def run(n_symbols: int = 10_000, n_groups: int = 500, rounds: int = 20_000, ref_rounds: int = 2_000,
        scratch_rounds: int = 20, fill_rounds: int = 2_000) -> dict:
    t_build = time.perf_counter()
    risk, syms = build_book(n_symbols, n_groups)
    risk.warm()
    build_s = time.perf_counter() - t_build
    b = risk.book
    now = T0 + 1_000
    signals = make_signals(risk, syms, 4_096)
    for s in signals[:64]:
        assert risk.check(s, now) == [], risk.check(s, now)
    facade = time_calls(lambda s: risk.check(s, now), signals, rounds, 2_000)
    state = (b.sf, b.tf, b.ti, b.sa, b.sn, b.g)
    args = [kernel_args(risk, s, now) for s in signals]
    kernel = time_calls(lambda a: check_order(*state, *a), args, rounds, 2_000)
    lists = tuple(a.tolist() for a in state)
    assert all(reference.check_order(*lists, *a) == check_order(*state, *a) for a in args[:64])
    ref = time_calls(lambda a: reference.check_order(*lists, *a), args, ref_rounds, 200)
    scratch_args = args[:max(scratch_rounds, 1)]
    cov_rows = {a[1]: b.cov[a[1], :n_symbols].tolist() for a in scratch_args}  # only the rows it reads
    scratch = time_calls(lambda a: reference.check_order(*lists, *a, cov=cov_rows, n=n_symbols, from_scratch=True),
                         scratch_args, scratch_rounds, 2) if scratch_rounds else np.zeros(1, dtype=np.int64)
    del cov_rows
    # ---- fill side: the whole on_fill (C.w O(n)), and the bare kernel
    rng = np.random.default_rng(5)
    reports = []
    for k in range(fill_rounds + 200):
        s = syms[int(rng.integers(n_symbols))]
        reports.append(ExecutionReport(kind=ExecKind.FILL, client_order_id="f", exec_id="bench-fill-" + str(k),
                                       symbol=s, side=Side.BUY if k % 2 else Side.SELL, last_qty=1.0,
                                       last_px=float(b.sf[0, b.sym_ids[s]]), ts_ns=now))
    fills = time_calls(lambda r: risk.on_fill(r, "strat1"), reports, fill_rounds, 200)
    fill_args = [(b.strat_ids["strat1"], b.sym_ids[r.symbol], 1.0 if k % 2 else -1.0, r.last_px)
                 for k, r in enumerate(reports)]
    fill_kernel = time_calls(lambda a: apply_fill(b.sf, b.tf, b.sa, b.g, b.cov, n_symbols, a[0], a[1], a[2], 0.0, a[3]),
                             fill_args, fill_rounds, 200)
    ticks = [(syms[int(rng.integers(n_symbols))], float(rng.uniform(10.0, 500.0))) for _ in range(fill_rounds + 200)]
    prices = time_calls(lambda t: risk.on_price(t[0], t[1], now), ticks, fill_rounds, 200)
    fp, kp, rp = pct(facade), pct(kernel), pct(ref)
    return {
        "benchmark": "pre_trade_risk",
        "portfolio_positions": n_symbols,
        "correlation_groups": n_groups,
        "strategies": STRATEGIES,
        "build_s": round(build_s, 2),
        "check_facade": fp,
        "check_kernel": kp,
        "check_reference": rp,
        "check_reference_scratch": pct(scratch) if scratch_rounds else None,
        "speedup_reference_over_facade_p50": rp["p50_ns"] / fp["p50_ns"],
        "speedup_reference_over_kernel_p50": rp["p50_ns"] / kp["p50_ns"],
        "speedup_reference_scratch_over_facade_p50": (float(np.percentile(scratch, 50)) / fp["p50_ns"])
        if scratch_rounds else None,
        "fill_update_facade": pct(fills),
        "fill_update_kernel": pct(fill_kernel),
        "price_update_facade": pct(prices),
        "targets": {"check_p50_ns": 2_000, "check_p99_ns": 10_000, "speedup_min": 50},
    }


def table(r: dict) -> str:
    lines = ["pre-trade risk: %d positions, %d groups, %d strategies (book built in %.1f s)"
             % (r["portfolio_positions"], r["correlation_groups"], r["strategies"], r["build_s"]),
             "%-28s %10s %10s %10s %8s" % ("what", "p50 us", "p99 us", "p99.9 us", "n")]
    for key in ("check_facade", "check_kernel", "check_reference", "check_reference_scratch", "fill_update_facade",
                "fill_update_kernel", "price_update_facade"):
        v = r.get(key)
        if v:
            lines.append("%-28s %10.2f %10.2f %10.2f %8d" % (key, v["p50_ns"] / 1e3, v["p99_ns"] / 1e3,
                                                              v["p999_ns"] / 1e3, v["n"]))
    lines.append("reference / facade p50: %.1fx   reference / kernel p50: %.1fx   scratch / facade p50: %s"
                 % (r["speedup_reference_over_facade_p50"], r["speedup_reference_over_kernel_p50"],
                    "%.0fx" % r["speedup_reference_scratch_over_facade_p50"]
                    if r["speedup_reference_scratch_over_facade_p50"] else "-"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--symbols", type=int, default=10_000)
    ap.add_argument("--groups", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=20_000)
    ap.add_argument("--ref-rounds", type=int, default=2_000)
    ap.add_argument("--scratch-rounds", type=int, default=20)
    ap.add_argument("--fill-rounds", type=int, default=2_000)
    a = ap.parse_args(argv)
    result = run(a.symbols, a.groups, a.rounds, a.ref_rounds, a.scratch_rounds, a.fill_rounds)
    sys.stdout.write((json.dumps(result) if a.json else table(result)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
