"""A restart that fails is tried again: kill -9 the validator while its start-up read of Redis
fails (the key of its saved controls holds a list: GET answers WRONGTYPE, a real Redis error, as a
Redis too slow to answer would): the supervisor's first restart fails, is counted and said in stats
(`watch_errors`, `last_watch_error`); once Redis answers again the next round brings the validator
back on its address and the node trades.

Before the fix the failed restart had taken the validator out of the supervisor's table, which the
watch polls: it never tried again, and the node stayed without a validator (found in a 30-kill run
of `bench.failover_report`: the intake down for minutes after one kill, until a supervisor restart).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Callable

import pytest
import redis

from node.client import ExecutionClient

pytestmark = pytest.mark.chaos


def _wait(pred: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def _validator_pid(node) -> int | None:
    try:
        return node.call_supervisor("pid", "validator")
    except Exception:  # noqa: BLE001 - not in the table, or dead: no pid
        return None


def test_a_validator_restart_that_fails_is_tried_again(fresh_node):
    node = fresh_node
    r = redis.Redis.from_url(node.redis_url)
    key = node.cfg.node_id + ".risk.controls"  # read by a starting validator (actors/risk_state.py)
    saved = r.get(key)
    before = node.stats()["supervisor"]
    pid = _validator_pid(node)
    assert pid is not None
    r.delete(key)
    r.rpush(key, b"not a string")  # GET of it: WRONGTYPE
    try:
        os.kill(pid, signal.SIGKILL)
        sup = _wait(lambda: (s := node.stats()["supervisor"])["watch_errors"] > before["watch_errors"] and s,
                    120, "the failed restart to be counted")
        assert sup["last_watch_error"].startswith("validator: "), sup["last_watch_error"]
        assert node.stats()["validator"].get("down"), "no validator while its start-up read fails"
    finally:
        r.delete(key)
        if saved is not None:
            r.set(key, saved)

    new_pid = _wait(lambda: (p := _validator_pid(node)) not in (None, pid) and p, 120, "the validator back")
    assert new_pid != pid
    restarts = [e for e in node.stats()["supervisor"]["restarts"] if e["role"] == "validator"]
    assert [e["reason"] for e in restarts] == ["died"]  # one restart that took: the failed one left no event
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as client:
        reply = client.send_signal({"strategy_id": "retried", "symbol": "AAPL", "action": "BUY", "quantity": 1})
    assert reply.status == "ACCEPTED", reply
    assert node.stats()["supervisor"]["health"]["ok"] is True
