"""The public clients' own cost, two builds of `nae_client` in one run (A/B, alternating rounds).

    python -m bench.client_report --build A=/tmp/main-src --build B=. [--rounds 3] [--n 3000] [--json]

Each build's `client/` is put first on the path of a fresh interpreter per round, so both clients
talk to the same echo intake: a ROUTER in its own process that decodes each envelope and payload and
answers a `Reply` with the signal's request_id and stamp (what the node answers, without the node).
Per round and build: the blocking `ExecutionClient.send_signal` one at a time (wall p50 / p99, and the
client thread's CPU per call, `time.thread_time_ns`), the asyncio `AsyncExecutionClient` one at a time
(p50 / p99) and with 64 in flight (signals/s and CPU per signal). CPU per call is the figure a loaded
machine moves least; the ratios B/A of each round are printed with the medians.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys

import orjson

from bench.rounds import add_build_args, alternate, builds_of, report

_ROUND = r'''
import asyncio, os, sys, time
import orjson
from nae_client import AsyncExecutionClient, ExecutionClient

endpoint, secret, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

def sig(i):
    return {"request_id": "r" + str(i) + "-" + str(time.perf_counter_ns()), "strategy_id": "s1", "symbol": "AAPL",
            "action": "BUY", "quantity": 1.0}

def pct(xs, q):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * q))] / 1e3, 1)

out = {}
with ExecutionClient(endpoint, "bench", secret, timeout_s=5.0) as c:
    for i in range(300):
        c.send_signal(sig(i))
    sigs = [sig(i) for i in range(n)]
    lat = []
    c0 = time.thread_time_ns()
    for s in sigs:
        t = time.perf_counter_ns()
        c.send_signal(s)
        lat.append(time.perf_counter_ns() - t)
    out["blocking_cpu_us"] = round((time.thread_time_ns() - c0) / n / 1e3, 2)
    out["blocking_p50_us"], out["blocking_p99_us"] = pct(lat, 0.5), pct(lat, 0.99)

async def main():
    async with AsyncExecutionClient(endpoint, "bench", secret, timeout_s=5.0) as c:
        for i in range(300):
            await c.send_signal(sig(i))
        sigs = [sig(i) for i in range(n)]
        lat = []
        for s in sigs:
            t = time.perf_counter_ns()
            await c.send_signal(s)
            lat.append(time.perf_counter_ns() - t)
        out["async_p50_us"], out["async_p99_us"] = pct(lat, 0.5), pct(lat, 0.99)
        sigs = [sig(i) for i in range(4 * n)]
        it = iter(sigs)
        async def worker():
            for s in it:
                await c.send_signal(s)
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        await asyncio.gather(*(worker() for _ in range(64)))
        took = time.perf_counter_ns() - w0
        out["async64_per_s"] = round(len(sigs) / (took / 1e9))
        out["async64_cpu_us"] = round((time.thread_time_ns() - c0) / len(sigs) / 1e3, 2)

asyncio.run(main())
print(orjson.dumps(out).decode())
'''


def _echo(endpoint_q, secret: bytes) -> None:
    """The echo intake (its own process): decode, answer ACCEPTED with the request_id and stamp."""
    import msgspec
    import zmq
    from nae_client.wire import Reply, SignedSignal, Status, encode

    env_decode = msgspec.msgpack.Decoder(SignedSignal).decode
    payload_decode = msgspec.msgpack.Decoder(dict).decode
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    endpoint_q.put("tcp://127.0.0.1:" + str(port))
    while True:
        ident, frame = sock.recv_multipart()
        env = env_decode(frame)
        rid = payload_decode(env.payload)["request_id"]
        sock.send_multipart((ident, encode(Reply(status=Status.ACCEPTED, request_id=rid, ts_ns=env.ts_ns))))


def _round(code_dir: str, endpoint: str, n: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(code_dir), "client"))
    done = subprocess.run([sys.executable, "-c", _ROUND, endpoint, "bench-secret", str(n)], env=env,
                          capture_output=True, text=True, timeout=600, check=True)
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_args(ap, rounds=3)
    ap.add_argument("--n", type=int, default=3_000)
    args = ap.parse_args()
    builds = builds_of(args)
    q: multiprocessing.Queue = multiprocessing.Queue()
    echo = multiprocessing.Process(target=_echo, args=(q, b"bench-secret"), daemon=True)
    echo.start()
    endpoint = q.get(timeout=30)
    try:
        rounds = alternate(builds, args.rounds, lambda code: _round(code, endpoint, args.n))
    finally:
        echo.terminate()
    report(builds, rounds, list(rounds[builds[0][0]][0]), args.json)


if __name__ == "__main__":
    main()
