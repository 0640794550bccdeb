"""A hot standby lets its work gather (`[tuning] standby_wake_ms`): it sleeps that long after each
wake-up, so signals that came meanwhile are taken in one wake-up, and it still records every one,
while the leader takes each as it comes. Real Redis, ZeroMQ, the native engine hosts and a broker
adapter, in-process (no Ray)."""

from __future__ import annotations

import time

import msgspec
import pytest

from tests.integration.engine_pair import accepted, engine_pair, send_batch
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(120)

N = 60


def test_a_standby_takes_a_stream_in_few_wake_ups_and_records_every_signal(make_config, redis_url):
    cfg = make_config()
    cfg = msgspec.structs.replace(cfg, tuning=msgspec.structs.replace(cfg.tuning, standby_wake_ms=40))
    with engine_pair(cfg, redis_url) as pair:
        leader, standby = pair.leader, pair.standby
        assert (leader._pause_ns(), standby._pause_ns()) == (0, 40_000_000)
        signals = [accepted("pause", i) for i in range(N)]
        ticks0 = (leader.loop_ticks, standby.loop_ticks)
        t0 = time.monotonic()
        for acc in signals:  # one batch every 2 ms, to both engines, as the validator forwards them
            send_batch(pair.client, cfg.storage.signals_stream, pair.intakes, [acc])
            time.sleep(0.002)
        wait_for(lambda: len(pair.broker.orders()) == N)
        wait_for(lambda: len(standby.manager.orders) >= N)
        took_s = time.monotonic() - t0
        leader_ticks, standby_ticks = leader.loop_ticks - ticks0[0], standby.loop_ticks - ticks0[1]
        sent = {o.client_order_id for o in pair.broker.orders()}
    assert sent <= set(standby.manager.orders)  # the standby knows every order a promotion may need
    # at most one wake-up per 40 ms of the run (and the one under way), against one per batch or so
    assert standby_ticks <= took_s / 0.040 + 2, (standby_ticks, took_s)
    assert leader_ticks >= N // 2, leader_ticks

