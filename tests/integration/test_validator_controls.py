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
            "k1": {"killed": True, "paused": False, "state": "ACTIVE"},
            "p1": {"killed": False, "paused": True, "state": "ACTIVE"},
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
            "node": {"killed": False, "paused": False, "state": "ACTIVE"}, "strategies": {}, "limits": {},
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
