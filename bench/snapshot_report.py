"""The risk snapshot's cost to the validator's intake loop, two builds in one run.

    python -m bench.snapshot_report --build A=/tmp/main-src --build B=. [--rounds 4] [--json]
                                    (REDIS_URL, else redis://127.0.0.1:6379/0)

Each round starts, per build, a fresh interpreter with that checkout first on the path, which runs
the build's `actors.validator.Validator` on its loop thread (no Ray: `LoopService.start`) against the
machine's Redis, under a node id and streams of its own (deleted after), with a risk state like a busy
node's: `--positions` filled positions (50 strategies over the paper symbols), `--pending` accepted
orders still reserved (resting stops), an events stream of `--events` entries of `--event-bytes`
each (the snapshot reads its newest entry for the mark), and fills published to the validator at
`--fill-rate`/s through a PUB socket standing in for the events relay while this process drives a
paced run (`--rate`/s for `--seconds`, every signal ACCEPTED or the round fails).

Figures: the client's reply p50 / p99 / p99.9 / max over the paced run; the intake loop's time inside
`Validator._save_risk_state` (wall and CPU of the loop thread, per second of the run, and the longest
single call: the stall one snapshot puts on the intake), timed by a wrapper both builds' loops call
through; and the snapshots written (`RiskStateStore.save_snapshot`, on whichever thread). Rounds
alternate the builds; read the ratios B/A, not the absolute times, on a shared machine. `--profile OUT`
also records a py-spy profile (speedscope) of the validator's process in each round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
from nae_client import AsyncExecutionClient

from bench.rounds import add_build_args, alternate, builds_of, report

_SERVE = r'''
import sys, threading, time
import msgspec, orjson, redis, zmq
from actors.risk_state import RiskStateStore
from actors.validator import Validator
from node.config import IntakeConfig, NodeConfig, SigningConfig, StorageConfig
from node.messages import ExecKind, ExecutionReport, Side, Signal, encode, event_topic
from node.risk.config import throughput_limits
from node.streams import EVENTS_FIELD, pack_batch

url, node_id, secret = sys.argv[1], sys.argv[2], sys.argv[3]
n_pos, n_pending, n_events, event_bytes, fill_rate = (int(x) for x in sys.argv[4:9])
cfg = NodeConfig(node_id=node_id, signing=SigningConfig(keys={"bench": secret}), intake=IntakeConfig(port=0),
                 risk=throughput_limits(), equity_usd=1e12,
                 storage=StorageConfig(redis_url=url, signals_stream=node_id + ".signals",
                                       events_stream=node_id + ".events", monitoring_stream=node_id + ".monitoring",
                                       intake_stream=node_id + ".intake", controls_stream=node_id + ".controls",
                                       allow_volatile_redis=True))
r = redis.Redis.from_url(url)
pipe = r.pipeline(transaction=False)
for _ in range(n_events):  # a node's events stream: the snapshot's tip read returns its newest entry
    pipe.xadd(cfg.storage.events_stream, {EVENTS_FIELD: pack_batch([b"\xc4" + bytes([200]) + b"x" * 200]
                                                                   * max(1, event_bytes // 202))})
pipe.execute()

saved = []
_save = RiskStateStore.save_snapshot
def counted(self, snap):  # whichever thread writes it
    _save(self, snap)
    saved.append(time.perf_counter_ns())
RiskStateStore.save_snapshot = counted

ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)  # stands in for the events relay
pub.setsockopt(zmq.LINGER, 0)
events_endpoint = "tcp://127.0.0.1:" + str(pub.bind_to_random_port("tcp://127.0.0.1"))
v = Validator(cfg, url, ["tcp://127.0.0.1:1"], events_endpoint)
symbols = [s.symbol for s in cfg.broker.paper.symbols]
prices = {s.symbol: s.price for s in cfg.broker.paper.symbols}

def fill(k, tag):
    sym = symbols[k % len(symbols)]
    return ExecutionReport(kind=ExecKind.FILL, client_order_id="c" + tag + str(k), exec_id="e" + tag + str(k),
                           symbol=sym, side=Side.BUY if k % 3 else Side.SELL, last_qty=1.0, last_px=prices[sym],
                           cum_qty=1.0, ts_ns=time.time_ns(), strategy_id="s" + str((k // len(symbols)) % 50),
                           request_id="r" + tag + str(k))

def load():
    now = time.time_ns()
    for k in range(n_pos):
        v._take_report(fill(k, "p"))
    for k in range(n_pending):
        sig = Signal(request_id="pend" + str(k), strategy_id="s" + str(k % 50), timestamp=now / 1e9,
                     symbol=symbols[k % len(symbols)], action="BUY", quantity=1.0)
        v.risk.commit(sig, now)
    v._risk_dirty = True

timing = {"calls": 0, "wall_ns": 0, "cpu_ns": 0, "max_ns": 0}
def install():
    inner = v._save_risk_state
    def timed(now):
        t, c = time.perf_counter_ns(), time.thread_time_ns()
        inner(now)
        d = time.perf_counter_ns() - t
        timing["calls"] += 1
        timing["wall_ns"] += d
        timing["cpu_ns"] += time.thread_time_ns() - c
        timing["max_ns"] = max(timing["max_ns"], d)
    v._save_risk_state = timed  # the loop's housekeeping calls self._save_risk_state(now)

stop = threading.Event()
def publish():
    k, t0 = 0, time.perf_counter()
    while not stop.is_set():
        due = t0 + k / fill_rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        rep = fill(k, "f")
        pub.send_multipart((event_topic(rep.kind, rep.strategy_id), encode(rep)))
        k += 1

try:
    hello = v.start(timeout_s=60)
    v.call_on_loop(load, timeout_s=120)
    print(orjson.dumps({"symbols": symbols, **hello}).decode(), flush=True)
    sys.stdin.readline()  # the driver warmed up: measure from here
    for k in timing:
        timing[k] = 0
    v.call_on_loop(install)
    n_saved0, t_start = len(saved), time.perf_counter()
    feeder = threading.Thread(target=publish, daemon=True)
    if fill_rate > 0:
        feeder.start()
    sys.stdin.readline()  # the paced run is over
    stop.set()
    took = time.perf_counter() - t_start
    st = v.stats()
    st = st if isinstance(st, dict) else msgspec.to_builtins(st)  # a stats struct (node.stats) in newer builds
    out = {"seconds": round(took, 2), "snapshots": len(saved) - n_saved0, "save_calls": timing["calls"],
           "loop_ms_per_s": round(timing["wall_ns"] / 1e6 / took, 3),
           "loop_cpu_ms_per_s": round(timing["cpu_ns"] / 1e6 / took, 3),
           "loop_max_us": round(timing["max_ns"] / 1e3, 1), "wake_p99_us": st["wake_p99_us"],
           "positions": sum(len(p) for p in v.positions().values()), "pending": len(v.risk._pending)}
    print(orjson.dumps(out).decode(), flush=True)
finally:
    stop.set()
    v.stop()
    pub.close(0)
    for key in r.scan_iter(node_id + "*"):
        r.delete(key)
'''


def _pct(xs: list[int], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * q))] / 1e3, 1)


async def _drive(intake: str, secret: str, symbols: list[str], rate: float, seconds: float, proc) -> dict:
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
        proc.stdin.write("go\n")
        proc.stdin.flush()
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
    return {"paced_p50_us": _pct(paced, 0.5), "paced_p99_us": _pct(paced, 0.99), "paced_p999_us": _pct(paced, 0.999),
            "paced_max_us": _pct(paced, 1.0)}


def _round(code_dir: str, redis_url: str, args: argparse.Namespace) -> dict:
    code = os.path.abspath(code_dir)
    node_id, secret = "bench-snap-" + secrets.token_hex(4), secrets.token_hex(16)
    env = dict(os.environ, PYTHONPATH=code + os.pathsep + os.path.join(code, "client"))
    argv = [redis_url, node_id, secret] + [str(x) for x in (args.positions, args.pending, args.events,
                                                             args.event_bytes, args.fill_rate)]
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, *argv], env=env, cwd=code, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    spy = None
    try:
        hello = orjson.loads(proc.stdout.readline())
        if args.profile:  # py-spy (not a dependency: `pip install py-spy`) over the warm-up and the paced run
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            spy = subprocess.Popen([py_spy, "record", "-p", str(proc.pid), "-d", str(int(args.seconds) + 2), "-r", "200",
                                    "--format", "speedscope", "-o", args.profile + "-" + os.path.basename(code) + ".json",
                                    "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        got = asyncio.run(_drive(hello["intake"], secret, hello["symbols"], args.rate, args.seconds, proc))
        proc.stdin.write("stats\n")
        proc.stdin.flush()
        return got | orjson.loads(proc.stdout.readline())
    finally:
        proc.stdin.close()
        proc.wait(60)
        if spy is not None:
            spy.wait(60)


_KEYS = ("paced_p50_us", "paced_p99_us", "paced_p999_us", "paced_max_us", "loop_ms_per_s", "loop_cpu_ms_per_s",
         "loop_max_us", "snapshots", "wake_p99_us")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_args(ap, rounds=4)
    ap.add_argument("--rate", type=float, default=1_000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--positions", type=int, default=1_200)
    ap.add_argument("--pending", type=int, default=2_000)
    ap.add_argument("--events", type=int, default=1_000)
    ap.add_argument("--event-bytes", type=int, default=2_000)
    ap.add_argument("--fill-rate", type=int, default=800)
    ap.add_argument("--profile", default="", help="OUT: a py-spy profile of each round, OUT-<checkout>.json")
    args = ap.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    builds = builds_of(args)
    rounds = alternate(builds, args.rounds, lambda code: _round(code, redis_url, args))
    report(builds, rounds, _KEYS, args.json)


if __name__ == "__main__":
    main()
