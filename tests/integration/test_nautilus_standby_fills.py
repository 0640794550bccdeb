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
import zmq

from actors.broker import BrokerHost
from actors.engine import EngineHost
from actors.nautilus_engine import NautilusEngineHost
from actors.wiring import EngineWiring
from adapters.paper.venue import PaperVenue
from node.checkpoint import checkpoint_key
from node.config import PaperSymbol, PaperVenueConfig
from node.messages import Action, ExecKind, Signal, SignalAccepted, SignalBatch, encode
from node.open_orders import open_orders_key
from node.orders import client_order_id_for, signal_id_for
from node.streams import SIGNALS_FIELD, pack_batch, unpack_reports
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(180)

N = 40  # the old leader's orders: the first half logged, the second half published only
OWN = 4  # orders the old leader never had (logged after it died): the new leader's own reports
_FILLS = (ExecKind.FILL, ExecKind.PARTIAL_FILL)


def _accepted(i: int) -> SignalAccepted:
    rid = "ntfill-" + str(time.time_ns()) + "-" + str(i)
    sig = Signal(request_id=rid, strategy_id="s" + str(i % 3), timestamp=time.time(), symbol="AAPL",
                 action=(Action.BUY, Action.SELL)[i % 2], quantity=float(1 + i % 5))  # whole shares
    return SignalAccepted(signal_id_for(rid), time.time_ns(), sig)


def _send(client: redis.Redis, stream: str, intakes: list[zmq.Socket], signals: list[SignalAccepted]) -> None:
    """One validator wake-up: the batch logged in `execution.signals`, then pushed to every engine."""
    entry_id = client.xadd(stream, {SIGNALS_FIELD: pack_batch([encode(a) for a in signals])}).decode()
    for sock in intakes:
        sock.send(encode(SignalBatch(entry_id, signals)))


def _logged_fills(client: redis.Redis, stream: str) -> list:
    """The fills in the events stream, in order."""
    return [r for _, fields in client.xrange(stream) for r in unpack_reports(fields) if r.kind in _FILLS]


def _kernel(host: NautilusEngineHost) -> dict:
    return host.stats().child


def test_a_promoted_nautilus_standby_logs_the_fills_the_old_leader_published_and_never_logged(
        make_config, redis_url):
    cfg = make_config()
    venue = PaperVenue(PaperVenueConfig(symbols=[PaperSymbol(symbol="AAPL", price=200.0)]))
    broker = BrokerHost("p", "127.0.0.1", venue)
    endpoint = broker.start()["orders"]
    client = redis.Redis.from_url(redis_url)
    stream = cfg.storage.events_stream
    leader = EngineHost(cfg, "a", EngineWiring(redis_url=redis_url, broker_endpoint=endpoint, role="leader"))
    standby = NautilusEngineHost(cfg, "b", EngineWiring(redis_url=redis_url, broker_endpoint=endpoint,
                                                        role="standby", follow_endpoint=leader.start()["events"]))
    ctx = zmq.Context.instance()
    intakes: list[zmq.Socket] = []
    try:
        standby.start()  # its kernel child starts warm and follows the leader's events
        for host in (leader, standby):
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(host.endpoints["intake"])
            intakes.append(sock)
        signals = [_accepted(i) for i in range(N + OWN)]
        # the first half: published, followed by the kernel child and logged
        _send(client, cfg.storage.signals_stream, intakes, signals[:N // 2])
        wait_for(lambda: len(_logged_fills(client, stream)) == N // 2)
        wait_for(lambda: _kernel(standby).get("followed_fills", 0) == N // 2)
        # the second half: published and followed; the leader stops flushing (it never logs again)
        leader._flush_events = lambda: None
        _send(client, cfg.storage.signals_stream, intakes, signals[N // 2:N])
        wait_for(lambda: len(venue.fills()) == N)
        executions = {f.exec_id for f in venue.fills()}
        wait_for(lambda: _kernel(standby).get("followed_fills", 0) == N)
        leader.stop()
        assert len(_logged_fills(client, stream)) == N // 2  # the gap: half the executions published, not logged
        # orders logged after the leader died: the standby holds them, its promotion sends them
        _send(client, cfg.storage.signals_stream, intakes[1:], signals[N:])

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
    finally:
        for sock in intakes:
            sock.close(0)
        leader.stop()
        standby.stop()
        broker.stop()
        client.delete(cfg.storage.signals_stream, stream, checkpoint_key(cfg.node_id, "default"),
                      open_orders_key(cfg.node_id, "default"))
        client.close()
