"""The NautilusTrader engine as an engine of the node (`[[engines]] kind = "nautilus"`).

The kernel runs in a child process (`adapters/engines/nautilus/host.py`: it needs a main thread);
this host sits where every engine sits, so the supervisor treats it like any other:
- it binds the engine intake and relays every accepted signal of each batch to the child;
- it republishes the child's execution reports on the node's events relay and appends them to
  `execution.events` (one batch entry per wake-up), so subscribers, risk and the ledger see them;
- it heartbeats for the child, whatever the role: only while the child process is alive and this
  loop turns (a standby with a dead kernel is never chosen for a promotion);
- hot standby: a standby runs its kernel child too (started at `_open`; a cold Nautilus child costs
  ~2.7 s to start), takes the same signals and follows the leader's reports, but its exec client
  holds every order instead of sending it (`adapters/engines/nautilus/standby.py`). `promote(epoch)`
  replays the signal log after the checkpoint to the child (it drops what it has), then the child
  asks the broker under the new epoch, adopts the held orders the broker has and sends the others.
  The child hands over the newest fills it followed (`node.followed`): those `execution.events` lacks
  (the old leader published them and died or was fenced before its events flush) are appended once,
  ahead of the child's own reports, never published again (`EngineBase._log_followed`, as the native
  engine's promotion). As leader it writes its group's logged mark (`node.followed`) as the native
  engine does, so a standby promoted after it reads the events stream from the mark, not back by time.
  `demote()` makes the child hold again at once. A standby whose child died starts a new one.
"""

from __future__ import annotations

import time
from typing import Callable

import msgspec
import zmq

from actors.wiring import EngineWiring
from actors.engine_base import EngineBase
from actors.service import Heartbeats, bind_at, bind_random, tune
from adapters.engines.nautilus.config import NautilusEngineConfig
from adapters.engines.nautilus.host import NautilusEngineProcess
from node.config import NodeConfig
from node.control import ControlRefused
from node.followed import is_execution
from node.checkpoint import EntryCheckpoint
from node.logs import lifecycle, logger
from node.messages import AmendKind, batch_decoder, encode, report_decoder
from node.orders import client_order_id_for
from node.reasons import Reason
from node.stats import NautilusEngineStats
from node.streams import unpack_signals

STALE_EPOCH = Reason.STALE_EPOCH.value


#: the kernel child's cold start allowed (import, kernel build, connect); the host's own start waits
#: for it and a little more (10 s was too short for a kernel starting on a loaded host)
CHILD_READY_TIMEOUT_MS = 60_000


class NautilusEngineHost(EngineBase):
    start_timeout_s = CHILD_READY_TIMEOUT_MS / 1000.0 + 10.0

    def __init__(
        self, cfg: NodeConfig, engine_name: str, wiring: EngineWiring, clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        super().__init__(cfg, engine_name, wiring, clock_ns)
        self._follow_endpoint = wiring.follow_endpoint or ""
        self._child: NautilusEngineProcess | None = None
        self._to_child: zmq.Socket | None = None
        self._from_child: zmq.Socket | None = None
        self.relayed = 0
        self.replayed = 0
        self.to_child = 0  # frames sent to the current child (a promotion waits for all of them)
        self.child_starts = 0
        self.child_start_failures = 0
        self.child_ready_ms = 0.0  # the last child's cold start, spawn to ready
        self.last_promotion: dict = {}
        self.broker_switches = 0
        self._next_child_check = 0.0
        # the leader keeps `checkpoint` (the newest log entry whose orders all had a report), written
        # with the events as the native engine does, so a promotion replays only what may be unanswered
        self._replayed: set[str] = set()  # entries the last promotion replayed (their batches may still come)

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
        self._open_streams()
        self.poller.register(self._pull, zmq.POLLIN)
        if self.role == "leader" and self._recover:
            # a recovering leader (its first open only: a spawn Ray restarted opened above as a
            # standby, node.engine_opening) starts as a standby and promotes itself: it looks the log
            # after the checkpoint up at the broker instead of re-sending it blind
            self.role = "standby"
            self._start_child()
            self._promote_now(self.epoch)
        else:
            self._start_child()  # whatever the role: a standby's kernel is warm
        if self._heartbeat_endpoint:  # only while the kernel child lives (an engine without one is dead)
            Heartbeats(self, self._heartbeat_endpoint, self._cfg.heartbeat_interval_ms, self._child_alive).start()
        return {"intake": intake, "events": events}

    def _child_alive(self) -> bool:
        child = self._child
        return child is not None and child.alive()

    def _start_child(self) -> None:
        paper = self._cfg.broker.paper
        ncfg = NautilusEngineConfig(
            engine_name=self._engine_name,
            epoch=self.epoch,
            group=self.group,
            role=self.role,
            follow_endpoint=self._follow_endpoint,
            bind_host=self._cfg.bind_host,
            symbols=[s.symbol for s in paper.symbols],
            reference_prices={s.symbol: s.price for s in paper.symbols},
            ready_timeout_ms=CHILD_READY_TIMEOUT_MS,
            cancel_timeout_ms=self._cfg.cancel_timeout_ms,
        )
        self._drop_child()
        self._child = NautilusEngineProcess(ncfg, self._broker_endpoint)
        self.child_starts += 1
        child = self._child.start()
        self.child_ready_ms = round(self._child.ready_ms, 1)
        self.to_child = 0
        self._to_child = tune(self._ctx_ref.socket(zmq.PUSH))
        self._to_child.connect(child["intake"])
        self._from_child = self._ctx_ref.socket(zmq.SUB)
        self._from_child.setsockopt(zmq.LINGER, 0)
        self._from_child.setsockopt(zmq.RCVHWM, 0)
        self._from_child.connect(child["events"])
        self._from_child.setsockopt(zmq.SUBSCRIBE, b"")
        self.poller.register(self._from_child, zmq.POLLIN)
        time.sleep(0.1)  # let the subscription reach the child before its first report

    def _drop_child(self) -> None:
        """Close the sockets to the current child and reap it (a dead one, or before a new one)."""
        if self._from_child is not None:
            self.poller.unregister(self._from_child)
            self._from_child.close(0)
            self._from_child = None
        if self._to_child is not None:
            self._to_child.close(0)
            self._to_child = None
        if self._child is not None:
            self._child.kill()
            self._child = None

    def _revive_child(self) -> None:
        """A standby whose kernel died starts a new one (checked once a second; the loop blocks
        for the cold start, and the heartbeats say dead until it is up)."""
        now = time.monotonic()
        if now < self._next_child_check:
            return
        self._next_child_check = now + 1.0
        if self.role == "leader" or self._child_alive():
            return  # a leader without a kernel stops beating: the supervisor fails it over
        try:
            self._start_child()
        except Exception:  # noqa: BLE001 - counted; tried again later
            self.child_start_failures += 1
            self._next_child_check = now + 5.0

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
        self._revive_child()
        if (self._pending_events or self.checkpoint.changed or (self._logged_mark and self.role == "leader")) \
                and self._log is not None:
            self._flush_events()  # whatever the role: a demoted child's last reports too

    def _take_signals(self) -> None:
        recv = self._pull.recv
        for _ in range(1024):
            try:
                frame = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            for entry_id, signals in self._with_gap(batch_decoder.decode(frame)):
                self._take_entry(entry_id, signals)

    def _take_entry(self, entry_id: str, signals: list) -> None:
        self.signals += len(signals)
        # cancels and replaces go to the kernel too (the bridge strategy carries them out)
        mine = self._mine(signals)
        if self._to_child is not None:  # a standby's child holds them (see module doc)
            send = self._to_child.send
            for acc in mine:
                send(encode(acc))
            self.relayed += len(mine)
            self.to_child += len(mine)
        if self.role == "leader" and entry_id not in self._replayed:
            # a cancel is not waited for (its answer is the original's report); a replace is: its
            # own id gets the new order's reports or the refusal
            self.checkpoint.add_entry(entry_id, [client_order_id_for(a.signal_id) for a in mine
                                                 if a.signal.amend is None
                                                 or a.signal.amend.kind is AmendKind.REPLACE])

    def _take_reports(self) -> None:
        """The child's reports, whatever the role: a standby child publishes nothing, so all that
        arrives was published by a submitting child (including the last ones before a demotion)."""
        recv = self._from_child.recv_multipart
        for _ in range(4096):
            try:
                topic, payload = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._pub.send_multipart((topic, payload))
            self._pending_events.append(payload)
            self.published += 1
            rep = report_decoder.decode(payload)
            if is_execution(rep):  # the logged mark's candidate (node.followed)
                self._last_exec = rep.exec_id
            if rep.reason != STALE_EPOCH:  # a refusal of a fenced epoch answers nothing
                self.checkpoint.answered(rep.client_order_id)

    def _replay(self) -> None:
        """The signal log after the checkpoint, to the child: what the old leader may not have sent."""
        if self._signals is None or self._to_child is None:
            return
        saved = self._signals.get(self._checkpoint_key)
        position = saved.decode() if saved else "0"
        self.checkpoint = EntryCheckpoint(position)
        self._replayed = set()
        while True:
            entries = self._signals.entries_after(position, 500)
            if not entries:
                return
            for entry_id, fields in entries:
                for acc in self._mine(unpack_signals(fields)):
                    self._to_child.send(encode(acc))
                    self.replayed += 1
                    self.to_child += 1
                # the child's promotion asks the broker about every order it holds and re-sends
                # what the broker lacks, so a replayed entry counts as answered (a gap: a re-sent
                # order's answer is not waited for; the next leader asks about what it holds)
                self.checkpoint.add_entry(entry_id.decode(), [])
                self._replayed.add(entry_id.decode())
            position = entries[-1][0]

    # ---------------------------------------------------------------- control

    def promote(self, epoch: int) -> dict:
        """Become the leader with `epoch`: the log after the checkpoint to the (warm) child, then the
        child's own promotion. On failure the engine stays a standby (the supervisor tries again)."""

        return self.call_on_loop(lambda: self._promote_now(epoch), timeout_s=120)

    def _promote_now(self, epoch: int) -> dict:
        t0 = time.perf_counter_ns()
        cold = not self._child_alive()
        if cold:  # no warm kernel (it died and is not back yet): pay the cold start now
            self._start_child()
        replayed = self.replayed
        self._last_exec, self._logged_mark = "", b""  # marks of a term as leader before: not this term's
        self._replay()
        out = self._child.promote(epoch, self.to_child)
        logged = self.followed_logged
        self._log_followed(out.followed)  # ahead of the child's own reports (none taken yet)
        self.epoch = epoch
        self.role = "leader"
        took_us = (time.perf_counter_ns() - t0) // 1000
        self.last_promotion = {"epoch": epoch, "took_us": took_us, "cold": cold,
                               "replayed": self.replayed - replayed, "resent": out.resent,
                               "adopted": out.adopted, "in_flight": out.in_flight, "swept": out.swept,
                               "amend_cancels": out.amend_cancels, "amend_refused": out.amend_refused,
                               "amend_adopted": out.amend_adopted, "child_ms": out.took_ms,
                               "followed": len(out.followed), "followed_logged": self.followed_logged - logged}
        return {**self.last_promotion, "redriven": out.resent}

    def demote(self) -> None:
        """Stop submitting: the child holds from now on (it answers before this returns)."""

        def run() -> None:
            self.role = "standby"
            if self._child_alive():
                self._child.demote()
            self._take_reports()  # what it published before it stopped

        self.call_on_loop(run)

    def resync(self) -> dict:
        return {"role": self.role, "note": "the Nautilus kernel reconciles with the broker itself"}

    def switch_broker(self, endpoint: str, epoch: int, same_account: bool) -> dict:
        """The group moved to the broker adapter at `endpoint` (EngineControl). The kernel child is
        bound to its broker at start, so a new child starts against the new adapter: a standby's
        holds; a leader's is promoted under `epoch` (the log after the checkpoint replayed, the new
        adapter asked, what it lacks re-sent with the same ids). Across accounts nothing may be
        re-sent blind and this host cannot strand orders: refused before anything changes (the
        supervisor keeps such a group on its broker and restarts the adapter instead)."""

        def run() -> dict:
            if not same_account:
                raise ControlRefused(self.name + ": a Nautilus engine cannot move between accounts "
                                     "(it would re-send blind what the lost broker never answered)")
            t0 = time.perf_counter_ns()
            self._broker_endpoint = endpoint
            self.broker_switches += 1
            leading = self.role == "leader"
            self.role = "standby"  # the new child holds until promoted
            self._start_child()
            if not leading:
                return {"role": self.role}
            out = self._promote_now(epoch)
            return {"role": self.role, "epoch": epoch, "stranded": 0, "redriven": out["redriven"],
                    "took_us": (time.perf_counter_ns() - t0) // 1000}

        return self.call_on_loop(run, timeout_s=120)

    def cancel_open(self, strategy_id: str | None = None) -> dict:
        """The kill switch's `--cancel-open` (EngineControl): a leader's kernel child cancels its
        open orders (of one strategy, or all) through Nautilus; a standby cancels nothing."""

        def run() -> dict:
            if self.role != "leader" or self._child is None:
                return {"role": self.role, "canceled": 0}
            out = self._child.cancel_open(strategy_id)
            lifecycle(logger(self.name), "cancel_open", strategy_id=strategy_id or "*", orders=out.canceled)
            return {"role": self.role, "canceled": out.canceled, "client_order_ids": list(out.client_order_ids)}

        return self.call_on_loop(run)

    def settle_stranded(self, endpoint: str) -> dict:
        """Nothing to settle (EngineControl): this host never strands an order (see switch_broker)."""
        return {"role": self.role, "stranded": 0}

    def stats(self) -> NautilusEngineStats:
        child: dict = {}
        if self._child is not None and self._child.alive():
            try:  # the child's control socket is the loop's
                child = msgspec.to_builtins(self.call_on_loop(self._child.stats))
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                child = {"error": type(exc).__name__}
        return NautilusEngineStats(
            kind="nautilus",
            role=self.role,
            epoch=self.epoch,
            signals=self.signals,
            relayed=self.relayed,
            replayed=self.replayed,
            child_starts=self.child_starts,
            broker_switches=self.broker_switches,
            child_start_failures=self.child_start_failures,
            child_ready_ms=self.child_ready_ms,
            last_promotion=dict(self.last_promotion),
            published=self.published,
            pending_events=len(self._pending_events),
            store_failures=self.store_failures,
            followed_logged=self.followed_logged,
            followed_from_mark=self.followed_from_mark,
            gaps_filled=self.gaps_filled,
            gap_signals=self.gap_signals,
            loop_errors=self.loop_errors,
            last_error=self.last_error,
            child_pid=self._child.pid if self._child is not None else None,
            child=child,
        )
