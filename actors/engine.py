"""The engine host: accepted signal batches in (PULL), orders out to the broker (DEALER), events out (PUB).

It hosts an order manager (the native one by default) and carries the epoch the supervisor
granted. Every report that changed an order is published as multipart [topic, msgpack
ExecutionReport], topic `<kind>/<strategy_id>/` (see `node.messages.event_topic`), and appended to
`execution.events`, one batch entry per wake-up (kept and retried while Redis is away).

Recovery (`recover=True`, used on every start but the very first): before taking live signals the
engine asks the broker for every order it has (QueryOrders), reads the `execution.signals`
entries after its checkpoint, adopts the orders the broker already has and submits the others
with the same client order ids. The checkpoint (see `node.checkpoint`) is written with the event
batch, in the same round trip.
"""

from __future__ import annotations

import time
from typing import Callable

import zmq

from actors.service import LoopService, bind_random, tune
from adapters.engines.native import NativeOrderManager
from node.checkpoint import EntryCheckpoint
from node.config import NodeConfig
from node.errors import StoreError
from node.messages import (
    ExecutionReport,
    OrdersReport,
    QueryOrders,
    SignalAccepted,
    SubmitOrder,
    batch_decoder,
    broker_event_decoder,
    encode,
    event_topic,
)
from node.streams import EVENTS_FIELD, SIGNALS_FIELD, StreamLog, connect_redis, pack_batch, unpack_signals

_MAX_PENDING_EVENTS = 1_000_000
_QUERY_TIMEOUT_MS = 5_000


class EngineHost(LoopService):
    def __init__(
        self,
        cfg: NodeConfig,
        engine_name: str,
        redis_url: str | None,
        broker_endpoint: str,
        publish_endpoint: str | None = None,
        epoch: int = 1,
        recover: bool = False,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__()
        self.name = "engine:" + engine_name
        self._engine_name = engine_name
        self._cfg = cfg
        self._redis_url = redis_url
        self._broker_endpoint = broker_endpoint
        self._publish_endpoint = publish_endpoint
        self.epoch = epoch
        self._recover = recover
        self._clock_ns = clock_ns
        self.manager = NativeOrderManager()
        self.checkpoint = EntryCheckpoint()
        self._checkpoint_key = cfg.node_id + ".engine.checkpoint"
        self._pending_events: list[bytes] = []
        self.signals = 0
        self.published = 0
        self.recovered_submitted = 0
        self.recovered_adopted = 0
        self.store_failures = 0
        self.events_dropped = 0

    # ---------------------------------------------------------------- sockets

    def _open(self, ctx: zmq.Context) -> dict[str, str]:
        host = self._cfg.bind_host
        self._pull = tune(ctx.socket(zmq.PULL))
        intake = bind_random(self._pull, host)
        self._pub = tune(ctx.socket(zmq.PUB))
        if self._publish_endpoint:  # through the node's events relay (a stable address)
            self._pub.connect(self._publish_endpoint)
            events = self._publish_endpoint
            time.sleep(0.1)  # let the relay pass the subscriptions up before the first report
        else:
            events = bind_random(self._pub, host)
        self._dealer = tune(ctx.socket(zmq.DEALER))
        self._dealer.connect(self._broker_endpoint)
        self._log = self._signals = None
        if self._redis_url:
            client = connect_redis(self._redis_url)
            st = self._cfg.storage
            self._log = StreamLog(client, st.events_stream, EVENTS_FIELD, st.stream_maxlen)
            self._signals = StreamLog(client, st.signals_stream, SIGNALS_FIELD, st.stream_maxlen)
            saved = client.get(self._checkpoint_key)
            if saved:
                self.checkpoint = EntryCheckpoint(saved.decode())
        if self._recover:
            self._recover_in_flight()
        self.poller.register(self._pull, zmq.POLLIN)
        self.poller.register(self._dealer, zmq.POLLIN)
        return {"intake": intake, "events": events}

    def _close(self) -> None:
        for s in (self._pull, self._pub, self._dealer):
            s.close(0)

    # ---------------------------------------------------------------- the loop

    def _on_wake(self, events: dict) -> None:
        if self._pull in events:
            self._take_signals()
        if self._dealer in events:
            self._take_reports()
        if (self._pending_events or self.checkpoint.changed) and self._log is not None:
            self._flush_events()

    def _take_signals(self) -> None:
        recv = self._pull.recv
        for _ in range(1024):
            try:
                frame = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            batch = batch_decoder.decode(frame)
            self._submit_batch(batch.entry_id, batch.signals)

    def _submit_batch(self, entry_id: str, signals: list[SignalAccepted], known: dict | None = None) -> None:
        send = self._dealer.send
        on_signal = self.manager.on_signal
        epoch, name = self.epoch, self._engine_name
        waiting = []
        for acc in signals:
            intent = on_signal(acc)
            self.signals += 1
            if intent is None:
                continue
            snap = known.get(intent.client_order_id) if known else None
            if snap is not None:
                recovered = self.manager.adopt(snap)
                if recovered is not None:
                    self._publish(recovered)
                self.recovered_adopted += 1
                continue
            send(encode(SubmitOrder(epoch, name, intent)))
            waiting.append(intent.client_order_id)
            if known is not None:
                self.recovered_submitted += 1
        self.checkpoint.add_entry(entry_id, waiting)

    def _take_reports(self) -> None:
        recv = self._dealer.recv
        for _ in range(4096):
            try:
                frame = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            msg = broker_event_decoder.decode(frame)
            if type(msg) is ExecutionReport:
                self._on_report(msg)

    def _on_report(self, msg: ExecutionReport) -> None:
        self.checkpoint.answered(msg.client_order_id)
        out = self.manager.on_report(msg)
        if out is not None:
            self._publish(out)

    def _publish(self, out: ExecutionReport) -> None:
        payload = encode(out)
        self._pub.send_multipart((event_topic(out.kind, out.strategy_id), payload))
        self._pending_events.append(payload)
        self.published += 1

    def _flush_events(self) -> None:
        cp = self.checkpoint
        also = (self._checkpoint_key, cp.position.encode()) if cp.changed else None
        try:
            if self._pending_events:
                self._log.append_packed(pack_batch(self._pending_events), also)
            elif also is not None:
                self._log.set(*also)
        except StoreError:
            self._note_store_failure()
            return
        cp.changed = False
        self._pending_events = []

    def _note_store_failure(self) -> None:
        self.store_failures += 1
        excess = len(self._pending_events) - _MAX_PENDING_EVENTS
        if excess > 0:
            self.events_dropped += excess
            del self._pending_events[:excess]

    # ---------------------------------------------------------------- recovery

    def _recover_in_flight(self) -> None:
        """Ask the broker, then replay the signal entries after the checkpoint (see module doc)."""
        self._dealer.send(encode(QueryOrders(self.epoch, self._engine_name)))
        known: dict = {}
        early: list[ExecutionReport] = []
        deadline = time.monotonic() + _QUERY_TIMEOUT_MS / 1000
        while time.monotonic() < deadline:
            if not self._dealer.poll(100):
                continue
            msg = broker_event_decoder.decode(self._dealer.recv())
            if type(msg) is OrdersReport:
                known = {s.client_order_id: s for s in msg.orders}
                break
            if type(msg) is ExecutionReport:
                early.append(msg)
        else:
            raise TimeoutError(self.name + ": the broker did not list its orders within 5 s; not trading blind")
        if self._signals is not None:
            position = self.checkpoint.position
            while True:
                entries = self._signals.entries_after(position, 500)
                if not entries:
                    break
                for entry_id, fields in entries:
                    self._submit_batch(entry_id.decode(), unpack_signals(fields), known)
                position = entries[-1][0]
        for msg in early:
            self._on_report(msg)

    # ---------------------------------------------------------------- control

    def stats(self) -> dict:
        m = self.manager
        return {
            "epoch": self.epoch,
            "signals": self.signals,
            "published": self.published,
            "in_flight": len(m.in_flight()),
            "checkpoint": self.checkpoint.position,
            "recovered_submitted": self.recovered_submitted,
            "recovered_adopted": self.recovered_adopted,
            "duplicate_signals": m.duplicate_signals,
            "duplicate_fills": m.duplicate_fills,
            "ignored_reports": m.ignored_reports,
            "orphan_reports": m.orphan_reports,
            "pending_events": len(self._pending_events),
            "store_failures": self.store_failures,
            "events_dropped": self.events_dropped,
            "loop_errors": self.loop_errors,
        }
