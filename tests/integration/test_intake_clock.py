"""A round of the validator's intake that stalls mid-way (its process descheduled, stopped or paused
after the round took its clock) judges the frames it reads after the stall by their own time: a
signal signed after the stall is ACCEPTED, not refused STALE_TIMESTAMP against the round's old clock
(seen in tests/chaos/test_failover_while_down.py: 22 signals sent right after a 6 s SIGSTOP of the
validator were refused so). Real Redis, no Ray; the stall is a sleep inside the gate's first call."""

from __future__ import annotations

import time
import uuid

import msgspec
import zmq

from actors.validator import Validator
from nae_client.wire import Status
from tests.chaos.test_redis_outage import free_port
from tests.integration.test_intake_frames import _replies, _signed

STALL_S = 1.5  # longer than the signing window below


def test_a_frame_read_after_a_stall_mid_round_is_judged_by_its_own_time(make_config, redis_url):
    cfg = make_config()
    cfg = msgspec.structs.replace(cfg, signing=msgspec.structs.replace(cfg.signing, timestamp_window_ms=1_000))
    v = Validator(cfg, redis_url, ["tcp://127.0.0.1:" + str(free_port())], "tcp://127.0.0.1:" + str(free_port()))
    intake = v.start(timeout_s=60)["intake"]
    ctx = zmq.Context()
    first, late = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    for sock in (first, late):
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(intake)
    admit = v.gate.admit
    stalled: list[bool] = []

    def stalling_admit(frame, now_ns, *args):
        if not stalled:  # the round has taken its clock; its process stops here for a while
            stalled.append(True)
            time.sleep(STALL_S)
            late.send(_signed(cfg, "after-" + uuid.uuid4().hex))  # signed as the stall ends, read by this round
            time.sleep(0.05)
        return admit(frame, now_ns, *args)

    v.gate.admit = stalling_admit
    try:
        first.send(_signed(cfg, "before-" + uuid.uuid4().hex))
        assert [r.status for r in _replies(first, 1)] == [Status.ACCEPTED]
        got = _replies(late, 1)
        assert [r.status for r in got] == [Status.ACCEPTED], got
    finally:
        first.close(0)
        late.close(0)
        ctx.term()
        v.stop()
