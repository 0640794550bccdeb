"""Stage stamps on a whole node: every signal's stages observed once by the validator and the
leading engine, read back through the node's stats as the bench's budget table."""

from __future__ import annotations

import time

import pytest

from node.client import ExecutionClient
from node.messages import ExecKind
from node.stages import Stage, budget, field, stage_fields


@pytest.fixture(scope="module")
def node(module_node):
    return module_node


def test_every_accepted_signal_is_stamped_through_every_stage(node):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    before = stage_fields(node.stats())
    n = 60
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as client:
        client.subscribe()  # returns once the relay holds it
        replies = [client.send_signal({"strategy_id": "stamps", "symbol": "AAPL", "action": "BUY" if i % 2 else "SELL",
                                       "quantity": 1.0}) for i in range(n)]
        assert all(r.status == "ACCEPTED" for r in replies), [r for r in replies if r.status != "ACCEPTED"][:3]
        ids, deadline = {r.request_id for r in replies}, time.monotonic() + 30
        filled: set[str] = set()
        while filled != ids and time.monotonic() < deadline:
            for ev in client.events(timeout_s=0.5):
                if ev.kind is ExecKind.FILL and ev.request_id in ids:
                    filled.add(ev.request_id)
    assert filled == ids
    deadline = time.monotonic() + 10  # the engine's stats are read on its own loop: wait for the last reports
    while True:
        after = stage_fields(node.stats())
        grew = {s: after.get(field(s), {}).get("count", 0) - before.get(field(s), {}).get("count", 0) for s in Stage}
        if grew[Stage.PUBLISH] >= n and grew[Stage.ENGINE_SUBMIT] >= n or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for s in (Stage.WIRE_IN, Stage.INTAKE_GATE, Stage.APPEND, Stage.REPLY, Stage.TO_ENGINE, Stage.ENGINE_SUBMIT):
        assert grew[s] == n, (s, grew)  # once per signal, no more, no less
    assert grew[Stage.BROKER_REPORT] >= n and grew[Stage.PUBLISH] == grew[Stage.BROKER_REPORT]  # a fill at least
    rows = budget(after)
    assert [r["stage"] for r in rows] == [s.value for s in Stage]
    assert all(0 <= r["p50_us"] <= r["p99_us"] for r in rows)
