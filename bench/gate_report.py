"""The validator's gate (`SignalGate.admit`: envelope decode, HMAC, rate, payload decode, id and order
rules, routing, dedupe digest, pre-trade risk, the remembered verdict), two builds in one run.

    python -m bench.gate_report --build A=/tmp/main-src --build B=. [--rounds 3] [--n 20000] [--json]

Each round runs a fresh interpreter per build with that checkout first on the path; the gate is built
as the validator builds it (`throughput_limits()` risk, the paper symbols, the router), and judges
`--n` pre-made signed frames of an Optimus-like mix (50 strategies over the paper symbols, both
sides, a model id) after a warm-up. The figure is the CPU per admitted signal (`time.thread_time_ns`
of the judging thread), the one a loaded machine moves least; rounds alternate the builds.
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
import orjson
from node.amends import amendable_by
from node.config import IntakeConfig, NodeConfig, SigningConfig, StorageConfig
from node.intake import SignalGate
from node.messages import encode
from node.risk import PreTradeRisk
from node.risk.config import throughput_limits
from node.router import Router
from node.signing import make_envelope

n = int(sys.argv[1])
cfg = NodeConfig(node_id="gate-bench", signing=SigningConfig(keys={"optimus": secrets.token_hex(16)}),
                 intake=IntakeConfig(port=0), risk=throughput_limits(), equity_usd=1e10,
                 storage=StorageConfig(redis_url="redis://unused"))
prices = {s.symbol: s.price for s in cfg.broker.paper.symbols}
risk = PreTradeRisk(cfg.risk, list(prices), prices, cfg.equity_usd)
risk.warm()
router = Router.from_config(cfg)
gate = SignalGate(cfg.signing, cfg.intake, risk, route=router.group_of if cfg.reject_unrouted else None,
                  amendable=amendable_by(cfg, router.group_of))
key, secret = next(iter(cfg.signing.keys.items()))
symbols = list(prices)
now = time.time_ns()
frames = []
for i in range(n + 2_000):
    payload = encode({"request_id": "r" + str(i) + "-" + str(now), "strategy_id": "s" + str(i % 50),
                      "symbol": symbols[i % len(symbols)], "action": "BUY" if i % 2 else "SELL", "quantity": 1.0,
                      "timestamp": now / 1e9, "model_id": "m1"})
    frames.append(encode(make_envelope(key, secret.encode(), payload, now)))
admit = gate.admit
for f in frames[:2_000]:
    admit(f, now)
accepted = 0
c0 = time.thread_time_ns()
for f in frames[2_000:]:
    accepted += admit(f, now).signal is not None
cpu = time.thread_time_ns() - c0
print(orjson.dumps({"admit_cpu_us": round(cpu / n / 1e3, 3), "accepted": accepted}).decode())
'''


def _round(code_dir: str, n: int) -> dict:
    code = os.path.abspath(code_dir)
    env = dict(os.environ, PYTHONPATH=code + os.pathsep + os.path.join(code, "client"))
    done = subprocess.run([sys.executable, "-c", _ROUND, str(n)], env=env, cwd=code, capture_output=True, text=True,
                          timeout=600, check=True)
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_args(ap, rounds=3)
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args()
    builds = builds_of(args)
    report(builds, alternate(builds, args.rounds, lambda code: _round(code, args.n)), ("admit_cpu_us",), args.json)


if __name__ == "__main__":
    main()
