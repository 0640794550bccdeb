"""A native leader and a hot standby in-process, before the paper venue behind a real broker adapter,
with a PUSH to each engine's intake as the validator has (no Ray): what the promotion and gap tests
play the validator and the old leader against."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import redis
import zmq

from actors.broker import BrokerHost
from actors.engine import EngineHost
from actors.wiring import EngineWiring
from adapters.paper.venue import PaperVenue
from node.checkpoint import checkpoint_key
from node.config import PaperSymbol, PaperVenueConfig
from node.messages import Action, Signal, SignalAccepted, SignalBatch, encode
from node.open_orders import open_orders_key
from node.orders import signal_id_for
from node.streams import SIGNALS_FIELD, pack_batch


def accepted(prefix: str, i: int) -> SignalAccepted:
    """The i-th accepted signal of a test: AAPL, buys and sells in turn, three strategies."""
    rid = prefix + "-" + str(i)
    sig = Signal(request_id=rid, strategy_id="s" + str(i % 3), timestamp=time.time(), symbol="AAPL",
                 action=(Action.BUY, Action.SELL)[i % 2], quantity=float(1 + i % 5))
    return SignalAccepted(signal_id_for(rid), time.time_ns(), sig)


def send_batch(client: redis.Redis, stream: str, intakes: list[zmq.Socket], signals: list[SignalAccepted]) -> str:
    """One validator wake-up: the batch logged in `execution.signals`, then pushed to every engine."""
    entry_id = client.xadd(stream, {SIGNALS_FIELD: pack_batch([encode(a) for a in signals])}).decode()
    for sock in intakes:
        sock.send(encode(SignalBatch(entry_id, signals)))
    return entry_id


class LoggingValidator:
    """What the validator does with a batch: append it, then push it to every engine naming the
    entry before it (its tip starts at "0", as the validator's on an empty log); `logged_only`
    appends and pushes nothing (killed before its forward); `to` pushes to those intakes alone."""

    def __init__(self, client: redis.Redis, stream: str, intakes: list[zmq.Socket]) -> None:
        self._client, self._stream, self._intakes = client, stream, intakes
        self.tip = "0"
        self.batches: dict[str, bytes] = {}  # entry id -> the batch as pushed (to push again late)

    def append(self, signals: list[SignalAccepted], logged_only: bool = False,
               to: list[zmq.Socket] | None = None) -> str:
        entry_id = self._client.xadd(self._stream, {SIGNALS_FIELD: pack_batch([encode(a) for a in signals])}).decode()
        prev, self.tip = self.tip, entry_id
        self.batches[entry_id] = encode(SignalBatch(entry_id, signals, prev))
        if not logged_only:
            for sock in self._intakes if to is None else to:
                sock.send(self.batches[entry_id])
        return entry_id


@dataclass
class EnginePair:
    venue: PaperVenue
    broker: BrokerHost
    client: redis.Redis
    leader: EngineHost
    standby: object  # EngineHost or NautilusEngineHost
    intakes: list[zmq.Socket]  # [leader's, standby's]


@contextmanager
def engine_pair(cfg, redis_url: str, standby_cls: type = EngineHost) -> Iterator[EnginePair]:
    """Leader "a" (native) and standby "b" (`standby_cls`, following the leader), both started; all
    stopped and the node's streams and keys deleted afterwards."""
    venue = PaperVenue(PaperVenueConfig(symbols=[PaperSymbol(symbol="AAPL", price=200.0)]))
    broker = BrokerHost("p", "127.0.0.1", venue)
    endpoint = broker.start()["orders"]
    client = redis.Redis.from_url(redis_url)
    leader = EngineHost(cfg, "a", EngineWiring(redis_url=redis_url, broker_endpoint=endpoint, role="leader"))
    standby = standby_cls(cfg, "b", EngineWiring(redis_url=redis_url, broker_endpoint=endpoint, role="standby",
                                                 follow_endpoint=leader.start()["events"]))
    intakes: list[zmq.Socket] = []
    try:
        standby.start()
        for host in (leader, standby):
            sock = zmq.Context.instance().socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(host.endpoints["intake"])
            intakes.append(sock)
        yield EnginePair(venue, broker, client, leader, standby, intakes)
    finally:
        for sock in intakes:
            sock.close(0)
        leader.stop()
        standby.stop()
        broker.stop()
        client.delete(cfg.storage.signals_stream, cfg.storage.events_stream, checkpoint_key(cfg.node_id, "default"),
                      open_orders_key(cfg.node_id, "default"))
        client.close()
