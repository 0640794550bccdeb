"""Nautilus engine: child start-up time and per-order latency through a real Nautilus kernel.

`python -m bench.nautilus_report [--orders 300] [--warmup 50] [--starts 3] [--burst 2000] [--json]`

A trivial broker ROUTER (a thread in this process, tests/fakes/instant_broker.py) answers every
SubmitOrder with NEW then FILL at once. Orders go one at a time (send, wait for its FILL on the PUB socket, next), so the figures
are latency, not queueing. Timed: SignalAccepted sent on the engine's PULL -> SubmitOrder received
at the broker, and -> FILL received on the PUB. All stamps are `perf_counter_ns` in this process.
Start-up: spawn -> `ready` at the host (the child's own figure, process start -> trader running,
beside it), over `--starts` fresh children; the warm-up orders are excluded. Throughput: `--burst`
orders pushed at once, until the last FILL is on the PUB.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import msgspec
import zmq

from adapters.engines.nautilus import NautilusEngineConfig, NautilusEngineProcess
from node.messages import (
    Action,
    Signal,
    SignalAccepted,
    encode,
    report_decoder,
)
from node.orders import client_order_id_for


def _instant_broker():
    """tests/fakes/instant_broker.py by path (schwab-py installs a top-level `tests` package of its own,
    which shadows the repository's `tests` outside pytest's test tree)."""
    path = Path(__file__).resolve().parent.parent / "tests" / "fakes" / "instant_broker.py"
    spec = importlib.util.spec_from_file_location("nae_fakes_instant_broker", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.InstantBroker()


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


def run(orders: int, warmup: int, starts: int, burst: int = 2_000) -> dict:
    broker = _instant_broker()
    cfg = NautilusEngineConfig(log_level="ERROR")
    ready_ms, child_ms = [], []
    try:
        for _ in range(starts - 1):
            p = NautilusEngineProcess(cfg, broker.endpoint)
            p.start()
            ready_ms.append(p.ready_ms)
            child_ms.append(p.startup_ms)
            p.stop()
        proc = NautilusEngineProcess(cfg, broker.endpoint)
        eps = proc.start()
        ready_ms.append(proc.ready_ms)
        child_ms.append(proc.startup_ms)
        ctx = zmq.Context()
        push, sub = ctx.socket(zmq.PUSH), ctx.socket(zmq.SUB)
        for s in (push, sub):
            s.setsockopt(zmq.LINGER, 0)
        push.connect(eps["intake"])
        sub.setsockopt(zmq.SUBSCRIBE, b"FILL/")
        sub.connect(eps["events"])
        time.sleep(0.2)
        accs = [
            SignalAccepted("%016x" % (0xB000 + i), 0, Signal(
                request_id="b-" + str(i), strategy_id="bench", timestamp=time.time(), symbol="AAPL",
                action=(Action.BUY, Action.SELL)[i % 2], quantity=1.0))  # fmt: skip
            for i in range(warmup + orders)
        ]
        frames = [encode(a) for a in accs]
        to_broker, to_fill = [], []
        for i, frame in enumerate(frames):
            coid = client_order_id_for(accs[i].signal_id)
            t0 = time.perf_counter_ns()
            push.send(frame)
            while True:
                if not sub.poll(5_000):
                    raise TimeoutError("no FILL for " + coid)
                _, payload = sub.recv_multipart()
                if report_decoder.decode(payload).client_order_id == coid:
                    break
            t1 = time.perf_counter_ns()
            if i >= warmup:
                to_broker.append((broker.submit_ns[coid] - t0) / 1000.0)
                to_fill.append((t1 - t0) / 1000.0)
        burst_frames = [
            encode(SignalAccepted("%016x" % (0xC0000 + i), 0, Signal(
                request_id="c-" + str(i), strategy_id="bench", timestamp=time.time(), symbol="MSFT",
                action=(Action.BUY, Action.SELL)[i % 2], quantity=1.0)))  # fmt: skip
            for i in range(burst)
        ]
        t_burst = time.perf_counter()
        for frame in burst_frames:
            push.send(frame)
        got = 0
        while got < burst:
            if not sub.poll(10_000):
                raise TimeoutError("burst: only " + str(got) + " FILLs; child " + str(proc.stats()))
            sub.recv_multipart()
            got += 1
        burst_s = time.perf_counter() - t_burst
        stats = proc.stats()
        t_stop = time.perf_counter()
        clean = proc.stop()
        stop_ms = (time.perf_counter() - t_stop) * 1000.0
        push.close(0)
        sub.close(0)
        ctx.term()
    finally:
        broker.close()
    return {
        "orders": orders,
        "startup_ready_ms_p50": pct(ready_ms, 0.5),
        "startup_ready_ms_max": max(ready_ms),
        "startup_child_ms_p50": pct(child_ms, 0.5),
        "signal_to_submit_us": {"p50": pct(to_broker, 0.5), "p99": pct(to_broker, 0.99), "p999": pct(to_broker, 0.999)},
        "signal_to_fill_us": {"p50": pct(to_fill, 0.5), "p99": pct(to_fill, 0.99), "p999": pct(to_fill, 0.999)},
        "burst_orders": burst,
        "burst_orders_per_s": burst / burst_s if burst_s > 0 else 0.0,
        "stop_ms": stop_ms,
        "stop_clean": clean,
        "child_stats": msgspec.to_builtins(stats),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--burst", type=int, default=2_000, help="orders pushed at once, for throughput")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = run(args.orders, args.warmup, max(1, args.starts), max(1, args.burst))
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print("nautilus engine, %d orders one at a time" % out["orders"])
    print("  start-up to ready     p50 %8.0f ms  max %6.0f ms  (child: %0.f ms)"
          % (out["startup_ready_ms_p50"], out["startup_ready_ms_max"], out["startup_child_ms_p50"]))  # fmt: skip
    for key, label in (("signal_to_submit_us", "signal -> SubmitOrder"), ("signal_to_fill_us", "signal -> FILL on PUB")):
        v = out[key]
        print("  %-21s p50 %8.0f us  p99 %6.0f us  p99.9 %6.0f us" % (label, v["p50"], v["p99"], v["p999"]))
    print("  burst of %d           %8.0f orders/s to FILL" % (out["burst_orders"], out["burst_orders_per_s"]))
    print("  stop                  %8.0f ms  clean=%s" % (out["stop_ms"], out["stop_clean"]))


if __name__ == "__main__":
    main()
