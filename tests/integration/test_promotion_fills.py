"""A promoted standby publishes each execution the old leader never published once, as a fill with its
exec id, and no restated FILL (reason RECOVERED, no exec id) ahead of it: a subscriber counting fills
per order saw two for one execution (the user path's "945 second FILLs", bench/user_path.py).

The old leader is played by the test: it sends the orders of signals logged in `execution.signals` to
a real broker adapter (paper venue) and stalls with their fills unpublished (what a leader does that
misses its heartbeats under load). The standby never had those signals: its promotion reads them from
the log, asks the broker, finds them filled, and books what the broker has. Real Redis, ZeroMQ, the
native engine host and the broker host, in-process (no Ray).
"""

from __future__ import annotations

import time

import pytest
import redis
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.broker import BrokerHost
from actors.engine import EngineHost
from actors.wiring import EngineWiring
from adapters.engines.native import intent_for
from adapters.paper.venue import PaperVenue
from node.config import PaperSymbol, PaperVenueConfig
from node.messages import (
    ExecKind, ExecutionReport, SignalAccepted, SubmitOrder, broker_event_decoder, encode,
)
from node.streams import SIGNALS_FIELD, pack_batch, unpack_reports
from tests.integration.engine_pair import accepted, engine_pair, send_batch
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(120)

N = 40
_FILLS = (ExecKind.FILL, ExecKind.PARTIAL_FILL)


def _accepted(i: int) -> SignalAccepted:
    return accepted("promo", i)


def _drain(sock: zmq.Socket, into: list) -> None:
    while sock.poll(0):
        into.append(broker_event_decoder.decode(sock.recv()))


def _published(client: redis.Redis, stream: str) -> list:
    """Every report the engine published, in order (each is appended to the events stream too)."""
    return [r for _, fields in client.xrange(stream) for r in unpack_reports(fields)]


def test_a_promotion_books_the_old_leaders_unpublished_fills_without_restating_them(make_config, redis_url):
    cfg = make_config()
    venue = PaperVenue(PaperVenueConfig(symbols=[PaperSymbol(symbol="AAPL", price=200.0)]))
    broker = BrokerHost("p", "127.0.0.1", venue)
    endpoint = broker.start()["orders"]
    signals = [_accepted(i) for i in range(N)]
    client = redis.Redis.from_url(redis_url)
    client.xadd(cfg.storage.signals_stream, {SIGNALS_FIELD: pack_batch([encode(a) for a in signals])})
    ctx = zmq.Context.instance()
    old_leader = ctx.socket(zmq.DEALER)
    old_leader.setsockopt(zmq.LINGER, 0)
    old_leader.connect(endpoint)
    standby = EngineHost(cfg, "b", EngineWiring(redis_url=redis_url, broker_endpoint=endpoint, role="standby"))
    try:
        # the old leader's orders reach the venue and fill; their reports go to it and no further
        taken: list = []
        for acc in signals:
            old_leader.send(encode(SubmitOrder(1, "a", intent_for(acc))))
        wait_for(lambda: _drain(old_leader, taken) or sum(r.kind is ExecKind.FILL for r in taken) == N)
        executions = {f.exec_id: f for f in venue.fills()}
        assert len(executions) == N

        standby.start()
        standby.promote(2)
        stream = cfg.storage.events_stream
        wait_for(lambda: {r.exec_id for r in _published(client, stream) if r.kind in _FILLS} >= set(executions))

        fills = [r for r in _published(client, stream) if r.kind in _FILLS]
        restated = [r for r in fills if not r.exec_id]
        assert not restated, "%d restated fills (no exec id) beside %d executions: %s" % (
            len(restated), len(executions), restated[0])
        assert sorted(r.exec_id for r in fills) == sorted(executions)  # each execution once
        by_request = {a.signal.request_id for a in signals}
        assert {r.request_id for r in fills} == by_request  # each names its signal
        assert standby.stats().recovered_adopted == N  # the path under test: the broker had them all
    finally:
        old_leader.close(0)
        standby.stop()
        broker.stop()
        client.delete(cfg.storage.signals_stream, cfg.storage.events_stream)
        client.close()


def test_a_promotion_logs_the_fills_the_old_leader_published_and_never_logged(make_config, redis_url):
    """The old leader publishes fills, the standby follows them, and the leader dies before its
    events flush: the promoted standby appends them to `execution.events` (the ledger's source)
    once each, under the exec id published, and never publishes them again."""
    cfg = make_config()
    stream = cfg.storage.events_stream
    with engine_pair(cfg, redis_url) as pair:
        client, venue, leader, standby, intakes = pair.client, pair.venue, pair.leader, pair.standby, pair.intakes
        signals = [_accepted(i) for i in range(N)]
        # the first half: published, followed and logged (the standby follows the leader by now)
        send_batch(client, cfg.storage.signals_stream, intakes, signals[:N // 2])
        wait_for(lambda: len({r.exec_id for r in _published(client, stream) if r.kind in _FILLS}) == N // 2
                 and len(standby._followed_execs) > 0)
        # the second half: published and followed; the leader dies before its flush (it never logs again)
        leader._flush_events = lambda: None
        send_batch(client, cfg.storage.signals_stream, intakes, signals[N // 2:])
        wait_for(lambda: len(venue.fills()) == N)
        executions = {f.exec_id for f in venue.fills()}
        wait_for(lambda: set(standby._followed_execs) >= executions)
        leader.stop()
        published = [(r.exec_id, r.client_order_id) for r in _published(client, stream) if r.kind in _FILLS]
        assert len(published) == N // 2  # the gap: half the executions published, not logged

        before = standby.published
        standby.promote(2)
        wait_for(lambda: len([r for r in _published(client, stream) if r.kind in _FILLS]) >= N)

        fills = [r for r in _published(client, stream) if r.kind in _FILLS]
        assert sorted(r.exec_id for r in fills) == sorted(executions)  # each execution once, the venue's id
        assert {r.request_id for r in fills} == {a.signal.request_id for a in signals}
        assert standby.published == before  # none published again to subscribers


def _followed_fill(i: int) -> ExecutionReport:
    return ExecutionReport(kind=ExecKind.FILL, client_order_id="NAE-f" + str(i), exec_id="X-" + str(i),
                           strategy_id="s" + str(i % 3), last_qty=1.0, last_px=200.0, cum_qty=1.0,
                           ts_ns=time.time_ns())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(logged=st.lists(st.booleans(), min_size=1, max_size=40), per_entry=st.integers(1, 7),
       pending=st.integers(0, 3))
def test_a_promotion_appends_the_followed_fills_the_stream_lacks_once_in_order(
        make_config, redis_url, logged, per_entry, pending):
    """Whatever the old leader logged of what it published (any subset, in entries of any size):
    the promotion puts exactly the rest in its next events flush, in the order followed, ahead of
    what it had pending; every followed exec id is then known logged (never logged again)."""
    cfg = make_config()
    host = EngineHost(cfg, "b", EngineWiring(redis_url=redis_url, broker_endpoint="tcp://127.0.0.1:1",
                                             role="standby"))
    client = host._open_streams()
    try:
        fills = [_followed_fill(i) for i in range(len(logged))]
        in_stream = [encode(f) for f, was in zip(fills, logged) if was]
        for at in range(0, len(in_stream), per_entry):
            host._log.append(in_stream[at:at + per_entry])
        for f in fills:
            host._followed_execs[f.exec_id] = False
            host._followed_fills.keep(f)
        ahead = [encode(_followed_fill(1000 + i)) for i in range(pending)]
        host._pending_events = list(ahead)

        host._log_followed_fills()

        assert host._pending_events == [encode(f) for f, was in zip(fills, logged) if not was] + ahead
        assert host.followed_logged == logged.count(False)
        assert all(host._followed_execs[f.exec_id] for f in fills) and not host._followed_fills
    finally:
        client.delete(cfg.storage.events_stream)
        client.close()


def test_an_unreadable_stream_appends_every_followed_fill(make_config):
    """Redis not answering the read: every followed fill goes in the next flush (a repeat the ledger
    dedupes by exec id, never a loss)."""
    cfg = make_config()
    host = EngineHost(cfg, "b", EngineWiring(redis_url="redis://127.0.0.1:1/0", broker_endpoint="tcp://127.0.0.1:1",
                                             role="standby"))
    host._open_streams().close()
    fills = [_followed_fill(i) for i in range(5)]
    for f in fills:
        host._followed_fills.keep(f)
    host._log_followed_fills()
    assert host._pending_events == [encode(f) for f in fills]
