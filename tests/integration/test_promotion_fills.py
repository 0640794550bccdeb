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

from actors.broker import BrokerHost
from actors.engine import EngineHost
from actors.wiring import EngineWiring
from adapters.engines.native import intent_for
from adapters.paper.venue import PaperVenue
from node.config import PaperSymbol, PaperVenueConfig
from node.messages import Action, ExecKind, Signal, SignalAccepted, SubmitOrder, broker_event_decoder, encode
from node.orders import signal_id_for
from node.streams import SIGNALS_FIELD, pack_batch, unpack_reports
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(120)

N = 40
_FILLS = (ExecKind.FILL, ExecKind.PARTIAL_FILL)


def _accepted(i: int) -> SignalAccepted:
    rid = "promo-" + str(i)
    sig = Signal(request_id=rid, strategy_id="s" + str(i % 3), timestamp=time.time(), symbol="AAPL",
                 action=(Action.BUY, Action.SELL)[i % 2], quantity=float(1 + i % 5))
    return SignalAccepted(signal_id_for(rid), time.time_ns(), sig)


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
