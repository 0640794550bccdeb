"""What one full garbage collection costs in a validator process, before and after the tuning.

    python -m bench.gc_report [--entries 60000] [--json]

CPython's cyclic collector holds the GIL while it walks the tracked containers of the generations
it collects; a full collection walks every long-lived one, and the intake loop waits meanwhile
(node.gcwatch). This builds what a validator process holds (Ray, numba, the node's modules, a
warmed `PreTradeRisk`) and the dedupe memory of `--entries` signals, then times full collections
(`gc.collect()`), CPU time of this thread (what a collection costs whatever else the machine runs)
and wall time:

- `startup_heap`: the imports and the risk engine, not frozen (as before) and after `gc.freeze()`;
- `dedupe_memory`: `--entries` verdicts kept as `Reply` structs in the memory's tuples (as before)
  and as their msgpack bytes (as now: the entries hold nothing the collector tracks).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

import msgspec
import orjson


def _full_collection() -> dict:
    c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
    gc.collect()
    cpu, wall = time.thread_time_ns() - c0, time.perf_counter_ns() - w0
    return {"tracked": len(gc.get_objects()), "cpu_ms": round(cpu / 1e6, 2), "wall_ms": round(wall / 1e6, 2)}


def _best(n: int = 3) -> dict:
    runs = [_full_collection() for _ in range(n)]
    return min(runs, key=lambda r: r["cpu_ms"])


def measure(entries: int) -> dict:
    import numba  # noqa: F401 - what a validator process has loaded
    import ray  # noqa: F401

    from actors.validator import Validator  # noqa: F401
    from node.config import load_config
    from node.messages import Reply, Status
    from node.risk import PreTradeRisk

    cfg = load_config(None, env={})
    prices = {s.symbol: s.price for s in cfg.broker.paper.symbols}
    risk = PreTradeRisk(cfg.risk, list(prices), prices, cfg.equity_usd)
    risk.warm()
    out: dict = {"entries": entries, "startup_heap": {"not_frozen": _best()}}
    gc.freeze()
    out["startup_heap"]["frozen"] = _best()

    digest = b"\x00" * 32
    as_structs = {"r%d" % i: (digest, 1.0, Reply(status=Status.ACCEPTED, request_id="r%d" % i, signal_id="s%d" % i))
                  for i in range(entries)}
    out["dedupe_memory"] = {"reply_structs": _best()}
    del as_structs
    encode = msgspec.msgpack.Encoder().encode
    as_bytes = {"r%d" % i: (digest, 1.0, encode(Reply(status=Status.ACCEPTED, request_id="r%d" % i,
                                                        signal_id="s%d" % i))) for i in range(entries)}
    out["dedupe_memory"]["msgpack_bytes"] = _best()
    del as_bytes
    gc.unfreeze()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gc_report", description=__doc__.split("\n")[0])
    p.add_argument("--entries", type=int, default=60_000, help="dedupe entries (1,000 signals/s x 60 s)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    report = measure(args.entries)
    if not args.json:
        for part, cases in report.items():
            if isinstance(cases, dict):
                for case, r in cases.items():
                    sys.stderr.write("%-14s %-15s tracked %8d  full collection cpu %7.2f ms  wall %7.2f ms\n"
                                     % (part, case, r["tracked"], r["cpu_ms"], r["wall_ms"]))
    sys.stdout.write(orjson.dumps(report).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
