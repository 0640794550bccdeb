"""The engine host: accepted signals in (PULL), orders out to the broker (DEALER), events out (PUB).

It hosts an order manager (the native one by default), carries the epoch the supervisor granted,
publishes every report that changed an order on its events socket as multipart
[topic, msgpack ExecutionReport] with topic `<kind>/<strategy_id>/` (see `node.messages.event_topic`),
so a subscriber filters by kind and strategy at the publisher, and appends the same reports to `execution.events` in one
pipeline per wake-up (kept and retried while Redis is away, never dropped).
"""

from __future__ import annotations

import time
from typing import Callable

import zmq

from actors.service import LoopService, bind_random, tune
from adapters.engines.native import NativeOrderManager
from node.config import NodeConfig
from node.errors import StoreError
from node.messages import (
    ExecutionReport,
    OrdersReport,
    SubmitOrder,
    accepted_decoder,
    broker_event_decoder,
    encode,
    event_topic,
)
from node.streams import EVENTS_FIELD, StreamLog, connect_redis

_MAX_PENDING_EVENTS = 1_000_000


class EngineHost(LoopService):
    def __init__(
        self,
        cfg: NodeConfig,
        engine_name: str,
        redis_url: str | None,
        broker_endpoint: str,
        epoch: int = 1,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__()
        self.name = "engine:" + engine_name
        self._engine_name = engine_name
        self._cfg = cfg
        self._redis_url = redis_url
        self._broker_endpoint = broker_endpoint
        self.epoch = epoch
        self._clock_ns = clock_ns
        self.manager = NativeOrderManager()
        self._pending_events: list[bytes] = []
        self.signals = 0
        self.published = 0
        self.store_failures = 0
        self.events_dropped = 0

    def _open(self, ctx: zmq.Context) -> dict[str, str]:
        host = self._cfg.bind_host
        self._pull = tune(ctx.socket(zmq.PULL))
        intake = bind_random(self._pull, host)
        self._pub = tune(ctx.socket(zmq.PUB))
        events = bind_random(self._pub, host)
        self._dealer = tune(ctx.socket(zmq.DEALER))
        self._dealer.connect(self._broker_endpoint)
        self.poller.register(self._pull, zmq.POLLIN)
        self.poller.register(self._dealer, zmq.POLLIN)
        self._log = None
        if self._redis_url:
            self._log = StreamLog(
                connect_redis(self._redis_url),
                self._cfg.storage.events_stream,
                EVENTS_FIELD,
                self._cfg.storage.stream_maxlen,
            )
        return {"intake": intake, "events": events}

    def _close(self) -> None:
        for s in (self._pull, self._pub, self._dealer):
            s.close(0)

    def _on_wake(self, events: dict) -> None:
        if self._pull in events:
            self._take_signals()
        if self._dealer in events:
            self._take_reports()
        if self._pending_events and self._log is not None:
            self._flush_events()

    def _take_signals(self) -> None:
        recv = self._pull.recv
        send = self._dealer.send
        on_signal = self.manager.on_signal
        epoch, name = self.epoch, self._engine_name
        for _ in range(4096):
            try:
                frame = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            intent = on_signal(accepted_decoder.decode(frame))
            self.signals += 1
            if intent is not None:
                send(encode(SubmitOrder(epoch, name, intent)))

    def _take_reports(self) -> None:
        recv = self._dealer.recv
        pub = self._pub.send_multipart
        on_report = self.manager.on_report
        pending = self._pending_events
        for _ in range(4096):
            try:
                frame = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            msg = broker_event_decoder.decode(frame)
            if type(msg) is ExecutionReport:
                out = on_report(msg)
                if out is not None:
                    payload = encode(out)
                    pub((event_topic(out.kind, out.strategy_id), payload))
                    pending.append(payload)
                    self.published += 1
            elif type(msg) is OrdersReport:
                self.last_orders_report = msg

    def _flush_events(self) -> None:
        try:
            self._log.append(self._pending_events)
        except StoreError:
            self.store_failures += 1
            if len(self._pending_events) > _MAX_PENDING_EVENTS:
                self.events_dropped += len(self._pending_events) - _MAX_PENDING_EVENTS
                del self._pending_events[: len(self._pending_events) - _MAX_PENDING_EVENTS]
            return
        self._pending_events = []

    def stats(self) -> dict:
        m = self.manager
        return {
            "epoch": self.epoch,
            "signals": self.signals,
            "published": self.published,
            "in_flight": len(m.in_flight()),
            "duplicate_signals": m.duplicate_signals,
            "duplicate_fills": m.duplicate_fills,
            "ignored_reports": m.ignored_reports,
            "orphan_reports": m.orphan_reports,
            "pending_events": len(self._pending_events),
            "store_failures": self.store_failures,
            "events_dropped": self.events_dropped,
            "loop_errors": self.loop_errors,
        }
