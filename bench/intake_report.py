"""The validator alone (intake -> gate -> durable append -> reply), two builds in one run: what the
group commit and the gate's cuts change, without engines, a broker or Ray around it.

    python -m bench.intake_report --build A=/tmp/main-src --build B=. [--rounds 2] [--json]
                                  (REDIS_URL, else redis://127.0.0.1:6379/0)

Each round starts, per build, a fresh interpreter with that checkout first on the path, which runs
the build's `actors.validator.Validator` on its loop thread (no Ray: `LoopService.start`) against
the machine's Redis, under a node id and streams of its own (deleted after). This process drives it
through this checkout's `AsyncExecutionClient` (the same client for both builds): a paced run
(`--rate`/s for `--seconds`: reply p50 / p99) and a max-rate run (`--max-n` signals, `--window` in
flight: ACKs per second), every signal ACCEPTED or the round fails. The validator's own figures
(wake-up and append percentiles, the gate/append/reply stage sums) come from its `stats()`, and
`loop_cpu_us_per_signal` is the CPU its loop thread spent from start to the end of the round (warm-up,
paced and max-rate runs) per signal accepted, read through the thread's own CPU clock. Rounds
alternate the builds; read the ratios B/A, not the absolute times, on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time

import orjson
from nae_client import AsyncExecutionClient

from bench.rounds import add_build_args, alternate, builds_of, report

_SERVE = r'''
import secrets, sys, time
import msgspec, orjson, redis
from actors.validator import Validator
from node.config import IntakeConfig, NodeConfig, SigningConfig, StorageConfig
from node.risk.config import throughput_limits

url, node_id, secret = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = NodeConfig(node_id=node_id, signing=SigningConfig(keys={"bench": secret}), intake=IntakeConfig(port=0),
                 risk=throughput_limits(), equity_usd=1e12,
                 storage=StorageConfig(redis_url=url, signals_stream=node_id + ".signals",
                                       events_stream=node_id + ".events", monitoring_stream=node_id + ".monitoring",
                                       intake_stream=node_id + ".intake", controls_stream=node_id + ".controls",
                                       allow_volatile_redis=True))
v = Validator(cfg, url, ["tcp://127.0.0.1:1"], "tcp://127.0.0.1:2")
try:
    hello = v.start(timeout_s=60)
    loop_clock = time.pthread_getcpuclockid(v._thread.ident)  # the loop thread's CPU, read from this one
    cpu0 = time.clock_gettime_ns(loop_clock)
    print(orjson.dumps({"symbols": [s.symbol for s in cfg.broker.paper.symbols], **hello}).decode(), flush=True)
    sys.stdin.readline()
    cpu = time.clock_gettime_ns(loop_clock) - cpu0
    st = v.stats()
    st = st if isinstance(st, dict) else msgspec.to_builtins(st)  # a stats struct (node.stats) in newer builds
    keep = ("accepted", "rejected", "wake_p50_us", "wake_p99_us", "append_p50_us", "append_p99_us", "store_failures")
    out = {k: st[k] for k in keep}
    out["loop_cpu_us_per_signal"] = round(cpu / max(1, st["accepted"]) / 1e3, 2)
    for stage in ("intake_gate", "append", "reply"):
        h = st.get("stage_" + stage + "_hist") or {}
        if h.get("count"):
            out[stage + "_mean_us"] = round(h["sum_s"] / h["count"] * 1e6, 1)
    print(orjson.dumps(out).decode(), flush=True)
finally:
    v.stop()
    r = redis.Redis.from_url(url)
    for key in r.scan_iter(node_id + "*"):
        r.delete(key)
'''


def _pct(xs: list[int], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * q))] / 1e3, 1)


async def _drive(intake: str, secret: str, symbols: list[str], rate: float, seconds: float, max_n: int,
                 window: int) -> dict:
    run = secrets.token_hex(3)

    def sig(i: int) -> dict:
        return {"request_id": run + "-" + str(i), "strategy_id": "s" + str(i % 50), "symbol": symbols[i % len(symbols)],
                "action": "BUY" if i % 2 else "SELL", "quantity": 1.0}

    async with AsyncExecutionClient(intake, "bench", secret, timeout_s=30.0) as client:
        async def one(i: int, lat: list[int]) -> None:
            t = time.perf_counter_ns()
            reply = await client.send_signal(sig(i))
            lat.append(time.perf_counter_ns() - t)
            if reply.status != "ACCEPTED":
                raise RuntimeError("signal " + str(i) + ": " + str(reply.status) + " " + str(reply.reasons))

        warm: list[int] = []
        await asyncio.gather(*(one(i, warm) for i in range(500)))
        paced: list[int] = []
        n = int(rate * seconds)
        t0 = time.perf_counter()
        tasks = []
        for k in range(n):
            wait = t0 + k / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.ensure_future(one(1_000 + k, paced)))
        await asyncio.gather(*tasks)
        base = 1_000 + n
        it = iter(range(base, base + max_n))
        done: list[int] = []

        async def lane() -> None:
            for i in it:
                await one(i, done)

        t1 = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(window)))
        took = time.perf_counter() - t1
    return {"paced_p50_us": _pct(paced, 0.5), "paced_p99_us": _pct(paced, 0.99),
            "max_per_s": round(max_n / took), "max_p50_us": _pct(done, 0.5)}


def _round(code_dir: str, redis_url: str, rate: float, seconds: float, max_n: int, window: int) -> dict:
    code = os.path.abspath(code_dir)
    node_id, secret = "bench-intake-" + secrets.token_hex(4), secrets.token_hex(16)
    env = dict(os.environ, PYTHONPATH=code + os.pathsep + os.path.join(code, "client"))
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, redis_url, node_id, secret], env=env, cwd=code,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        hello = orjson.loads(proc.stdout.readline())
        got = asyncio.run(_drive(hello["intake"], secret, hello["symbols"], rate, seconds, max_n, window))
        proc.stdin.write("stats\n")
        proc.stdin.flush()
        got |= {"validator": orjson.loads(proc.stdout.readline())}
        got["loop_cpu_us_per_signal"] = got["validator"]["loop_cpu_us_per_signal"]
        return got
    finally:
        proc.stdin.close()
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_args(ap, rounds=2)
    ap.add_argument("--rate", type=float, default=1_000.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--max-n", type=int, default=20_000)
    ap.add_argument("--window", type=int, default=256)
    args = ap.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    builds = builds_of(args)
    rounds = alternate(builds, args.rounds,
                       lambda code: _round(code, redis_url, args.rate, args.seconds, args.max_n, args.window))
    report(builds, rounds, ("paced_p50_us", "paced_p99_us", "max_per_s", "max_p50_us", "loop_cpu_us_per_signal"),
           args.json)


if __name__ == "__main__":
    main()
