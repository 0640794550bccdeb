"""The seed-style baseline: a faithful stand-in for the NAE middleware Optimus used before the node.

Three processes, as the seed ran them:

- the **API**: FastAPI `POST /v1/signals` served by uvicorn (its defaults: uvloop when installed,
  one worker, access log off) on 127.0.0.1. A dependency checks `X-Signature`, the hex
  HMAC-SHA256 of the raw body, in constant time; the body is validated by a pydantic model of the
  signal (the NAE field names, `extra="forbid"`, quantity xor notional); the validated signal is
  LPUSHed as JSON to a Redis list; the reply is `{"status": "ACCEPTED", "request_id", "signal_id"}`
  (401 on a bad signature, 422 on a bad body).
- the **consumer**: BRPOPs the list, decodes the JSON and "executes" it: it marks it done by
  PUBLISHing the `request_id` on a Redis pub/sub channel.
- the **client** (`BaselineTarget`, in the bench process): an `httpx.AsyncClient` (HTTP/1.1,
  keep-alive) POSTing prepared, signed bodies. Reply latency = until the HTTP response is read and
  parsed; fill latency = signal sent -> the done message received on the pub/sub channel (a push,
  like the node's events feed; no polling delay is added to the baseline).

Run a piece by hand: ``python -m bench.baseline api --port P --redis-url URL --key K`` (secret in
env BASELINE_SECRET) or ``python -m bench.baseline consumer --redis-url URL --key K``.
"""

import argparse
import asyncio
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from typing import Literal

import numpy as np
import orjson
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

SYMBOLS = ("AAPL", "MSFT", "NVDA", "SPY", "TSLA", "QQQ")
STOP_ITEM = b"__stop__"
_perf_ns = time.perf_counter_ns


# ---------------------------------------------------------------- the API process (FastAPI)

# The seed's models, at module level so FastAPI resolves the endpoint annotations.


class RiskMetaModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_slippage: float | None = Field(None, ge=0.0, le=1.0)
    max_exposure: float | None = Field(None, ge=0.0, le=1e12)
    max_position_pct: float | None = Field(None, ge=0.0, le=1.0)


class SignalModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=128)
    strategy_id: str = Field(min_length=1, max_length=128)
    timestamp: float | dt.datetime
    symbol: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._/:-]+$")
    action: Literal["BUY", "SELL", "BUY_TO_OPEN", "SELL_TO_OPEN", "BUY_TO_CLOSE", "SELL_TO_CLOSE"]
    quantity: float | None = Field(None, gt=0.0, le=1e9)
    notional: float | None = Field(None, gt=0.0, le=1e9)
    order_type: Literal["MARKET", "LIMIT", "STOP", "STOP_LIMIT"] = "MARKET"
    limit_price: float | None = Field(None, gt=0.0, le=1e7)
    stop_price: float | None = Field(None, gt=0.0, le=1e7)
    risk_meta: RiskMetaModel | None = None
    correlation_group: str | None = Field(None, max_length=64)
    model_id: str | None = Field(None, max_length=128)
    confidence: float | None = Field(None, ge=0.0, le=1.0)
    expected_pnl: float | None = Field(None, ge=-1e12, le=1e12)

    @model_validator(mode="after")
    def _one_size(self) -> "SignalModel":
        if (self.quantity is None) == (self.notional is None):
            raise ValueError("exactly one of quantity and notional")
        return self


class ReplyModel(BaseModel):
    status: str
    request_id: str
    signal_id: str


def build_app(secret: bytes, redis_url: str, list_key: str) -> FastAPI:
    """The seed-style FastAPI app: HMAC header check, pydantic validation, LPUSH to a list."""
    import redis.asyncio as aioredis

    app = FastAPI(title="seed-style NAE middleware")
    store = aioredis.from_url(redis_url)

    async def verify_signature(request: Request, x_signature: str | None = Header(None)) -> None:
        body = await request.body()
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not x_signature or not hmac.compare_digest(expected, x_signature):
            raise HTTPException(status_code=401, detail="bad signature")

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    @app.post("/v1/signals", response_model=ReplyModel, dependencies=[Depends(verify_signature)])
    async def submit_signal(signal: SignalModel) -> ReplyModel:
        signal_id = uuid.uuid4().hex
        record = signal.model_dump(mode="json")
        record["signal_id"] = signal_id
        await store.lpush(list_key, json.dumps(record))
        return ReplyModel(status="ACCEPTED", request_id=signal.request_id, signal_id=signal_id)

    return app


def serve_api(port: int, redis_url: str, list_key: str, secret: bytes) -> None:
    import uvicorn

    app = build_app(secret, redis_url, list_key)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ---------------------------------------------------------------- the consumer process


def run_consumer(redis_url: str, list_key: str, done_channel: str, max_idle_s: float = 600.0) -> int:
    """BRPOP signals, 'execute' each (decode, mark done by PUBLISHing its request_id).

    Stops on the stop item or after `max_idle_s` without work; returns how many it executed."""
    import redis

    r = redis.Redis.from_url(redis_url)
    done = 0
    idle_since = time.monotonic()
    while True:
        item = r.brpop([list_key], timeout=1)
        if item is None:
            if time.monotonic() - idle_since > max_idle_s:
                return done
            continue
        raw = item[1]
        if raw == STOP_ITEM:
            return done
        signal = json.loads(raw)
        r.publish(done_channel, signal["request_id"])
        done += 1
        idle_since = time.monotonic()


# ---------------------------------------------------------------- the client side: a harness target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BaselineTarget:
    """The seed-style baseline as a harness `Target` (see bench.harness.Target)."""

    name = "baseline"

    def __init__(self, redis_url: str, n_max: int, max_connections: int = 32, timeout_s: float = 10.0) -> None:
        self._redis_url = redis_url
        self._n_max = n_max
        self._max_connections = max_connections
        self._timeout_s = timeout_s
        run = secrets.token_hex(4)
        self._list_key = "bench.baseline." + run + ".signals"
        self._done_channel = "bench.baseline." + run + ".done"
        self._secret = secrets.token_hex(16).encode()
        self._run = run
        self._procs: list[subprocess.Popen] = []
        self._client = None  # httpx.AsyncClient
        self._redis = None  # redis.asyncio.Redis
        self._pubsub = None
        self._listener: asyncio.Task | None = None
        self._bodies: list[bytes] = []
        self._headers: list[dict[str, str]] = []
        self._index: dict[bytes, int] = {}
        self._sent_ns = np.zeros(n_max, dtype=np.int64)
        self._fill_ns = np.zeros(n_max, dtype=np.int64)
        self._accepted_mask = np.zeros(n_max, dtype=np.bool_)
        self._sent = self._accepted = self._rejected = self._fills = self._dup_fills = 0

    def _spawn(self, *args: str) -> subprocess.Popen:
        env = dict(os.environ, BASELINE_SECRET=self._secret.decode())
        cmd = [sys.executable, "-m", "bench.baseline", *args, "--redis-url", self._redis_url, "--key", self._list_key]
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        self._procs.append(proc)
        return proc

    async def start(self) -> None:
        import httpx
        import redis.asyncio as aioredis

        self._prepare()
        port = free_port()
        self._spawn("api", "--port", str(port))
        self._spawn("consumer", "--done-channel", self._done_channel)
        self._redis = aioredis.from_url(self._redis_url)
        self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(self._done_channel)
        limits = httpx.Limits(max_connections=self._max_connections, max_keepalive_connections=self._max_connections)
        timeout = httpx.Timeout(self._timeout_s, pool=3 * self._timeout_s)
        self._client = httpx.AsyncClient(base_url="http://127.0.0.1:" + str(port), limits=limits, timeout=timeout)
        deadline = time.monotonic() + 30.0
        while True:
            if any(p.poll() is not None for p in self._procs):
                raise RuntimeError("baseline process exited during start")
            try:
                if (await self._client.get("/health")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("baseline API did not come up in 30 s")
            await asyncio.sleep(0.1)
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    def _prepare(self) -> None:
        """Every body and signature header, made before anything is timed."""
        now = time.time()
        secret = self._secret
        for i in range(self._n_max):
            rid = "b" + self._run + "-" + str(i)
            body = orjson.dumps({
                "request_id": rid, "strategy_id": "bench", "timestamp": now,
                "symbol": SYMBOLS[i % len(SYMBOLS)], "action": "BUY" if i % 2 else "SELL",
                "quantity": float(1 + i % 100),
            })
            self._bodies.append(body)
            self._headers.append({
                "content-type": "application/json",
                "x-signature": hmac.new(secret, body, hashlib.sha256).hexdigest(),
            })
            self._index[rid.encode()] = i

    async def _listen(self) -> None:
        index, fill_ns = self._index, self._fill_ns
        async for msg in self._pubsub.listen():
            if msg.get("type") != "message":
                continue
            i = index.get(msg["data"])
            if i is None:
                continue
            if fill_ns[i]:
                self._dup_fills += 1
                continue
            fill_ns[i] = _perf_ns()
            self._fills += 1

    async def send(self, i: int) -> None:
        self._sent += 1
        self._sent_ns[i] = _perf_ns()
        resp = await self._client.post("/v1/signals", content=self._bodies[i], headers=self._headers[i])
        if resp.status_code == 200 and resp.json()["status"] == "ACCEPTED":
            self._accepted += 1
            self._accepted_mask[i] = True
            return
        if 400 <= resp.status_code < 500:
            self._rejected += 1
            raise RuntimeError("rejected: HTTP " + str(resp.status_code))
        raise RuntimeError("error: HTTP " + str(resp.status_code))

    async def wait_fills(self, timeout_s: float, indices: range | None = None) -> np.ndarray:
        """Fill latencies (ns) of the accepted signals in `indices` (default: all sent so far)."""
        sent = self._sent_ns
        idx = np.asarray(indices if indices is not None else np.nonzero(sent)[0])
        idx = idx[self._accepted_mask[idx]]  # only accepted signals are executed
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and np.count_nonzero(self._fill_ns[idx]) < len(idx):
            await asyncio.sleep(0.02)
        filled = idx[self._fill_ns[idx] > 0]
        return self._fill_ns[filled] - sent[filled]

    def counts(self) -> dict:
        return {
            "sent": self._sent,
            "accepted": self._accepted,
            "rejected": self._rejected,
            "lost": self._accepted - self._fills,
            "duplicates": self._dup_fills,
        }

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._listener is not None:
            self._listener.cancel()
        if self._redis is not None:
            try:
                await self._redis.lpush(self._list_key, STOP_ITEM)
                if self._pubsub is not None:
                    await self._pubsub.aclose()
            finally:
                await self._redis.delete(self._list_key)
                await self._redis.aclose()
        for proc in self._procs:
            if proc.poll() is None and "api" in proc.args:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5.0)
        self._procs.clear()


async def make_baseline_target(redis_url: str, quick: bool) -> BaselineTarget:
    return BaselineTarget(redis_url, n_max=6_000 if quick else 40_000)


# ---------------------------------------------------------------- entry point for the child processes


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline")
    p.add_argument("role", choices=("api", "consumer"))
    p.add_argument("--redis-url", required=True)
    p.add_argument("--key", required=True, help="the Redis list the API pushes to")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--done-channel", default="")
    args = p.parse_args(argv)
    if args.role == "api":
        serve_api(args.port, args.redis_url, args.key, os.environ["BASELINE_SECRET"].encode())
        return 0
    run_consumer(args.redis_url, args.key, args.done_channel)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
