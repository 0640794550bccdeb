"""ACKed signals the validator logged and never passed on reach the venue all the same, once.

A validator killed between its append to `execution.signals` and its forward to the engines (or with a
batch queued for an engine) leaves ACKed signals no engine got; the restarted validator forwards what
comes next. Each batch names the entry before it (`SignalBatch.prev_id`): the engine that never got
that entry reads the gap back from the log and takes it ahead of the batch. Before, the leader's
checkpoint passed the gap by and no recovery read it again: 5 ACKed signals were lost at a validator
kill in a 100-kill run (bench.failover_report, 2026-11-30).

Played here: the validator (the test appends entries and pushes batches as it does), a real native
leader and a hot standby, the paper venue behind a real broker adapter, Redis. In-process, no Ray.
"""

from __future__ import annotations

import pytest

from node.orders import client_order_id_for
from tests.integration.engine_pair import LoggingValidator, accepted, engine_pair
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(120)


def test_signals_logged_and_never_forwarded_are_taken_from_the_log_at_the_next_batch(make_config, redis_url):
    cfg = make_config()
    with engine_pair(cfg, redis_url) as pair:
        broker, leader, standby = pair.broker, pair.leader, pair.standby
        validator = LoggingValidator(pair.client, cfg.storage.signals_stream, pair.intakes)
        signals = [accepted("gap", i) for i in range(30)]
        validator.append(signals[:10])
        wait_for(lambda: len(broker.orders()) == 10)
        # killed between its append and its forward: two entries ACKed, logged, never pushed
        validator.append(signals[10:15], logged_only=True)
        validator.append(signals[15:20], logged_only=True)
        # the restarted validator (its tip read from the log) forwards the next batch
        validator.append(signals[20:])
        wanted = {client_order_id_for(a.signal_id) for a in signals}
        wait_for(lambda: {o.client_order_id for o in broker.orders()} >= wanted)
        ids = [o.client_order_id for o in broker.orders()]
        assert sorted(ids) == sorted(wanted), "each ACKed signal at the venue once"
        assert (leader.gaps_filled, leader.gap_signals) == (1, 10)
        # the standby took the gap too (recorded, not sent): its book knows every order a promotion may need
        wait_for(lambda: standby.gap_signals == 10)
        assert wanted <= set(standby.manager.orders)
        # a batch that follows the one taken reads nothing more
        validator.append([accepted("gap", 100)])
        wait_for(lambda: len(broker.orders()) == 31)
        assert leader.gaps_filled == 1
