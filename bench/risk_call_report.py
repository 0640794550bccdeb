"""The gate's risk call per signal: `check` then `commit` (two kernel calls) against `check_commit` (one).

    python -m bench.risk_call_report [--blocks 20] [--n 2000] [--json]

One process, two `PreTradeRisk`s built as the validator builds its own (`throughput_limits()`, the
paper symbols, warmed); blocks of `--n` signals (50 strategies over the paper symbols, both sides)
alternate between the two paths, each block on fresh request ids. The figure is the CPU per signal of
a block (`time.thread_time_ns`), medians and ranges over the blocks; read B/A.
"""

from __future__ import annotations

import argparse
import statistics
import time

import orjson

from node.config import IntakeConfig, NodeConfig, SigningConfig, StorageConfig
from node.messages import Signal
from node.risk import PreTradeRisk
from node.risk.config import throughput_limits


def _risk(cfg: NodeConfig, prices: dict[str, float]) -> PreTradeRisk:
    risk = PreTradeRisk(cfg.risk, list(prices), prices, cfg.equity_usd)
    risk.warm()
    return risk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--n", type=int, default=2_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cfg = NodeConfig(node_id="risk-call-bench", signing=SigningConfig(keys={"k": "0" * 32}), intake=IntakeConfig(port=0),
                     risk=throughput_limits(), equity_usd=1e12, storage=StorageConfig(redis_url="redis://unused"))
    prices = {s.symbol: s.price for s in cfg.broker.paper.symbols}
    symbols = list(prices)
    two, one = _risk(cfg, prices), _risk(cfg, prices)

    def signals(tag: str) -> list[Signal]:
        return [Signal(request_id=tag + "-" + str(j), strategy_id="s" + str(j % 50), symbol=symbols[j % len(symbols)],
                       action="BUY" if j % 2 else "SELL", quantity=1.0, timestamp=1.0) for j in range(args.n)]

    a_us: list[float] = []
    b_us: list[float] = []
    for block in range(args.blocks):
        now = time.time_ns()
        sigs = signals("a" + str(block))
        c0 = time.thread_time_ns()
        for s in sigs:
            if not two.check(s, now):
                two.commit(s, now)
        a_us.append((time.thread_time_ns() - c0) / args.n / 1e3)
        sigs = signals("b" + str(block))
        c0 = time.thread_time_ns()
        for s in sigs:
            one.check_commit(s, now)
        b_us.append((time.thread_time_ns() - c0) / args.n / 1e3)
    a, b = statistics.median(a_us), statistics.median(b_us)
    out = {"check_then_commit_us": round(a, 3), "check_commit_us": round(b, 3), "ratio": round(b / a, 3),
           "a_range": [round(min(a_us), 2), round(max(a_us), 2)], "b_range": [round(min(b_us), 2), round(max(b_us), 2)]}
    print(orjson.dumps(out).decode() if args.json else
          "risk call per signal: check+commit (A) %(check_then_commit_us).2f us, check_commit (B) %(check_commit_us).2f us, "
          "B/A %(ratio).2f (ranges %(a_range)s / %(b_range)s)" % out)


if __name__ == "__main__":
    main()
