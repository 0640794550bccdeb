"""A promoted Nautilus standby logs the fills the old leader published and never logged: a native
leader publishes fills, the warm Nautilus standby's kernel child follows them, and the leader stops
flushing (it dies or is fenced between publishing and its events flush). Promoted, the Nautilus
engine appends them to `execution.events` (the ledger's and the client's replay's source) once each,
under the exec id published, ahead of its own reports, and never publishes them again.

Real Redis, ZeroMQ, the paper venue behind the broker host, the native engine host and the Nautilus
engine host with its kernel child process, in-process (no Ray): test_promotion_fills.py's "leader
stops flushing" case with a Nautilus standby.
"""

from __future__ import annotations

import time

import pytest
import redis

from actors.nautilus_engine import NautilusEngineHost
from node.messages import ExecKind, SignalAccepted
from node.orders import client_order_id_for
from node.streams import unpack_reports
from tests.integration.engine_pair import accepted, engine_pair, send_batch
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(180)

N = 40  # the old leader's orders: the first half logged, the second half published only
OWN = 4  # orders the old leader never had (logged after it died): the new leader's own reports
_FILLS = (ExecKind.FILL, ExecKind.PARTIAL_FILL)


def _accepted(i: int) -> SignalAccepted:
    return accepted("ntfill-" + str(time.time_ns()), i)


def _logged_fills(client: redis.Redis, stream: str) -> list:
    """The fills in the events stream, in order."""
    return [r for _, fields in client.xrange(stream) for r in unpack_reports(fields) if r.kind in _FILLS]


def _kernel(host: NautilusEngineHost) -> dict:
    return host.stats().child


def test_a_promoted_nautilus_standby_logs_the_fills_the_old_leader_published_and_never_logged(
        make_config, redis_url):
    cfg = make_config()
    stream = cfg.storage.events_stream
    with engine_pair(cfg, redis_url, standby_cls=NautilusEngineHost) as pair:  # its kernel child starts warm
        client, venue, leader, standby, intakes = pair.client, pair.venue, pair.leader, pair.standby, pair.intakes
        signals = [_accepted(i) for i in range(N + OWN)]
        # the first half: published, followed by the kernel child and logged
        send_batch(client, cfg.storage.signals_stream, intakes, signals[:N // 2])
        wait_for(lambda: len(_logged_fills(client, stream)) == N // 2)
        wait_for(lambda: _kernel(standby).get("followed_fills", 0) == N // 2)
        # the second half: published and followed; the leader stops flushing (it never logs again)
        leader._flush_events = lambda: None
        send_batch(client, cfg.storage.signals_stream, intakes, signals[N // 2:N])
        wait_for(lambda: len(venue.fills()) == N)
        executions = {f.exec_id for f in venue.fills()}
        wait_for(lambda: _kernel(standby).get("followed_fills", 0) == N)
        leader.stop()
        assert len(_logged_fills(client, stream)) == N // 2  # the gap: half the executions published, not logged
        # orders logged after the leader died: the standby holds them, its promotion sends them
        send_batch(client, cfg.storage.signals_stream, intakes[1:], signals[N:])

        out = standby.promote(2)
        own = {client_order_id_for(a.signal_id) for a in signals[N:]}
        # its own fills are logged after the followed ones (ahead of its own reports): those logged, all are
        wait_for(lambda: {r.client_order_id for r in _logged_fills(client, stream)} >= own)

        fills = _logged_fills(client, stream)
        assert len(fills) == N + OWN, "%d of %d executions logged" % (len(fills), N + OWN)
        assert sorted(r.exec_id for r in fills) == sorted({f.exec_id for f in venue.fills()})  # each once
        assert {r.request_id for r in fills} == {a.signal.request_id for a in signals}
        # (the own orders are resent by the promotion, or sent after it when the kernel's queues still
        # held them: either way once, and after the promotion logged the followed fills)
        assert out["followed"] == N and out["followed_logged"] == N // 2, out
        assert standby.stats().followed_logged == N // 2
        # the stream keeps the order things happened in: the old leader's executions ahead of the new one's
        first_own = min(i for i, r in enumerate(fills) if r.client_order_id in own)
        assert {r.exec_id for r in fills[:first_own]} == executions
        assert _kernel(standby).get("followed_fills", 0) == 0  # handed over once
