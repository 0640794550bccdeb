"""Redis frozen (SIGSTOP, then SIGCONT) under a steady stream of signals: every signal answered
REJECTED never reaches the venue, every ACKed one reaches it exactly once, and a signal answered
ERROR STORE_OUTCOME_UNKNOWN (or not answered at all) gets its true answer on a retry with the same
request_id. The Redis is the test's own, with AOF on as the embedded one runs."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import msgspec
import pytest

from node.client import ExecutionClient
from node.config import EngineConfig
from nae_client.errors import TransportError  # what the client raises
from node.orders import client_order_id_for, signal_id_for
from node.runtime import NodeRuntime, quiet

pytestmark = pytest.mark.chaos

_STREAM_S = 14.0
_FREEZE_AT_S, _FREEZE_FOR_S = 3.0, 7.0


def _signal() -> dict:
    return {"request_id": uuid.uuid4().hex, "timestamp": time.time(), "strategy_id": "stall", "symbol": "AAPL",
            "action": "BUY", "quantity": 1.0}


def _ask(client: ExecutionClient, signal: dict) -> str:
    """ACCEPTED / REJECTED / UNKNOWN (ERROR STORE_OUTCOME_UNKNOWN, or no answer in time)."""
    try:
        reply = client.send_signal(signal)
    except TransportError:
        return "UNKNOWN"
    if reply.status == "ERROR":
        assert reply.reasons == ["STORE_OUTCOME_UNKNOWN"], reply
        return "UNKNOWN"
    if reply.status == "REJECTED":
        assert reply.reasons == ["STORE_UNAVAILABLE"], reply
    return reply.status


def test_a_refused_signal_never_executes_across_a_redis_stall(ray_session, make_config, private_redis):
    cfg = make_config(engines=[EngineConfig(name="a"), EngineConfig(name="b")])
    cfg = msgspec.structs.replace(cfg, storage=msgspec.structs.replace(
        cfg.storage, redis_url=private_redis.url, allow_volatile_redis=False))
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    key_id, secret = next(iter(cfg.signing.keys.items()))
    client = ExecutionClient(runtime.registry["intake"], key_id, secret, timeout_s=6.0)
    def thaw_and_fail_over() -> None:
        # as in the field: the stall also fails the leader over, and the new leader replays the log
        # after its checkpoint, where a stalled append that Redis applied late now sits
        private_redis.thaw()
        try:
            runtime.call_supervisor("failover")
        except Exception:  # noqa: BLE001 - a failover already under way is as good
            pass

    timers = [threading.Timer(_FREEZE_AT_S, private_redis.freeze),
              threading.Timer(_FREEZE_AT_S + _FREEZE_FOR_S, thaw_and_fail_over)]
    try:
        signals, answers = {}, {}
        for t in timers:
            t.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < _STREAM_S:  # a steady stream, ~50 signals/s
            signal = _signal()
            signals[signal["request_id"]] = signal
            answers[signal["request_id"]] = _ask(client, signal)
            time.sleep(0.02)
        for t in timers:
            t.join()
        first = Counter(answers.values())
        assert first["ACCEPTED"] > 100 and first["REJECTED"] + first["UNKNOWN"] > 0, first
        # every unknown outcome is retried with the same request until it gets a definite answer
        deadline = time.monotonic() + 60
        while any(a == "UNKNOWN" for a in answers.values()):
            assert time.monotonic() < deadline, Counter(answers.values())
            for rid, answer in list(answers.items()):
                if answer == "UNKNOWN":
                    answers[rid] = _ask(client, signals[rid])
            time.sleep(0.2)
        accepted = {client_order_id_for(signal_id_for(r)) for r, a in answers.items() if a == "ACCEPTED"}
        refused = {client_order_id_for(signal_id_for(r)) for r, a in answers.items() if a == "REJECTED"}
        deadline = time.monotonic() + 60
        while True:
            fills = runtime.call("broker", "fills")
            filled = Counter()
            for f in fills:
                filled[f.client_order_id] += f.last_qty
            if accepted <= set(filled) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        time.sleep(1.0)  # a late replay of a refused signal would show up by now
        fills = runtime.call("broker", "fills")
        filled = Counter()
        for f in fills:
            filled[f.client_order_id] += f.last_qty
        assert not refused & set(filled), sorted(refused & set(filled))[:5]  # REJECTED never executes
        assert accepted <= set(filled), len(accepted - set(filled))  # every ACK reaches the venue ...
        assert all(filled[c] == 1.0 for c in accepted)  # ... exactly once
        assert set(filled) <= accepted  # and nothing else does
        assert runtime.stats()["validator"]["in_doubt"] == 0
    finally:
        for t in timers:
            t.cancel()
        private_redis.thaw()
        client.close()
        runtime.stop()
