"""Issue 9 item 3: a frozen Redis (SIGSTOP, then SIGCONT) under a steady stream set off a chain of
failovers, most of them unrecorded (epoch 1 -> 20, one failover in the log). Liveness must not hang on
the store, and every epoch grant is recorded.

The node runs a leader and a hot standby against a Redis this test starts and freezes.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import msgspec
import orjson
import pytest

from node.client import ExecutionClient
from node.config import EngineConfig
from node.runtime import NodeRuntime, quiet
from tests.chaos.test_redis_outage import free_port, start_redis

pytestmark = pytest.mark.chaos

FREEZE_S = 5.0


def test_a_frozen_store_sets_off_no_failover_chain_and_every_grant_is_recorded(ray_session, make_config, tmp_path):
    import redis

    port = free_port()
    server = start_redis(port, tmp_path)
    url = "redis://127.0.0.1:%d/0" % port
    cfg = make_config(engines=[EngineConfig(name="a"), EngineConfig(name="b")])
    cfg = msgspec.structs.replace(cfg, storage=msgspec.structs.replace(cfg.storage, redis_url=url))
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    key_id, secret = next(iter(cfg.signing.keys.items()))
    stop = threading.Event()
    replies: list[str] = []

    def stream() -> None:  # a steady stream, through the freeze (a reply may be a refusal or a timeout)
        client = ExecutionClient(runtime.registry["intake"], key_id, secret, timeout_s=2.0)
        try:
            while not stop.is_set():
                try:
                    reply = client.send_signal({"strategy_id": "freeze", "symbol": "AAPL", "action": "BUY",
                                                "quantity": 1.0})
                    replies.append(reply.status)
                except Exception as exc:  # noqa: BLE001 - a timed-out signal during the freeze
                    replies.append(type(exc).__name__)
                time.sleep(0.02)
        finally:
            client.close()

    sender = threading.Thread(target=stream, daemon=True)
    try:
        sender.start()
        time.sleep(1.0)
        epoch_before = runtime.stats()["supervisor"]["epoch"]
        os.kill(server.pid, signal.SIGSTOP)
        time.sleep(FREEZE_S)
        os.kill(server.pid, signal.SIGCONT)
        # trading resumes: ACCEPTED again after the thaw
        n = len(replies)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "ACCEPTED" not in replies[n:]:
            time.sleep(0.2)
        assert "ACCEPTED" in replies[n:], replies[-20:]
        stop.set()
        sender.join(10)
        sup = runtime.stats()["supervisor"]
        # no chain: at most one failover for the freeze (none expected: a frozen store is not a death)
        assert sup["epoch"] - epoch_before <= 1, sup["failovers"]
        # every grant recorded once the store answers again
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and runtime.stats()["supervisor"]["recorder"]["pending"]:
            time.sleep(0.2)
        sup = runtime.stats()["supervisor"]
        assert sup["recorder"]["pending"] == 0 and sup["recorder"]["dropped"] == 0, sup["recorder"]
        records = [orjson.loads(f[b"m"]) for _, f in redis.Redis(port=port).xrange(cfg.storage.monitoring_stream)]
        grants = [r for r in records if r["kind"] == "epoch_grant"]
        assert len(grants) == sup["epoch_grants"] == sup["epoch"] - 1, (grants, sup)
        assert [g["epoch"] for g in grants] == list(range(2, sup["epoch"] + 1))
    finally:
        stop.set()
        try:
            os.kill(server.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        runtime.stop()
        server.kill()
