"""The NautilusTrader engine as an engine of the node (`[[engines]] kind = "nautilus"`).

The kernel runs in a child process (`adapters/engines/nautilus/host.py`: it needs a main thread);
this host sits where every engine sits, so the supervisor treats it like any other:
- it binds the engine intake and relays every accepted signal of each batch to the child;
- it republishes the child's execution reports on the node's events relay and appends them to
  `execution.events` (one batch entry per wake-up), so subscribers, risk and the ledger see them;
- it heartbeats for the child: only while the child process is alive and this loop turns;
- leader only: a standby keeps no kernel running (a cold Nautilus child costs ~2.7 s to start and a
  core to run); `promote(epoch)` starts it with the epoch and replays the signal log after the
  checkpoint to it (the child and the broker gate drop what they already have).
"""

from __future__ import annotations

import time
from typing import Callable

import zmq

from actors.wiring import EngineWiring
from actors.service import Heartbeats, LoopService, bind_at, bind_random, tune
from adapters.engines.nautilus.config import NautilusEngineConfig
from adapters.engines.nautilus.host import NautilusEngineProcess
from node.config import NodeConfig
from node.checkpoint import checkpoint_key
from node.errors import StoreError
from node.router import Router
from node.messages import batch_decoder, encode
from node.streams import EVENTS_FIELD, SIGNALS_FIELD, StreamLog, connect_redis, pack_batch, unpack_signals


class NautilusEngineHost(LoopService):
    def __init__(
        self, cfg: NodeConfig, engine_name: str, wiring: EngineWiring, clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        super().__init__()
        self.name = "engine:" + engine_name
        self._engine_name = self.engine_name = engine_name
        self._cfg = cfg
        self._redis_url = wiring.redis_url
        self._broker_endpoint = wiring.broker_endpoint
        self._publish_endpoint = wiring.publish_endpoint
        self.epoch = wiring.epoch
        self.role = wiring.role
        self._heartbeat_endpoint = wiring.heartbeat_endpoint
        self._port = wiring.port
        self._recover = wiring.recover
        self._clock_ns = clock_ns
        self.group = wiring.group
        self._router = Router.from_config(cfg)
        self._checkpoint_key = checkpoint_key(cfg.node_id, wiring.group)
        self._child: NautilusEngineProcess | None = None
        self._to_child: zmq.Socket | None = None
        self._from_child: zmq.Socket | None = None
        self._pending_events: list[bytes] = []
        self.signals = 0
        self.relayed = 0
        self.published = 0
        self.replayed = 0
        self.store_failures = 0

    # ---------------------------------------------------------------- sockets and the child

    def _open(self, ctx: zmq.Context) -> dict[str, str]:
        host = self._cfg.bind_host
        self._ctx_ref = ctx
        self._pull = tune(ctx.socket(zmq.PULL))
        intake = bind_at(self._pull, host, self._port)
        self._pub = tune(ctx.socket(zmq.PUB))
        if self._publish_endpoint:
            self._pub.connect(self._publish_endpoint)
            events = self._publish_endpoint
        else:
            events = bind_random(self._pub, host)
        self._log = self._signals = None
        if self._redis_url:
            client = connect_redis(self._redis_url)
            st = self._cfg.storage
            self._log = StreamLog(client, st.events_stream, EVENTS_FIELD, st.stream_maxlen)
            self._signals = StreamLog(client, st.signals_stream, SIGNALS_FIELD, st.stream_maxlen)
        self.poller.register(self._pull, zmq.POLLIN)
        if self.role == "leader":
            self._start_child()
            if self._recover:
                self._replay()
        if self._heartbeat_endpoint:  # only while the kernel child lives (a leader without one is dead)
            child_alive = lambda: self.role != "leader" or (self._child is not None and self._child.alive())  # noqa: E731
            Heartbeats(self, self._heartbeat_endpoint, self._cfg.heartbeat_interval_ms, child_alive).start()
        return {"intake": intake, "events": events}

    def _start_child(self) -> None:
        paper = self._cfg.broker.paper
        ncfg = NautilusEngineConfig(
            engine_name=self._engine_name,
            epoch=self.epoch,
            group=self.group,
            bind_host=self._cfg.bind_host,
            symbols=[s.symbol for s in paper.symbols],
            reference_prices={s.symbol: s.price for s in paper.symbols},
        )
        self._child = NautilusEngineProcess(ncfg, self._broker_endpoint)
        child = self._child.start()
        self._to_child = tune(self._ctx_ref.socket(zmq.PUSH))
        self._to_child.connect(child["intake"])
        self._from_child = self._ctx_ref.socket(zmq.SUB)
        self._from_child.setsockopt(zmq.LINGER, 0)
        self._from_child.setsockopt(zmq.RCVHWM, 0)
        self._from_child.connect(child["events"])
        self._from_child.setsockopt(zmq.SUBSCRIBE, b"")
        self.poller.register(self._from_child, zmq.POLLIN)
        time.sleep(0.1)  # let the subscription reach the child before its first report

    def _close(self) -> None:
        for s in (self._pull, self._pub, self._to_child, self._from_child):
            if s is not None:
                s.close(0)
        if self._child is not None:
            self._child.stop()

    # ---------------------------------------------------------------- the loop

    def _poll_timeout_ms(self) -> int:
        return 10

    def _on_wake(self, events: dict) -> None:
        if self._pull in events:
            self._take_signals()
        if self._from_child is not None and self._from_child in events:
            self._take_reports()
        if self._pending_events and self._log is not None:
            try:
                self._log.append_packed(pack_batch(self._pending_events))
                self._pending_events = []
            except StoreError:
                self.store_failures += 1

    def _take_signals(self) -> None:
        recv = self._pull.recv
        for _ in range(1024):
            try:
                frame = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            batch = batch_decoder.decode(frame)
            self.signals += len(batch.signals)
            if self.role == "leader" and self._to_child is not None:
                for acc in self._mine(batch.signals):
                    self._to_child.send(encode(acc))
                    self.relayed += 1

    def _mine(self, signals: list) -> list:
        """The signals routed to this engine's group (node.router)."""
        if self._router.single:
            return signals
        route, group = self._router.group_of, self.group
        return [acc for acc in signals if route(acc.signal.strategy_id, acc.signal.symbol) == group]

    def _take_reports(self) -> None:
        recv = self._from_child.recv_multipart
        for _ in range(4096):
            try:
                topic, payload = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._pub.send_multipart((topic, payload))
            self._pending_events.append(payload)
            self.published += 1

    def _replay(self) -> None:
        """The signal log after the checkpoint, to the child: what the old leader may not have sent."""
        if self._signals is None or self._to_child is None:
            return
        saved = self._signals.get(self._checkpoint_key)
        position = saved.decode() if saved else "0"
        while True:
            entries = self._signals.entries_after(position, 500)
            if not entries:
                return
            for _, fields in entries:
                for acc in self._mine(unpack_signals(fields)):
                    self._to_child.send(encode(acc))
                    self.replayed += 1
            position = entries[-1][0]

    # ---------------------------------------------------------------- control

    def promote(self, epoch: int) -> dict:
        def run() -> dict:
            t0 = time.perf_counter_ns()
            self.epoch = epoch
            if self._child is None:
                self._start_child()
            else:
                self._child.set_epoch(epoch)
            self.role = "leader"
            self._replay()
            return {"epoch": epoch, "took_us": (time.perf_counter_ns() - t0) // 1000, "redriven": self.replayed}

        return self.call_on_loop(run, timeout_s=120)

    def demote(self) -> None:
        def run() -> None:
            self.role = "standby"

        self.call_on_loop(run)

    def resync(self) -> dict:
        return {"role": self.role, "note": "the Nautilus kernel reconciles with the broker itself"}

    def stats(self) -> dict:
        child = {}
        if self._child is not None and self._child.alive():
            try:
                child = self.call_on_loop(self._child.stats)  # the child's control socket is the loop's
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                child = {"error": type(exc).__name__}
        return {
            "kind": "nautilus",
            "role": self.role,
            "epoch": self.epoch,
            "signals": self.signals,
            "relayed": self.relayed,
            "replayed": self.replayed,
            "published": self.published,
            "pending_events": len(self._pending_events),
            "store_failures": self.store_failures,
            "loop_errors": self.loop_errors,
            "child_pid": self._child.pid if self._child is not None else None,
            "child": child,
        }
