"""The validator's durable append: CPU per append through redis-py's script call and through
`FencedLog.append` (its own connection, one EVALSHA written, one reply read), in one run.

    python -m bench.append_report [--n 3000] [--json]   (REDIS_URL, else redis://127.0.0.1:6379/0)

The figure that matters on the intake's one thread is its CPU per append (`time.thread_time_ns`:
what the loop spends, whatever else the machine runs); the wall time per append (the round trip)
is printed beside it. Both appends run the same fenced script on a scratch stream, deleted after.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from typing import Callable

import orjson

from node.fenced_log import FencedLog, connect_writer

PAYLOAD = b"x" * 300  # about one packed signal


def _per_call(fn: Callable[[], object], n: int) -> dict:
    for _ in range(min(n, 300)):
        fn()
    c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
    for _ in range(n):
        fn()
    return {"cpu_us": round((time.thread_time_ns() - c0) / n / 1e3, 1),
            "wall_us": round((time.perf_counter_ns() - w0) / n / 1e3, 1)}


def measure(redis_url: str, n: int) -> dict:
    stream = "bench.append." + secrets.token_hex(4)
    client = connect_writer(redis_url)
    log = FencedLog(client, stream, b"b", 10_000, stream + ".fence")
    log.open()
    script = log._script
    try:
        def through_script() -> object:
            return script(keys=[stream, stream + ".fence"], args=[log.generation, "10000", b"b", PAYLOAD])

        out = {"n": n}
        for rnd in range(2):  # interleaved twice: a moment of load hits both
            out["script_call_" + str(rnd)] = _per_call(through_script, n)
            out["fenced_append_" + str(rnd)] = _per_call(lambda: log.append(PAYLOAD), n)
        out["cpu_ratio"] = round(min(out["script_call_0"]["cpu_us"], out["script_call_1"]["cpu_us"])
                                 / max(0.1, min(out["fenced_append_0"]["cpu_us"], out["fenced_append_1"]["cpu_us"])), 2)
        return out
    finally:
        client.delete(stream, stream + ".fence")
        client.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.append_report", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=3_000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    report = measure(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), args.n)
    if not args.json:
        for k, v in report.items():
            if isinstance(v, dict):
                sys.stderr.write("%-16s cpu %7.1f us  wall %8.1f us per append\n" % (k, v["cpu_us"], v["wall_us"]))
    sys.stdout.write(orjson.dumps(report).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
