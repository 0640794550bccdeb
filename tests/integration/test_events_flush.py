"""A native leader appends its reports to `execution.events` at most every `[tuning] events_flush_ms`.

Each append is a Redis round trip (the entry, the checkpoint, the open-order index): at a paced
1,000 signals/s the leader made one or two a signal. Reports are still published at once; only the
ledger's copy waits, and a stop appends what is held. Played here: a real native leader and
standby, the paper venue behind a real broker adapter, Redis. In-process, no Ray.
"""

from __future__ import annotations

import time

import msgspec
import pytest

from node.messages import ExecKind
from node.streams import unpack_reports
from tests.integration.engine_pair import LoggingValidator, accepted, engine_pair
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(120)


def _config(make_config, flush_ms: int):
    cfg = make_config()
    return msgspec.structs.replace(cfg, tuning=msgspec.structs.replace(cfg.tuning, events_flush_ms=flush_ms))


def _fills_logged(pair, stream: str) -> set[str]:
    return {r.exec_id for _, f in pair.client.xrange(stream) for r in unpack_reports(f) if r.kind is ExecKind.FILL}


def test_a_trickle_of_reports_is_appended_at_most_once_a_flush_interval(make_config, redis_url):
    cfg = _config(make_config, 200)
    stream = cfg.storage.events_stream
    with engine_pair(cfg, redis_url) as pair:
        validator = LoggingValidator(pair.client, cfg.storage.signals_stream, pair.intakes)
        t0 = time.monotonic()
        for i in range(60):  # one signal every 10 ms: each order's NEW and FILL come in wake-ups of their own
            validator.append([accepted("fl", i)])
            time.sleep(0.01)
        wait_for(lambda: len(_fills_logged(pair, stream)) == 60)
        elapsed = time.monotonic() - t0
        entries = pair.client.xlen(stream)
        assert entries <= elapsed / 0.2 + 2, (entries, elapsed)
        assert pair.leader.published >= 120  # published at once all the same (NEW and FILL each)


def test_a_stop_appends_the_reports_a_flush_held_back(make_config, redis_url):
    cfg = _config(make_config, 60_000)  # after the first append, none for a minute
    stream = cfg.storage.events_stream
    with engine_pair(cfg, redis_url) as pair:
        validator = LoggingValidator(pair.client, cfg.storage.signals_stream, pair.intakes)
        validator.append([accepted("st", 0)])
        wait_for(lambda: pair.client.xlen(stream) == 1)
        for i in range(1, 20):
            validator.append([accepted("st", i)])
        wait_for(lambda: len(pair.venue.fills()) == 20 and pair.leader.published >= 40)
        assert pair.client.xlen(stream) == 1 and len(_fills_logged(pair, stream)) <= 1  # held back
        pair.leader.stop()
        assert _fills_logged(pair, stream) == {f.exec_id for f in pair.venue.fills()}
