"""The validator's controls against a real Redis it can lose (no Ray): a control applies at once even
with Redis down, is recorded when Redis returns, and a new validator on the same Redis starts with it;
a control that cannot be applied is refused with a reason code and recorded nowhere."""

from __future__ import annotations

import time

import pytest

from actors.validator import Validator
from node.messages import Signal
from node.reasons import Reason
from node.risk import controls as ctl
from tests.chaos.test_redis_outage import free_port, start_redis


def _signal(strategy: str, qty: float = 1.0) -> Signal:
    return Signal(request_id="probe-" + strategy + str(time.time_ns()), strategy_id=strategy, timestamp=1.0,
                  symbol="AAPL", action="BUY", quantity=qty)


def _reasons(v: Validator, strategy: str, qty: float = 1.0) -> list:
    return v.call_on_loop(lambda: v.risk.check(_signal(strategy, qty), time.time_ns()))


def _validator(cfg, url: str, initial_states: tuple = ()) -> Validator:
    v = Validator(cfg, url, ["tcp://127.0.0.1:" + str(free_port())], "tcp://127.0.0.1:" + str(free_port()),
                  initial_states=initial_states)
    v.start(timeout_s=60)
    return v


def _wait(cond, what: str, timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.1)


def test_a_control_set_while_redis_is_down_applies_at_once_and_survives_a_restart(make_config, tmp_path):
    port = free_port()
    url = "redis://127.0.0.1:" + str(port) + "/0"
    server = start_redis(port, tmp_path)
    cfg = make_config()
    first = second = None
    try:
        first = _validator(cfg, url)
        assert first.kill("k1") == {"applied": True, "durable": True}
        server.terminate()
        server.wait(10)
        answer = first.pause("p1")
        assert answer["applied"] is True and answer["durable"] is False
        assert _reasons(first, "p1") == [Reason.STRATEGY_PAUSED]  # in force before it is durable
        assert first.stats().unsaved_controls == 1
        server = start_redis(port, tmp_path)  # AOF: what was recorded is still there
        _wait(lambda: first.stats().unsaved_controls == 0, "the control to be recorded")
        first.stop()
        first = None

        second = _validator(cfg, url)
        assert _reasons(second, "k1") == [Reason.STRATEGY_KILLED]
        assert _reasons(second, "p1") == [Reason.STRATEGY_PAUSED]
        assert _reasons(second, "free") == []
        assert second.controls()["strategies"] == {
            "k1": {"killed": True, "paused": False, "state": "ACTIVE", "state_by": ""},
            "p1": {"killed": False, "paused": True, "state": "ACTIVE", "state_by": ""},
        }
    finally:
        for v in (first, second):
            if v is not None:
                v.stop()
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda v: v.set_limits({"max_symbols": 1.0}), "UNKNOWN_LIMIT"),
        (lambda v: v.set_limits({"max_quantity": -5.0}), "BAD_LIMIT"),
        (lambda v: v.set_state("SIDEWAYS"), "BAD_STATE"),
        (lambda v: v.load_covariance(["AAPL", "MSFT"], [[0.1]]), "BAD_COVARIANCE"),
    ],
)
def test_a_control_that_cannot_apply_is_refused_with_a_reason_and_not_recorded(make_config, redis_url, call, reason):
    v = _validator(make_config(), redis_url)
    try:
        with pytest.raises(ctl.ControlError) as refused:
            call(v)
        assert refused.value.reason == reason
        assert v.controls() == {
            "node": {"killed": False, "paused": False, "state": "ACTIVE", "state_by": ""}, "strategies": {}, "limits": {},
            "covariance": [], "modes": {},
        }
        assert _reasons(v, "any") == []
    finally:
        v.stop()


def test_a_start_up_state_from_reconciliation_is_recorded_and_kept_by_the_next_start(make_config, redis_url):
    cfg = make_config()
    first = _validator(cfg, redis_url, initial_states=(("REDUCING", "recon"), ("HALTED", None)))
    try:
        assert first.controls()["strategies"]["recon"]["state"] == "REDUCING"
    finally:
        first.stop()
    second = _validator(cfg, redis_url)  # a restart: nothing passed in this time
    try:
        assert second.controls()["node"]["state"] == "HALTED"
        assert second.controls()["strategies"]["recon"]["state"] == "REDUCING"
        assert _reasons(second, "other") == [Reason.HALTED]
    finally:
        second.stop()


def test_lift_states_lifts_only_what_its_setter_set_last_and_the_next_start_keeps_it(make_config, redis_url):
    from node.reconcile_halts import FAILED_BY

    cfg = make_config()
    drift_by = "reconciler:RECONCILE_POSITION_DRIFT"
    first = _validator(cfg, redis_url, initial_states=(("HALTED", None, FAILED_BY), ("HALTED", "s1", FAILED_BY)))
    try:
        first.set_state("HALTED", "s1")  # an operator's, after the reconciler's: the operator's now
        first.set_state("HALTED", "d1", drift_by)
        assert first.controls()["node"] == {"killed": False, "paused": False, "state": "HALTED", "state_by": FAILED_BY}
    finally:
        first.stop()
    second = _validator(cfg, redis_url)  # who set each state comes back with it
    try:
        assert second.lift_states(FAILED_BY) == {"lifted": ["*"]}
        assert second.lift_states(FAILED_BY) == {"lifted": []}
        assert _reasons(second, "other") == []
        assert _reasons(second, "s1") == [Reason.HALTED]
        assert _reasons(second, "d1") == [Reason.HALTED]
    finally:
        second.stop()
    third = _validator(cfg, redis_url)  # the lift was recorded like any control
    try:
        assert third.controls()["node"]["state"] == "ACTIVE"
        assert third.controls()["strategies"]["s1"] == {"killed": False, "paused": False, "state": "HALTED",
                                                        "state_by": ""}
    finally:
        third.stop()
