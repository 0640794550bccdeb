"""A promotion reads from the signal log only what the standby lacks, and only up to the fence.

A hot standby takes every batch as it is logged. Its promotion used to read the log again from the
old leader's checkpoint to the log's end, and ask the broker about every order it found there that
it did not know. Under load that end kept moving: ~1,000 entries a second logged while the leader
was silent and while the promotion ran (0.5-1.5 s of reads and up to 2.5 s of asks in a 30-kill
run). Now the read starts after the batches the standby took (when they reach back to the
checkpoint) and stops at the log's tip as read after the fence: a later batch comes through the
intake's forward and is sent as any new one; a batch the read took that comes later is dropped.

Played here: the validator (`LoggingValidator`), a real native leader and hot standby, the paper
venue behind a real broker adapter, Redis. In-process, no Ray.
"""

from __future__ import annotations

from collections import Counter

import pytest

from node.orders import client_order_id_for
from tests.integration.engine_pair import LoggingValidator, accepted, engine_pair
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(120)


def _at_venue(pair) -> Counter:
    return Counter(o.client_order_id for o in pair.broker.orders())


def test_a_promoted_standby_reads_only_the_entries_it_never_took_and_sends_each_order_once(make_config, redis_url):
    cfg = make_config()
    with engine_pair(cfg, redis_url) as pair:
        validator = LoggingValidator(pair.client, cfg.storage.signals_stream, pair.intakes)
        signals = [accepted("cu", i) for i in range(50)]
        for acc in signals[:40]:  # one signal a batch, as at a paced 1,000/s
            validator.append([acc])
        taken = {client_order_id_for(a.signal_id) for a in signals[:40]}
        wait_for(lambda: set(_at_venue(pair)) >= taken and taken <= set(pair.standby.manager.orders))
        pair.leader.stop()  # the old leader dies
        pair.client.delete(pair.leader._checkpoint_key)  # its checkpoint never written: the log from the start
        late = [validator.append([acc], logged_only=True) for acc in signals[40:45]]  # logged, not forwarded yet
        read_tip = pair.standby._signals.tip

        def tip_then_one_more() -> str:  # a batch logged while the promotion runs, after the fence
            tip = read_tip()
            validator.append([signals[45]], to=[pair.intakes[1]])
            return tip

        pair.standby._signals.tip = tip_then_one_more
        done = pair.standby.promote(2)

        assert done["log_entries_read"] == 5, done  # not the 40 it took, nor the one logged after the fence
        every = {client_order_id_for(a.signal_id) for a in signals[:45]}
        wait_for(lambda: set(_at_venue(pair)) >= every)
        for entry_id in late:  # their forward comes after the promotion: read already, dropped
            pair.intakes[1].send(validator.batches[entry_id])
        for acc in signals[46:]:  # logged after the promotion: through the forward, sent as new
            validator.append([acc], to=[pair.intakes[1]])
        wanted = {client_order_id_for(a.signal_id) for a in signals}
        wait_for(lambda: set(_at_venue(pair)) >= wanted and pair.standby.batches_read_already == 5)
        counts = _at_venue(pair)
        assert set(counts) == wanted and set(counts.values()) == {1}, "each ACKed signal at the venue once"
        assert pair.standby.gaps_filled == 0


def test_a_standby_whose_batches_start_after_the_checkpoint_reads_the_log_from_the_checkpoint(make_config, redis_url):
    """A standby (re)started mid-run never took the batches before its first one: the read starts at
    the checkpoint, and the promoted engine knows those orders too."""
    cfg = make_config()
    with engine_pair(cfg, redis_url) as pair:
        validator = LoggingValidator(pair.client, cfg.storage.signals_stream, pair.intakes)
        signals = [accepted("cs", i) for i in range(30)]
        for acc in signals[:10]:  # before the standby was there: to the leader alone
            validator.append([acc], to=[pair.intakes[0]])
        for acc in signals[10:30]:
            validator.append([acc])
        wanted = {client_order_id_for(a.signal_id) for a in signals}
        followed = {client_order_id_for(a.signal_id) for a in signals[10:]}
        wait_for(lambda: set(_at_venue(pair)) >= wanted and followed <= set(pair.standby.manager.orders))
        pair.leader.stop()
        pair.client.delete(pair.leader._checkpoint_key)

        done = pair.standby.promote(2)

        assert done["log_entries_read"] == 30, done
        assert wanted <= set(pair.standby.manager.orders)  # the first ten too: asked about, adopted
        counts = _at_venue(pair)
        assert set(counts) == wanted and set(counts.values()) == {1}
