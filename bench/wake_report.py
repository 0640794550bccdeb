"""The validator's CPU per signal on its intake path (receive, gate, append, reply), two builds in one run.

    python -m bench.wake_report --build A=/tmp/main-src --build B=. [--rounds 6] [--n 5000] [--json]
                                (REDIS_URL, else redis://127.0.0.1:6379/0)

Each round runs a fresh interpreter per build with that checkout first on the path; it opens the build's
`actors.validator.Validator` by hand (`_open`, no loop thread, no Ray) against the machine's Redis under
a node id and streams of its own (deleted after), and drives its wake-up (`_on_wake`) itself with
signed frames from a DEALER in the same thread, two ways: `one` sends one signal and wakes the
validator until its reply is back, `--n-one` times (the paced case: a round of one signal, one append
each); `burst` queues `--n` signals at once and wakes it until every reply is back (rounds of
`batch_max`). The `one` figure is mostly the kernel's: each round trip to Redis and each socket
wake-up is charged to this thread, so it swings with the machine's load. The figure is the CPU of this thread inside `_on_wake` (`time.thread_time_ns`: waiting
for Redis or for frames to cross the socket is not counted), per signal; every signal must be ACCEPTED.
This is the figure a loaded machine moves least; rounds alternate the builds; read B/A.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import orjson

from bench.rounds import add_build_args, alternate, builds_of, report

_ROUND = r'''
import secrets, sys, time
import orjson, redis, zmq
from actors.validator import Validator
from nae_client.client import prepare
from nae_client.wire import Reply, Status, encode, response_decoder
from node.config import IntakeConfig, NodeConfig, SigningConfig, StorageConfig
from node.risk.config import throughput_limits
from node.signing import make_envelope

url, n, n_one = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
node_id, secret = "bench-wake-" + secrets.token_hex(4), secrets.token_hex(16)
cfg = NodeConfig(node_id=node_id, signing=SigningConfig(keys={"bench": secret}), intake=IntakeConfig(port=0),
                 risk=throughput_limits(), equity_usd=1e12,
                 storage=StorageConfig(redis_url=url, signals_stream=node_id + ".signals",
                                       events_stream=node_id + ".events", monitoring_stream=node_id + ".monitoring",
                                       intake_stream=node_id + ".intake", controls_stream=node_id + ".controls",
                                       allow_volatile_redis=True))
symbols = [s.symbol for s in cfg.broker.paper.symbols]
v = Validator(cfg, url, ["tcp://127.0.0.1:1"], "tcp://127.0.0.1:2")
ctx = zmq.Context()
intake = v._open(ctx)["intake"]
dealer = ctx.socket(zmq.DEALER)
dealer.setsockopt(zmq.LINGER, 0)
dealer.setsockopt(zmq.SNDHWM, 0)
dealer.setsockopt(zmq.RCVHWM, 0)
dealer.connect(intake)
run = secrets.token_hex(3)
secret_b = secret.encode()

def frame(i):
    _, payload = prepare({"request_id": run + "-" + str(i), "strategy_id": "s" + str(i % 50),
                          "symbol": symbols[i % len(symbols)], "action": "BUY" if i % 2 else "SELL", "quantity": 1.0,
                          "timestamp": time.time()})
    return encode(make_envelope("bench", secret_b, payload, time.time_ns()))

wake, router = v._on_wake, v._router
events = {router: zmq.POLLIN}

def drive(ids):
    """Sign and send signals `ids` (signed now: a frame made long before is stale), wake the validator
    until each has its reply; the CPU inside _on_wake."""
    for i in ids:
        dealer.send(frame(i))
    want, got, cpu = len(ids), 0, 0
    deadline = time.monotonic() + 120
    while got < want:
        if time.monotonic() > deadline:
            raise SystemExit("replies: " + str(got) + " of " + str(want))
        if router.poll(100):
            c = time.thread_time_ns()
            wake(events)
            cpu += time.thread_time_ns() - c
        while dealer.poll(0):
            reply = response_decoder.decode(dealer.recv())
            if type(reply) is not Reply or reply.status is not Status.ACCEPTED:
                raise SystemExit("not accepted: " + repr(reply))
            got += 1
    return cpu

try:
    drive(range(500))  # warm-up
    cpu_one = sum(drive((500 + i,)) for i in range(n_one))
    cpu_burst = drive(range(500 + n_one, 500 + n_one + n))
    print(orjson.dumps({"one_cpu_us": round(cpu_one / n_one / 1e3, 2), "burst_cpu_us": round(cpu_burst / n / 1e3, 2)}).decode())
finally:
    dealer.close(0)
    v._close()
    ctx.term()
    r = redis.Redis.from_url(url)
    for key in r.scan_iter(node_id + "*"):
        r.delete(key)
'''


def _round(code_dir: str, redis_url: str, n: int, n_one: int) -> dict:
    code = os.path.abspath(code_dir)
    env = dict(os.environ, PYTHONPATH=code + os.pathsep + os.path.join(code, "client"))
    done = subprocess.run([sys.executable, "-c", _ROUND, redis_url, str(n), str(n_one)], env=env, cwd=code, capture_output=True,
                          text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(code + ": " + done.stderr[-2000:] + done.stdout[-500:])
    return orjson.loads(done.stdout.strip().splitlines()[-1])


_KEYS = ("one_cpu_us", "burst_cpu_us")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_args(ap, rounds=6)
    ap.add_argument("--n", type=int, default=5_000)
    ap.add_argument("--n-one", type=int, default=500)
    args = ap.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    builds = builds_of(args)
    rounds = alternate(builds, args.rounds, lambda code: _round(code, redis_url, args.n, args.n_one))
    report(builds, rounds, _KEYS, args.json)


if __name__ == "__main__":
    main()
