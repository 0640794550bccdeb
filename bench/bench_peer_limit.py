"""What the per-peer limit (node.peer_limit) adds to the intake's per-frame path, as a ratio.

    .venv/bin/pytest bench/bench_peer_limit.py -q -s

The validator's loop in miniature, without sockets: 2,000 signed signals from one peer through a
fresh `SignalGate`, bare (as before the limit) and with the limiter's two calls around each frame
(`admits` before, `judged` after), in alternating rounds so the machine's load weighs on both alike.
`extra_info`: median ns per frame of each and `ratio` (with / without).
"""

from __future__ import annotations

import statistics
import time

import msgspec

from node.config import IntakeConfig, SigningConfig
from node.intake import SignalGate
from node.messages import encode
from node.peer_limit import PeerLimiter
from node.signing import make_envelope

FRAMES = 2_000
ROUNDS = 15
KEYS = {"bench": "bench-secret"}
INTAKE = IntakeConfig(key_rate_per_sec=1e9, key_burst=1e9)


def _frames(tag: str, now_ns: int) -> list[bytes]:
    out = []
    for i in range(FRAMES):
        payload = msgspec.msgpack.encode({"request_id": tag + str(i), "strategy_id": "bench", "timestamp": now_ns / 1e9,
                                          "symbol": "AAPL", "action": "BUY", "quantity": 1.0})
        out.append(encode(make_envelope("bench", b"bench-secret", payload, now_ns)))
    return out


def _bare(gate: SignalGate, frames: list[bytes], now: int) -> None:
    admit = gate.admit
    for frame in frames:
        admit(frame, now)


def _limited(gate: SignalGate, frames: list[bytes], now: int, limit: PeerLimiter) -> None:
    admit, admits, judged, peer = gate.admit, limit.admits, limit.judged, b"\x00peer"
    for frame in frames:
        if not admits(peer, now):
            continue
        judged(peer, admit(frame, now).reply, now)


def _round(limited: bool, n: int) -> int:
    now = time.time_ns()
    frames = _frames(("l" if limited else "b") + str(n) + "-", now)
    gate = SignalGate(SigningConfig(keys=KEYS), INTAKE)
    t0 = time.perf_counter_ns()
    if limited:
        _limited(gate, frames, now, PeerLimiter(INTAKE))
    else:
        _bare(gate, frames, now)
    return (time.perf_counter_ns() - t0) // FRAMES


def test_peer_limit_per_frame_cost(benchmark) -> None:
    def run() -> dict[str, float]:
        bare, limited = [], []
        for n in range(ROUNDS):
            bare.append(_round(False, n))
            limited.append(_round(True, n))
        b, w = statistics.median(bare), statistics.median(limited)
        return {"bare_ns_per_frame": b, "limited_ns_per_frame": w, "ratio": round(w / b, 3)}

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print(result)
    assert result["bare_ns_per_frame"] > 0
