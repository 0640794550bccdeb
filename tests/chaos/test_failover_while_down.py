"""Failover while the supervisor or the broker adapter is itself down, and a validator that is only slow.

- kill -9 the supervisor, then the leader while Ray restarts the supervisor: the restarted supervisor
  finds the leader's process gone and promotes the best standby as it comes back (node.liveness
  `resume_verdict`), not after its detection windows;
- kill -9 the broker adapter, then the leader while the adapter restarts: the leader's failover does
  not wait for the restart (it waited for its end: 55 s failovers in a 100-kill run);
- SIGSTOP the validator for a few seconds (far past its 2 s `alive()` answer, far short of the 30 s
  hung deadline): it is not restarted.
Each: every accepted signal at the venue exactly once, and trading resumes. The seconds each takes
are measured in bench/failover_report, not asserted here.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from node.config import EngineConfig
from node.demo import make_signals
from tests.chaos.test_supervisor_kill import burst, executed_exactly_once, kill_supervisor, resumed
from tests.waits import wait_for

#: a leader and two hot standbys
pytestmark = [pytest.mark.chaos, pytest.mark.parametrize(
    "fresh_node", [{"engines": [EngineConfig(name="a"), EngineConfig(name="b"), EngineConfig(name="c")]}],
    indirect=True)]

N_SIGNALS = 3_000


@pytest.fixture()
def node(fresh_node):
    return fresh_node


def signals_of(node, seed: int, n: int = N_SIGNALS):
    prices = {s.symbol: s.price for s in node.cfg.broker.paper.symbols}
    return make_signals(n, prices, seed=seed, bad_every=0)


def trades_on(node, signals, replies, seed: int) -> None:
    """Every accepted signal at the venue once, then 50 more signals too."""
    executed_exactly_once(node, signals, replies)
    more = signals_of(node, seed, 50)

    async def nothing(i):
        return None

    executed_exactly_once(node, signals + more, {**replies, **asyncio.run(burst(node, more, nothing))})


def led_by_a_live_engine(node) -> bool:
    try:
        stats = node.call_supervisor("stats")
    except Exception:  # noqa: BLE001 - the supervisor is restarting
        return False
    lane = next(iter(stats["supervisor"]["groups"].values()))
    engine = stats.get("engine:" + lane["leader"], {})
    return engine.get("role") == "leader" and engine.get("epoch") == lane["epoch"]


def test_a_leader_killed_while_the_supervisor_is_down_is_promoted_as_the_supervisor_comes_back(node):
    signals = signals_of(node, seed=31)
    leader_pid = node.call_supervisor("pid", "engine")

    async def on_sent(i):
        if i == N_SIGNALS // 3:
            kill_supervisor(node)
            os.kill(leader_pid, signal.SIGKILL)  # while Ray restarts the supervisor

    replies = asyncio.run(burst(node, signals, on_sent))
    wait_for(lambda: (resumed(node) or {}).get("promoted"), timeout_s=60)  # done beside the constructor
    got = resumed(node)
    group = next(iter(got["groups"]))
    assert "to" in got["promoted"][group], got
    failovers = node.call_supervisor("stats")["supervisor"]["failovers"]
    assert [f["reason"] for f in failovers][:1] == ["resume"], failovers
    wait_for(lambda: led_by_a_live_engine(node), timeout_s=60)
    trades_on(node, signals, replies, seed=32)


def test_a_leader_killed_while_the_broker_adapter_restarts_is_failed_over(node):
    signals = signals_of(node, seed=41)
    broker_pid = node.call_supervisor("pid", "broker")
    leader_pid = node.call_supervisor("pid", "engine")

    async def on_sent(i):
        if i == N_SIGNALS // 3:
            os.kill(broker_pid, signal.SIGKILL)
            await asyncio.sleep(0.3)  # the supervisor is at the adapter's restart
            os.kill(leader_pid, signal.SIGKILL)

    replies = asyncio.run(burst(node, signals, on_sent))
    wait_for(lambda: led_by_a_live_engine(node), timeout_s=60)
    # the failover does not wait for the adapter's restart (node.liveness: restarts under a lock of their
    # own), so the restart is recorded when it ends, which may be after the new leader leads
    wait_for(lambda: node.call_supervisor("stats")["supervisor"]["restarts"], timeout_s=60)
    stats = node.call_supervisor("stats")["supervisor"]
    assert stats["failovers"] and stats["failovers"][0]["reason"] in ("exit", "heartbeat", "ray"), stats["failovers"]
    assert [r["role"] for r in stats["restarts"]] == ["broker"], stats["restarts"]
    trades_on(node, signals, replies, seed=42)


def test_a_validator_that_is_only_slow_is_not_restarted(node):
    signals = signals_of(node, seed=51)
    pid = node.call_supervisor("pid", "validator")
    stopped: list[bool] = []

    def go_on() -> bool:
        try:
            os.kill(pid, signal.SIGCONT)
            return True
        except ProcessLookupError:  # replaced while it was only slow: the bug
            return False

    async def on_sent(i):
        if i == N_SIGNALS // 3:
            os.kill(pid, signal.SIGSTOP)  # no alive() answer in 2 s: slow, not dead (node.liveness)
            await asyncio.sleep(6.0)
            stopped.append(go_on())

    try:
        replies = asyncio.run(burst(node, signals, on_sent))
    finally:
        go_on()
    assert stopped == [True], "the validator, stopped 6 s mid-burst, was still there"
    trades_on(node, signals, replies, seed=52)
    stats = node.call_supervisor("stats")["supervisor"]
    assert stats["restarts"] == [], stats["restarts"]
    assert node.call_supervisor("pid", "validator") == pid


def test_a_leader_paused_briefly_keeps_the_lead_and_one_stuck_past_its_alive_window_is_failed_over(node):
    """Default detection (3 missed 20 ms beats): a leader whose process is still there is only slow until
    `leader_alive_silence_ms` (1 s); stopped 0.3 s mid-burst it keeps the lead (it was failed over before:
    spurious failovers on a loaded host), stopped 3 s it is failed over, and told to step down once
    it runs again."""
    signals = signals_of(node, seed=61)
    pid = node.call_supervisor("pid", "engine")
    paused: list[int] = []

    def failovers() -> list:
        return node.call_supervisor("stats")["supervisor"]["failovers"]

    async def on_sent(i):
        if i in (N_SIGNALS // 4, N_SIGNALS // 2):
            stop_s = 0.3 if i == N_SIGNALS // 4 else 3.0
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(stop_s)
            finally:
                os.kill(pid, signal.SIGCONT)
            paused.append(len(failovers()))

    replies = asyncio.run(burst(node, signals, on_sent))
    assert paused[0] == 0, "a leader stopped 0.3 s was failed over"
    wait_for(lambda: led_by_a_live_engine(node), timeout_s=60)
    got = failovers()
    assert [f["reason"] for f in got] == ["heartbeat"], got
    assert node.call_supervisor("pid", "engine") != pid  # another engine leads
    trades_on(node, signals, replies, seed=62)
