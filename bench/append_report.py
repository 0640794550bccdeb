"""The durable appends on the path: CPU per append through redis-py's command layer and through
the node's own connection, in one run. The validator's signal batch: redis-py's script call against
`FencedLog.append` (one EVALSHA written, one reply read). The engine's report batch with its
checkpoint and open-order index: a redis-py pipeline (XADD, HSET, SET) against
`StreamLog.append_packed` (the three commands written at once, three replies read).

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
from node.streams import StreamLog, connect_redis

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
        out["cpu_ratio"] = _ratio(out, "script_call", "fenced_append")
        events = connect_redis(redis_url)
        elog = StreamLog(events, stream + ".events", b"e", 10_000)
        index = {"o%d" % i: PAYLOAD[:80] for i in range(4)}

        def through_pipeline() -> object:
            pipe = events.pipeline(transaction=False)
            pipe.xadd(stream + ".events", {b"e": PAYLOAD}, maxlen=10_000, approximate=True)
            pipe.hset(stream + ".open", mapping=index)
            pipe.set(stream + ".cp", b"1-0")
            return pipe.execute()[0]

        for rnd in range(2):
            out["pipeline_" + str(rnd)] = _per_call(through_pipeline, n)
            out["stream_append_" + str(rnd)] = _per_call(
                lambda: elog.append_packed(PAYLOAD, (stream + ".cp", b"1-0"), (stream + ".open", index, [])), n)
        out["engine_cpu_ratio"] = _ratio(out, "pipeline", "stream_append")
        events.delete(stream + ".events", stream + ".open", stream + ".cp")
        events.close()
        return out
    finally:
        client.delete(stream, stream + ".fence")
        client.close()


def _ratio(out: dict, before: str, after: str) -> float:
    best = {k: min(out[k + "_0"]["cpu_us"], out[k + "_1"]["cpu_us"]) for k in (before, after)}
    return round(best[before] / max(0.1, best[after]), 2)


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
