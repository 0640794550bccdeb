"""The floor: what the transports cost with no work done, the lower bound for any signal path.

- ZeroMQ: a bare DEALER -> ROUTER -> DEALER echo round trip over tcp on 127.0.0.1, the echo in a
  child process (`python -m bench.floor echo`), a 128-byte frame (about a signed signal's size).
  Measured with a blocking DEALER (`zmq_rtt_*`, the true floor) and with a `zmq.asyncio` DEALER
  (`zmq_async_rtt_*`, what an asyncio client such as `node.client` pays on top of it).
- Redis: one XADD round trip with redis-py (blocking client), the same 128-byte field, on a
  stream capped at 10,000 entries that is deleted afterwards.

Each measurement runs a warm-up first and is bounded in count.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time

import numpy as np
import zmq
import zmq.asyncio

from bench.harness import LatencyStats

PAYLOAD = b"x" * 128
STOP_FRAME = b"__stop__"
_perf_ns = time.perf_counter_ns


# ---------------------------------------------------------------- the echo (child process)


def serve_echo(max_life_s: float = 900.0) -> None:
    """Bind a ROUTER on a free 127.0.0.1 port, print the port, echo every message back.

    Stops on the stop frame, or after `max_life_s` (bounded even if the parent died)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    sys.stdout.write(str(port) + "\n")
    sys.stdout.flush()
    deadline = time.monotonic() + max_life_s
    recv, send = sock.recv_multipart, sock.send_multipart
    while time.monotonic() < deadline:
        if not sock.poll(1_000):
            continue
        frames = recv(copy=True)
        if frames[-1] == STOP_FRAME:
            break
        send(frames)
    sock.close()
    ctx.term()


class EchoServer:
    """The echo child process; `endpoint` is where to connect a DEALER."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self.endpoint = ""

    def start(self) -> str:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.floor", "echo"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )
        line = self._proc.stdout.readline().strip()  # the child prints its port first
        if not line.isdigit():
            self.stop()
            raise RuntimeError("echo server did not start")
        self.endpoint = "tcp://127.0.0.1:" + line
        return self.endpoint

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None and self.endpoint:
            ctx = zmq.Context.instance()
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 500)
            s.connect(self.endpoint)
            s.send(STOP_FRAME)
            s.close()
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5.0)
        if proc.stdout is not None:
            proc.stdout.close()
        self._proc = None

    def __enter__(self) -> EchoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- ZeroMQ round trips


class ZmqRoundTrip:
    """A blocking DEALER connected to an echo: `rtt()` does one round trip (for pytest-benchmark too)."""

    def __init__(self, endpoint: str, timeout_ms: int = 5_000) -> None:
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
        self._sock.connect(endpoint)

    def rtt(self, payload: bytes = PAYLOAD) -> bytes:
        self._sock.send(payload, copy=True)
        return self._sock.recv(copy=True)

    def close(self) -> None:
        self._sock.close()


def _time_calls(call, n: int, warmup: int) -> np.ndarray:
    """`n` timed calls of `call` (after `warmup` untimed ones), each in ns."""
    for _ in range(warmup):
        call()
    out = np.empty(n, dtype=np.int64)
    for k in range(n):
        t0 = _perf_ns()
        call()
        out[k] = _perf_ns() - t0
    return out


def zmq_rtt_ns(endpoint: str, n: int, warmup: int = 500) -> np.ndarray:
    """`n` blocking round trips (after `warmup`), each in ns."""
    rt = ZmqRoundTrip(endpoint)
    try:
        return _time_calls(rt.rtt, n, warmup)
    finally:
        rt.close()


async def zmq_async_rtt_ns(endpoint: str, n: int, warmup: int = 500) -> np.ndarray:
    """`n` round trips from a `zmq.asyncio` DEALER on the running loop (after `warmup`), in ns."""
    ctx = zmq.asyncio.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        for _ in range(warmup):
            await sock.send(PAYLOAD)
            await asyncio.wait_for(sock.recv(), 5.0)
        out = np.empty(n, dtype=np.int64)
        for k in range(n):
            t0 = _perf_ns()
            await sock.send(PAYLOAD)
            await asyncio.wait_for(sock.recv(), 5.0)
            out[k] = _perf_ns() - t0
        return out
    finally:
        sock.close()


# ---------------------------------------------------------------- Redis XADD round trips


class RedisXadd:
    """One XADD round trip per `rtt()` on its own capped stream; `close()` deletes the stream."""

    def __init__(self, redis_url: str) -> None:
        import redis

        self._r = redis.Redis.from_url(redis_url)
        self._stream = "bench.floor." + secrets.token_hex(4)
        self._fields = {"p": PAYLOAD}

    def rtt(self) -> bytes:
        return self._r.xadd(self._stream, self._fields, maxlen=10_000, approximate=True)

    def close(self) -> None:
        try:
            self._r.delete(self._stream)
        finally:
            self._r.close()


def redis_xadd_rtt_ns(redis_url: str, n: int, warmup: int = 500) -> np.ndarray:
    """`n` XADD round trips (after `warmup`), each in ns."""
    x = RedisXadd(redis_url)
    try:
        return _time_calls(x.rtt, n, warmup)
    finally:
        x.close()


# ---------------------------------------------------------------- the floor figures


async def measure_floor(redis_url: str, n: int = 5_000) -> dict:
    """The floor figures: p50/p99/p99.9 (us) of each round trip, and n."""
    loop = asyncio.get_running_loop()
    with EchoServer() as echo:
        zmq_sync = await loop.run_in_executor(None, zmq_rtt_ns, echo.endpoint, n)
        zmq_async = await zmq_async_rtt_ns(echo.endpoint, n)
    redis_ns = await loop.run_in_executor(None, redis_xadd_rtt_ns, redis_url, n)
    out: dict = {"n": n}
    for name, sample in (("zmq_rtt", zmq_sync), ("zmq_async_rtt", zmq_async), ("redis_rtt", redis_ns)):
        s = LatencyStats.from_ns(sample)
        out[name + "_p50_us"] = s.p50_us
        out[name + "_p99_us"] = s.p99_us
        out[name + "_p999_us"] = s.p999_us
    out["sum_p50_us"] = round(out["zmq_rtt_p50_us"] + out["redis_rtt_p50_us"], 1)
    return out


if __name__ == "__main__":
    if sys.argv[1:] == ["echo"]:
        serve_echo()
    else:
        sys.stderr.write("usage: python -m bench.floor echo\n")
        sys.exit(2)
