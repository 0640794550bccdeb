"""Two builds of the node on the user's path, in one run: A/B with the floor measured beside each.

    python -m bench.ab --build A=/tmp/main-src --build B=. [--rounds 2] [--seconds 8] [--rate 1000]

On a machine shared with other work, absolute latencies move 2-10x from one minute to the next, so
a change is judged here, not by two runs at different times: rounds alternate the builds (A, B, B,
A, ...), each round starts `execnode up` from that build's checkout (`bench.user_path`, the same
config and Optimus-like stream), warms it up, measures the floor of that minute (a bare ZeroMQ
round trip + one Redis XADD), runs the paced stream (`--rate`/s for `--seconds`), then reads the
validator's and the engine's stage histograms and garbage-collector pauses from the node's
`/metrics` and each role's CPU per signal over the paced run (`bench.cpu_budget`: `node_cpu_us`,
`cpu_<role>_us`), and `--blocking` sequential sends through the blocking client; with `--senders-n` /
`--max-n`, a run of 16 concurrent senders and a max-rate run (512 in flight). The client side is
this checkout's `nae_client` for every build (its own A/B: `bench.client_report`). One JSON line per
round on stderr, and on stdout one JSON object: per build, the median over its rounds of each
figure and of the ratios to the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import urllib.request

import orjson

from bench.cpu_budget import CpuMeter
from bench.floor import measure_floor
from bench.harness import run_concurrent, run_max_rate, run_paced, warm_up
from bench.user_path import UserPathTarget

_GC_FIELDS = ("gc0_collections", "gc1_collections", "gc2_collections", "gc2_pause_max_seconds",
              "gc1_pause_max_seconds", "gc2_pause_total_seconds", "gc_frozen", "cpu_total_seconds")


def scrape(api: str) -> dict[str, float]:
    """The gauges of the validator and the leading engine we compare (gc pauses, stage sums/counts)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(api.rstrip("/") + "/metrics", timeout=20) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            actor = s.labels.get("actor", "")
            if not (actor == "validator" or actor.startswith("engine")):
                continue
            name = s.name.removeprefix("nae_validator_").removeprefix("nae_engine_")
            if any(name.endswith(f) for f in _GC_FIELDS) or (name.startswith("nae_stage") and name.endswith(("_sum", "_count"))):
                out[actor.split(":")[0] + "." + name] = s.value
    return out


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: (v - before.get(k, 0.0) if not k.endswith(("max_seconds", "gc_frozen")) else v) for k, v in after.items()}


async def one_round(code_dir: str, seconds: int, rate: float, blocking: int, senders_n: int = 0,
                    max_n: int = 0) -> dict:
    paced_n = int(rate * seconds)
    target = UserPathTarget(n_max=paced_n + senders_n + max_n + 3_000, code_dir=code_dir)
    await target.start()
    try:
        await warm_up(target, 1_000, 0)
        floor = await measure_floor(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), 2_000)
        api = target.endpoints.get("api", "")
        loop = asyncio.get_running_loop()
        before = await loop.run_in_executor(None, scrape, api) if api else {}
        meter = CpuMeter(await loop.run_in_executor(None, target.processes)).start()
        paced = await run_paced(target, rate, paced_n, 1_000, fill_timeout_s=10.0)
        cpu = meter.stop(paced_n)
        after = await loop.run_in_executor(None, scrape, api) if api else {}
        block = await loop.run_in_executor(None, target.blocking_round_trips, blocking)
        extra: dict = {}
        if senders_n:  # 16 concurrent senders, each awaiting its reply
            c = (await run_concurrent(target, 16, senders_n, 1_000 + paced_n)).figures()
            extra |= {"senders16_p50_us": c["reply_p50_us"], "senders16_p99_us": c["reply_p99_us"],
                      "senders16_per_s": c["rate_per_s"], "senders16_lost": c["lost"]}
        if max_n:  # the sustained rate, 512 in flight
            m = (await run_max_rate(target, max_n, 512, 1_000 + paced_n + senders_n)).figures()
            extra |= {"max_per_s": m["rate_per_s"], "max_lost": m["lost"], "max_duplicates": m["duplicates"]}
    finally:
        await target.stop()
    f = paced.figures()
    floor_us = floor["sum_p50_us"]
    return {
        "floor_p50_us": floor_us, "zmq_p50_us": floor["zmq_rtt_p50_us"], "xadd_p50_us": floor["redis_rtt_p50_us"],
        "paced_p50_us": f["reply_p50_us"], "paced_p99_us": f["reply_p99_us"], "paced_p999_us": f["reply_p999_us"],
        "fill_p50_us": f["fill_p50_us"], "fill_p99_us": f["fill_p99_us"], "late_sends": f.get("late_sends"),
        "lost": f["lost"], "duplicates": f["duplicates"],
        "paced_p50_x_floor": round(f["reply_p50_us"] / floor_us, 2) if f["reply_p50_us"] else None,
        "blocking_p50_us": block["reply_p50_us"], "blocking_p99_us": block["reply_p99_us"],
        "blocking_p50_x_floor": round(block["reply_p50_us"] / floor_us, 2),
        **extra,
        # CPU per signal of the paced run (bench.cpu_budget): far steadier between rounds than latency
        "node_cpu_us": cpu["node_cpu_us_per_signal"], "cores_busy": cpu["cores_busy"],
        **{"cpu_" + r["role"].replace(" ", "_") + "_us": r["cpu_us_per_signal"] for r in cpu["roles"]},
        # times on a CPU per signal (wake-ups + preemptions), per role: what "fewer wake-ups" is judged by
        "node_slices": cpu["node_slices_per_signal"],
        **{"slices_" + r["role"].replace(" ", "_"): r["slices_per_signal"] for r in cpu["roles"]},
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "node": _delta(after, before),
    }


def _median(rounds: list[dict]) -> dict:
    keys = [k for k, v in rounds[0].items() if isinstance(v, (int, float)) and v is not None]
    return {k: round(statistics.median(r[k] for r in rounds if r.get(k) is not None), 2) for k in keys}


async def main_async(builds: dict[str, str], rounds: int, seconds: int, rate: float, blocking: int,
                     senders_n: int = 0, max_n: int = 0) -> dict:
    names = list(builds)
    results: dict[str, list[dict]] = {n: [] for n in names}
    for k in range(rounds):
        order = names if k % 2 == 0 else names[::-1]
        for name in order:
            t0 = time.monotonic()
            try:
                r = await one_round(builds[name], seconds, rate, blocking, senders_n, max_n)
            except Exception as exc:  # noqa: BLE001 - `execnode up` did not come up (Ray's 30 s start on a
                # loaded box), or a send timed out: that round is reported and skipped
                sys.stderr.write(orjson.dumps({"round": k, "build": name, "error": str(exc)[-300:]}).decode() + "\n")
                continue
            r["round"], r["build"], r["took_s"] = k, name, round(time.monotonic() - t0, 1)
            sys.stderr.write(orjson.dumps(r).decode() + "\n")
            results[name].append(r)
    return {"rate_per_s": rate, "seconds": seconds, "rounds": rounds,  # only the rounds that completed
            "median": {n: _median(rs) for n, rs in results.items() if rs}, "runs": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    p.add_argument("--build", action="append", required=True, metavar="NAME=DIR", help="a checkout to run (twice or more)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--rate", type=float, default=1_000.0)
    p.add_argument("--blocking", type=int, default=300)
    p.add_argument("--senders-n", type=int, default=0, help="signals sent by 16 concurrent senders (0: skip)")
    p.add_argument("--max-n", type=int, default=0, help="signals of the max-rate run, 512 in flight (0: skip)")
    args = p.parse_args(argv)
    builds = dict(b.split("=", 1) for b in args.build)
    builds = {n: os.path.abspath(d) for n, d in builds.items()}
    report = asyncio.run(main_async(builds, args.rounds, args.seconds, args.rate, args.blocking, args.senders_n,
                                    args.max_n))
    sys.stdout.write(orjson.dumps(report).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
