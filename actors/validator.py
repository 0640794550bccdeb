"""The validator: ZeroMQ intake (ROUTER), the signal gate, the durable append, ACK/REJECT, forward.

Per round: drain up to `batch_max` frames, run each through the gate, append every accepted
signal to `execution.signals` as one batch entry (one round trip), send every reply and forward that
batch with its entry id to the engines. A signal is ACKed only after its append returned. Group
commit: while a round's append is on the wire, the next round's frames are checked; then the first
round's answer is read, its replies sent, and only then the next append sent (one in flight, so
batches are logged and forwarded in intake order). Up to `_PIPELINE_ROUNDS` rounds a wake-up.

The append's outcome (`node.fenced_log`): Redis refused it -> the batch's acceptances become REJECTED
STORE_UNAVAILABLE and are forgotten, so a retry works. No answer (a stalled Redis may still apply it)
-> ERROR STORE_OUTCOME_UNKNOWN, the batch is *in doubt*: its ids answer retries the same way, its risk
stays reserved, and no new batch is appended (new signals: REJECTED STORE_UNAVAILABLE, nothing sent)
until Redis answers a `settle`, which fences the stalled append off and finds the batch in the log
(then ACCEPTED and forwarded) or not (forgotten: a retry is admitted afresh). A signal answered
REJECTED is never in the log. A wake-up that fails half-way undoes its acceptances, so no signal is
left remembered as ACCEPTED but never logged, forwarded or answered.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import deque
from typing import Any, Callable

import msgspec
import zmq

from actors.service import LoopService, bind_at, followed_reports, tune
from node.config import NodeConfig
from node.errors import StoreError
from node.fenced_log import AppendOutcomeUnknown, FencedLog, connect_writer
from node.histogram import LatencyHistogram
from node.logs import lifecycle, logger
from node.intake import RiskCheck, SignalGate
from node.peer_limit import PeerLimiter
from node.stages import Stage, StageClock
from node.stats import ValidatorStats
from node.risk import PreTradeRisk, TradingState
from node.messages import (
    AmendKind,
    Endpoints,
    ExecKind,
    ExecutionReport,
    Reply,
    Signal,
    SignalAccepted,
    Status,
    encode,
    pack_signal_batch,
    topic_prefixes,
)
from node.reasons import Reason
from node.router import Router
from node.amends import amendable_by
from node.amend_routes import AmendRoutes
from node.instruments import node_multipliers
from node.modes import CanaryUsage, ModeError, ModeTable, check_step
from node.trading_mode import TradingMode
from actors.fallback_intake import GROUP, FallbackReader
from actors.risk_state import RiskStateStore
from actors.snapshot_writer import SnapshotWriter
from node.risk import controls as ctl
from node.risk import snapshot as risk_snapshot
from node.fallback import REPLY_FIELD, lateness
from node.streams import (
    EVENTS_FIELD, SIGNALS_FIELD, StreamLog, connect_redis, pack_batch, unpack_reports, unpack_signals,
)


_WARM_MAX_ENTRIES = 20_000  # stream entries (batches) read back at start
_RISK_KINDS = (ExecKind.PARTIAL_FILL, ExecKind.FILL, ExecKind.CANCELED, ExecKind.REJECTED, ExecKind.UNKNOWN)
#: refusals by our own fencing, and of cancels and replaces by the engine, do not trip breakers
_NOT_BROKER_FAULTS = frozenset({"STALE_EPOCH"} | {str(r) for r in Reason if r.startswith("AMEND_")})
_SETTLE_EVERY_NS = 200_000_000  # while an append is in doubt, ask Redis at most this often
_FILL_KINDS = frozenset({ExecKind.PARTIAL_FILL, ExecKind.FILL})
_DONE_KINDS = frozenset({ExecKind.FILL, ExecKind.CANCELED, ExecKind.REJECTED})
_SNAPSHOT_OVERLAP_NS = 5_000_000_000  # exec ids booked this long before a snapshot's events mark
_SNAPSHOT_EVERY_NS = 1_000_000_000  # a snapshot at most this often, and this long after its events mark was read
_SNAPSHOT_POLL_NS = 10_000_000  # while a snapshot is being written, look for its outcome this often
_TIDY_EVERY_NS = 1_000_000_000  # dedupe expiry, breakers, controls, store health


_PIPELINE_ROUNDS = 8  # rounds of one wake-up whose appends overlap the next round's checks
_NO_EVENTS: dict = {}
WIRE_IN = Stage.WIRE_IN

_log = logging.getLogger("nae.validator")


class _Round:
    """One round of a wake-up: its frames' replies, what it accepted, its batch and its stamps."""

    __slots__ = ("now", "t0", "t_gate", "tx", "replies", "accepted", "packed")

    def __init__(self, now: int) -> None:
        self.now = now
        self.t0 = self.t_gate = self.tx = time.perf_counter_ns()
        self.replies: list[tuple[Any, Reply | bytes]] = []
        self.accepted: list[tuple[int, bytes, Signal]] = []  # (index in replies, SignalAccepted bytes, signal)
        self.packed = b""


def _indexed(*lists: list):
    """(list, index, item) over several lists: a rewrite in place of the replies of two rounds."""
    for replies in lists:
        for i, item in enumerate(replies):
            yield replies, i, item


def _drained(parts: list, recv: Callable, more: Callable) -> list:
    """The rest of a message of more than two frames, read (it is whole in the socket already)."""
    while more(zmq.RCVMORE):
        parts.append(recv(zmq.NOBLOCK))
    return parts


def _plain_controls(state: ctl.ControlState) -> dict:
    """The fold as plain data, trading states by name."""
    return msgspec.to_builtins(state) | {
        "node": _plain_switches(state.node),
        "strategies": {sid: _plain_switches(sw) for sid, sw in state.strategies.items()},
    }


def _plain_switches(sw: ctl.Switches) -> dict:
    return {"killed": sw.killed, "paused": sw.paused, "state": sw.state.name, "state_by": sw.state_by}


def _pct_us(samples: deque[int], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] / 1e3, 1)


def _log_breaker_changes(log, before: dict, after: dict) -> None:
    """A breaker that tripped or closed since the last save: one lifecycle line each."""
    for name, state in after.items():
        old = before.get(name)
        was = old.get("state") if isinstance(old, dict) else "CLOSED"  # a breaker not saved yet was closed
        if not isinstance(state, dict) or was == state.get("state"):
            continue
        lifecycle(log, "breaker", name=name, state=state.get("state"), failures=state.get("failures", 0))


def default_risk(cfg: NodeConfig) -> PreTradeRisk:
    """The validator's risk check from its config, compiled now (never on the first live signal)."""
    prices = {s.symbol: s.price for s in cfg.broker.paper.symbols}
    risk = PreTradeRisk(cfg.risk, list(prices), prices, cfg.equity_usd)
    risk.warm()
    return risk


class Validator(LoopService):
    name = "validator"

    def __init__(
        self,
        cfg: NodeConfig,
        redis_url: str,
        engine_intakes: str | list[str],
        events_endpoint: str,
        risk: RiskCheck | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        initial_states: tuple = (),
    ) -> None:
        super().__init__()
        self._cfg = cfg
        self.gc_freeze, self.gc_threshold0 = cfg.tuning.gc_freeze, cfg.tuning.gc_threshold0
        if risk is None:
            risk = default_risk(cfg)
        self.risk = risk
        for state, strategy_id, *_ in initial_states:  # (state, strategy or None[, by]), in force before the intake opens
            risk.set_state(state, strategy_id)
        self._initial_states = tuple(initial_states)  # recorded as controls once the store is open (_open)
        router = Router.from_config(cfg)
        self.modes = ModeTable.from_config(cfg)  # paper / shadow / canary / live per strategy (node.modes)
        self.amend_routes = AmendRoutes()  # where each order of a strategy in modes went (node.amend_routes)
        self._mult = node_multipliers(cfg.risk)  # a canary's notional
        self.gate = SignalGate(cfg.signing, cfg.intake, risk, route=router.group_of if cfg.reject_unrouted else None,
                               amendable=amendable_by(cfg, router.group_of, self.modes.entry_of))
        self.peer_limit = PeerLimiter(cfg.intake)  # per-connection limit on unauthenticated frames
        self._redis_url = redis_url
        self._engine_intakes = [engine_intakes] if isinstance(engine_intakes, str) else list(engine_intakes)
        self._events_endpoint = events_endpoint
        self._clock_ns = clock_ns
        self._batch_max = cfg.intake.batch_max
        # one PUSH per engine (leader and hot standbys all get every batch), each with the durable
        # batches it could not take yet
        self._pushes: dict[str, tuple[zmq.Socket, deque[bytes]]] = {}
        self._next_expire_ns = 0
        self.accepted = 0
        self.rejected = 0
        self.store_failures = 0
        self.in_doubt_logged = 0  # signals whose unanswered append turned out to be in the log
        self.in_doubt_voided = 0  # ... and those it turned out not to be (fenced off for good)
        self._in_doubt: list[tuple[bytes, list[tuple[Signal, str]]]] = []  # (packed batch, [(signal, id)])
        self._next_settle_ns = 0
        self.warmed = 0
        self.fallback_frames = 0
        self.wake_ns: deque[int] = deque(maxlen=4096)  # intake wake-ups: recv .. last reply sent
        self.xadd_ns: deque[int] = deque(maxlen=4096)  # the durable append of a wake-up
        self.reply_hist = LatencyHistogram()  # node.metrics: nae_signal_reply_seconds
        self.append_hist = LatencyHistogram()  # nae_signal_append_seconds
        # durable risk state (actors/risk_state.py): what a restart rebuilds before the intake opens
        self._unknown: dict[str, set[str]] = {}  # symbol -> orders in UNKNOWN
        self._booked: deque[tuple[int, str]] = deque(maxlen=200_000)  # (when, exec id) of fills taken
        self._risk_dirty = False
        self._signals_tip = "0"  # the last signals entry this validator appended (or found at start)
        self._events_mark = "0"  # the events tip read at the previous snapshot
        self._mark_ns = 0
        self._writer: SnapshotWriter | None = None  # writes the risk snapshot off the loop (_open)
        self._snapshot_due_ns = 0  # the next look at the snapshot (take one, or collect the one written)
        self._snapshot_taken_ns = 0  # when the snapshot being written was taken (its `_mark_ns` once saved)
        self._next_tidy_ns = 0
        self.snapshot_write_hist = LatencyHistogram()  # the writer's tip read + encode + SET, off the loop
        self._unsaved_controls: deque[ctl.ControlEvent] = deque()
        self.restored: dict = {}
        self.stages = StageClock()  # per wake-up: gate, append, reply (node.stages)

    # ---------------------------------------------------------------- loop

    def _open(self, ctx: zmq.Context) -> dict[str, str]:
        self._log = StreamLog(
            connect_redis(self._redis_url), self._cfg.storage.signals_stream, SIGNALS_FIELD, self._cfg.storage.stream_maxlen
        )
        self._fenced = FencedLog(connect_writer(self._redis_url), self._cfg.storage.signals_stream, SIGNALS_FIELD,
                                 self._cfg.storage.stream_maxlen, self._cfg.node_id + ".signals.fence")
        self._fenced.open()  # before reading the log back: an append of a previous validator lands before, or never
        self._warm_memory()
        self._breaker_key = self._cfg.node_id + ".risk.breakers"
        self._restore_breakers()
        # subscribed before the restore reads the logs: a report published meanwhile waits here
        self._fills = ctx.socket(zmq.SUB)
        self._fills.setsockopt(zmq.LINGER, 0)
        self._fills.setsockopt(zmq.RCVHWM, 0)
        self._fills.connect(self._events_endpoint)
        for prefix in topic_prefixes("", _RISK_KINDS):
            self._fills.setsockopt(zmq.SUBSCRIBE, prefix)
        try:
            self._restore_risk_state()  # controls, positions, PnL, UNKNOWN symbols: before the intake opens
        except BaseException:
            self._fills.close(0)
            raise
        for state, strategy_id, *by in self._initial_states:  # e.g. the start-up reconciliation's REDUCING: kept
            st = state if isinstance(state, TradingState) else TradingState[str(state)]
            self._control(ctl.SetState(st, strategy_id, by[0] if by else ""))
        self._router = tune(ctx.socket(zmq.ROUTER))
        self._router.setsockopt(zmq.RCVHWM, self._cfg.intake.peer_queue_frames)  # per peer, both ways
        self._router.setsockopt(zmq.SNDHWM, self._cfg.intake.peer_queue_frames)
        self._router.setsockopt(zmq.MAXMSGSIZE, self._cfg.intake.transport_max_bytes)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        port = self._cfg.intake.port
        intake = bind_at(self._router, self._cfg.bind_host, port)
        self._ctx_ref = ctx
        for endpoint in self._engine_intakes:
            self._connect_engine(endpoint)
        self.poller.register(self._router, zmq.POLLIN)
        self.poller.register(self._fills, zmq.POLLIN)
        self._fallback = ctx.socket(zmq.PULL)
        fallback_endpoint = "inproc://fallback-" + uuid.uuid4().hex  # not id(self): see actors/events_relay.py
        self._fallback.bind(fallback_endpoint)
        self.poller.register(self._fallback, zmq.POLLIN)
        self._fallback_redis = connect_redis(self._redis_url)
        self._reader = FallbackReader(
            self._redis_url, self._cfg.storage.intake_stream, self._cfg.node_id + ".validator", fallback_endpoint
        )
        self._reader.start()
        self._hello = encode(Endpoints(intake=intake, events=self._events_endpoint, node_id=self._cfg.node_id))
        st = self._cfg.storage  # the snapshot's own Redis client: its waits never hold the loop's
        self._writer = SnapshotWriter(RiskStateStore(connect_redis(self._redis_url), self._cfg.node_id,
                                                     st.controls_stream), st.events_stream, self._clock_ns,
                                      name=self.name + "-snapshot")
        self._writer.start()
        return {"intake": intake}

    def _warm_memory(self) -> None:
        """After a restart: remember the request_ids the log holds (newest `_WARM_MAX` signals of the
        dedupe window), so a retry is answered as a retry; anything older is refused as stale."""
        window_ms = self._cfg.signing.dedupe_window_secs * 1000
        entries = self._log.newest(self._clock_ns() // 1_000_000 - window_ms, _WARM_MAX_ENTRIES)
        warmed, oldest = 0, None
        for _, fields in entries:
            for acc in unpack_signals(fields):
                ts = acc.signal.timestamp_s()
                self.gate.remember_accepted(acc.signal.request_id, acc.signal_id, ts)
                oldest = ts if oldest is None else min(oldest, ts)
                warmed += 1
        if len(entries) == _WARM_MAX_ENTRIES and oldest is not None:
            self.gate.cover_from(oldest)
        self.warmed = warmed

    def _close(self) -> None:
        if self._writer is not None and not self._writer.stop():
            _log.warning("the risk snapshot writer did not end within its timeout (Redis stalled)")
        self._reader.stop()
        for push, _ in self._pushes.values():
            push.close(0)
        for sock in (self._router, self._fallback, self._fills):
            sock.close(0)

    def _on_wake(self, events: dict) -> None:
        """Rounds of up to `batch_max` frames; a round's append is on the wire while the next round
        is checked (group commit), and its replies go once its append answered, before the next
        append is sent: one append in flight, batches logged and forwarded in intake order."""
        self._flush_unsent()
        if self._fills in events:
            self._take_fills()
        if self._in_doubt:
            self._settle()  # before admitting: a retry of an in-doubt signal then gets the true answer
        if not events:
            self._housekeeping()
            return
        flying: _Round | None = None
        try:
            for turn in range(_PIPELINE_ROUNDS):
                r = _Round(self._clock_ns())
                # a later round reads only if frames wait (no failed receive, raising zmq.Again, per append)
                if turn == 0 or self._router.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    try:
                        self._admit_frames(events if turn == 0 else _NO_EVENTS, r.replies, r.accepted)
                    except BaseException:
                        self._undo(r)  # nothing of this round was logged
                        raise
                r.t_gate = time.perf_counter_ns()
                if flying is not None:
                    landing, flying = flying, None
                    try:
                        self._land(landing, r.replies)
                    except BaseException:
                        self._undo(r)  # checked, never sent
                        raise
                if r.accepted and self._send_append(r):
                    flying = r  # answered next turn, after the next round's checks
                    continue
                self._answer(r, None)  # nothing to log, or its append already failed
                break
        finally:
            if flying is not None:
                self._land(flying, [])
        if self._clock_ns() >= self._next_expire_ns:
            self._housekeeping()

    def _undo(self, r: _Round) -> None:
        """Nothing of the round was logged: every acceptance undone (memory, risk), so none is left
        remembered as ACCEPTED and never logged; their senders get no reply and retry."""
        for _, _, signal in r.accepted:
            self.gate.forget(signal, r.now)

    def _land(self, r: _Round, later: list) -> None:
        """Read the answer of `r`'s append, then send `r`'s replies and forward its batch. `later`: the
        replies of the round checked meanwhile (a retry of one of `r`'s signals takes `r`'s fate)."""
        try:
            batch = self._finish_append(r, later)
        except BaseException:
            self._undo(r)
            raise
        self._answer(r, batch)

    def _answer(self, r: _Round, batch: bytes | None) -> None:
        """Send a round's replies; a logged batch goes to the engines whatever happened to them."""
        t_app = time.perf_counter_ns()
        send = self._router.send  # two sends, not `send_multipart` (its per-part type checks: ~8 us -> ~3 us)
        redis_replies = []
        try:
            for ident, reply in r.replies:
                if type(reply) is not bytes:
                    if reply.status is not Status.ACCEPTED:
                        self.rejected += 1
                    reply = encode(reply)
                if type(ident) is tuple:
                    redis_replies.append((ident, reply))
                else:
                    send(ident, zmq.SNDMORE)
                    send(reply)
        finally:
            if batch is not None:  # after the replies: on 2 cores a woken engine would delay them
                n = len(r.accepted)
                self.stages.observe(Stage.INTAKE_GATE, r.t_gate - r.t0, n)
                self.stages.observe(Stage.APPEND, t_app - r.t_gate, n)
                self.stages.observe(Stage.REPLY, time.perf_counter_ns() - t_app, n)
                self._forward(batch)
            if redis_replies:
                self._answer_fallback(redis_replies)
        if r.replies:
            took = time.perf_counter_ns() - r.t0
            self.wake_ns.append(took)
            self.reply_hist.observe_ns(took, len(r.replies))  # every signal of the round: read .. replied

    def _admit_frames(self, events: dict, replies: list, accepted: list) -> None:
        router = self._router
        # frame by frame, not `recv_multipart` (a list, keyword calls and a RCVMORE per frame: ~9 us
        # CPU a message here against ~5); ZeroMQ delivers a message whole, so its other frames are
        # there once the first is, and one of other than two frames is drained and refused
        recv = router.recv
        more = router.getsockopt
        admit = self.gate.admit
        limit = self.peer_limit
        clock = self._clock_ns
        observe = self.stages.observe
        unjudged = 0
        for _ in range(self._batch_max):
            try:
                ident = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            # each frame judged by the clock of its own read (~0.1 us): a round stalled mid-way (its
            # process descheduled, stopped, paused) read frames sent after the stall, and the round's
            # clock made their fresh stamps look seconds ahead (refused STALE_TIMESTAMP / FUTURE_TIMESTAMP)
            now = clock()
            if not more(zmq.RCVMORE):
                self._refuse_parts([ident], replies, now)
                continue
            frame = recv(zmq.NOBLOCK)
            if more(zmq.RCVMORE):
                self._refuse_parts(_drained([ident, frame], recv, more), replies, now)
                continue
            if not limit.admits(ident, now):  # answered unjudged (node.peer_limit)
                replies.append((ident, limit.refusal))
                unjudged += 1
                if unjudged >= limit.refusals_per_wake:
                    break  # reply now; what waits stays in ZeroMQ's per-peer queues
                continue
            verdict = admit(frame, now)
            if verdict.discover:
                replies.append((ident, self._hello))
                continue
            reply = verdict.reply
            limit.judged(ident, reply, now)
            if verdict.signal is not None:
                observe(WIRE_IN, now - reply.ts_ns)  # the client's signing time: how long it took to reach us
                sig = verdict.signal
                route = self._stamp(sig) if self.modes.active else 0
                accepted.append((len(replies), encode(SignalAccepted(reply.signal_id, now, sig, route)), sig))
            replies.append((ident, reply))
        if self._fallback in events:
            self._take_fallback(replies, accepted)

    def _notional(self, signal: Signal) -> float:
        """The signal's notional as far as it is known here (0: not known)."""
        if signal.notional is not None:
            return float(signal.notional)
        px = signal.limit_price or signal.stop_price
        if not px:
            last = getattr(self.risk, "last_price", None)
            px = last(signal.symbol) if last is not None else 0.0
        return float(signal.quantity or 0.0) * float(px or 0.0) * self._mult.of(signal.symbol)

    def _stamp(self, signal: Signal) -> int:
        """The route of an accepted signal of a strategy in modes (node.modes); 0 for the others."""
        route = self.modes.stamp(signal.strategy_id, signal.amend is not None, self._notional(signal))
        return self.amend_routes.stamp(signal, route) if route else route

    def _refuse_parts(self, parts: list, replies: list, now: int) -> None:
        """A message of other than one frame: MALFORMED_FRAME, charged to its peer (node.peer_limit)."""
        self.gate.count(Reason.MALFORMED_FRAME)
        if not parts:
            return
        limit = self.peer_limit
        if not limit.admits(parts[0], now):
            replies.append((parts[0], limit.refusal))
            return
        limit.charge(parts[0], now)
        replies.append((parts[0], Reply(status=Status.REJECTED, request_id="", reasons=[Reason.MALFORMED_FRAME],
                                        detail="expected one frame")))

    def _send_append(self, r: _Round) -> bool:
        """Put the round's batch on the wire: True, or False when it is already refused or in doubt
        (its replies rewritten; see the module doc)."""
        if self._in_doubt:  # Redis has not answered since an append went unanswered: send nothing
            self._refuse_batch(r.replies, r.accepted, r.now, [])
            return False
        try:
            r.packed = pack_batch([a for _, a, _ in r.accepted])
            r.tx = time.perf_counter_ns()
            self._fenced.send(r.packed)
        except AppendOutcomeUnknown:
            self.store_failures += 1
            self._hold_in_doubt(r.replies, r.accepted, r.packed, r.now, [])
            return False
        except BaseException:
            self._undo(r)
            raise
        return True

    def _finish_append(self, r: _Round, later: list) -> bytes | None:
        """The answer of the round's append: the batch to forward, or None (refused, or in doubt)."""
        try:
            entry_id = self._fenced.receive()
        except AppendOutcomeUnknown:
            self.store_failures += 1
            self._hold_in_doubt(r.replies, r.accepted, r.packed, r.now, later)
            return None
        except StoreError:  # Redis answered with an error: nothing was appended
            self.store_failures += 1
            self._refuse_batch(r.replies, r.accepted, r.now, later)
            return None
        except Exception:  # noqa: BLE001 - not Redis's word: the append may have gone out
            self.store_failures += 1
            self._hold_in_doubt(r.replies, r.accepted, r.packed, r.now, later)
            return None
        took = time.perf_counter_ns() - r.tx
        self.xadd_ns.append(took)
        self.append_hist.observe_ns(took)
        self.accepted += len(r.accepted)
        prev, self._signals_tip = self._signals_tip, entry_id.decode()
        self._risk_dirty = True
        return pack_signal_batch(self._signals_tip, r.packed, prev)

    def _hold_in_doubt(self, replies: list, accepted: list, packed: bytes, now: int, later: list) -> None:
        """The append went out unanswered: ERROR STORE_OUTCOME_UNKNOWN now and for retries (in
        `later` too), the risk stays reserved, and `_settle` finds out which it was."""
        signals = [(signal, replies[i][1].signal_id) for i, _, signal in accepted]
        doubtful = {signal.request_id for signal, _ in signals}
        for rows, i, (ident, reply) in _indexed(replies, later):
            if type(reply) is Reply and reply.status is Status.ACCEPTED and reply.request_id in doubtful:
                unknown = Reply(
                    status=Status.ERROR, request_id=reply.request_id, signal_id=reply.signal_id,
                    reasons=[Reason.STORE_OUTCOME_UNKNOWN], ts_ns=reply.ts_ns,
                    detail="the signal log did not answer; the signal may yet be logged: retry with the same "
                           "request_id for the true answer (never a new request_id)",
                )
                rows[i] = (ident, unknown)
                self.gate.reanswer(reply.request_id, unknown)
                self.gate.count(Reason.STORE_OUTCOME_UNKNOWN)
        self._in_doubt.append((packed, signals))
        self._next_settle_ns = now + _SETTLE_EVERY_NS

    def _settle(self) -> None:
        """Ask Redis (at most every `_SETTLE_EVERY_NS`) which in-doubt batches are in the log."""
        now = self._clock_ns()
        if now < self._next_settle_ns:
            return
        self._next_settle_ns = now + _SETTLE_EVERY_NS
        try:
            found = self._fenced.settle([packed for packed, _ in self._in_doubt])
        except StoreError:
            self.store_failures += 1
            self._next_settle_ns = self._clock_ns() + _SETTLE_EVERY_NS  # the attempt itself may have waited
            return
        doubt, self._in_doubt = self._in_doubt, []
        for (packed, signals), entry_id in zip(doubt, found):
            if entry_id is None:  # not in the log, and never will be: a retry is admitted afresh
                for signal, _ in signals:
                    self.gate.forget(signal, now)
                self.in_doubt_voided += len(signals)
                continue
            for signal, signal_id in signals:
                self.gate.reanswer(signal.request_id, Reply(status=Status.ACCEPTED, request_id=signal.request_id,
                                                            signal_id=signal_id))
            self.accepted += len(signals)
            self.in_doubt_logged += len(signals)
            prev, self._signals_tip = self._signals_tip, entry_id.decode()  # nothing is appended while in doubt
            self._risk_dirty = True
            self._forward(pack_signal_batch(self._signals_tip, packed, prev))

    def _forward(self, batch: bytes) -> None:
        """The durable batch to every engine (leader and standbys), in order per engine."""
        for push, unsent in self._pushes.values():
            if unsent:
                unsent.append(batch)
                continue
            try:
                push.send(batch, zmq.NOBLOCK)
            except zmq.Again:
                unsent.append(batch)

    def _take_fills(self) -> None:
        """Execution reports update risk: positions and prices from fills, breakers from broker
        rejects, and a symbol with an order in UNKNOWN takes no new risk until the broker answers."""
        take = self._take_report
        for rep in followed_reports(self._fills):
            take(rep)
        self._risk_dirty = True

    def _take_report(self, rep: ExecutionReport, replay: bool = False) -> None:
        """One report into risk (live, or replayed from the log at start: then a broker reject
        does not count toward a breaker again, the breakers having their own saved state)."""
        risk = self.risk
        unknown = self._unknown
        kind = rep.kind
        if kind is ExecKind.UNKNOWN:
            unknown.setdefault(rep.symbol, set()).add(rep.client_order_id)
            risk.set_symbol_unknown(rep.symbol, True)
            return
        waiting = unknown.get(rep.symbol)
        if waiting and rep.client_order_id in waiting:
            waiting.discard(rep.client_order_id)
            if not waiting:
                risk.set_symbol_unknown(rep.symbol, False)
        if rep.exec_id and kind in _FILL_KINDS:
            self._booked.append((self._clock_ns(), rep.exec_id))
        if kind in _DONE_KINDS and rep.request_id and self.amend_routes.open:
            self.amend_routes.finished(rep.request_id)
        risk.on_fill(rep, rep.strategy_id)
        if rep.last_px > 0.0:
            risk.on_price(rep.symbol, rep.last_px, rep.ts_ns or self._clock_ns())
        elif kind is ExecKind.REJECTED and rep.reason not in _NOT_BROKER_FAULTS and not replay:
            risk.on_broker_reject(rep.strategy_id, self._clock_ns())

    def _take_fallback(self, replies: list, accepted: list) -> None:
        """Frames from `execution.intake`: judged as of their append time (one taken past its client's
        maximum age is refused before risk sees it), answered on Redis."""
        recv = self._fallback.recv_multipart
        admit = self.gate.admit
        for _ in range(self._batch_max):
            try:
                entry_id, reply_to, frame, *max_age = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            appended_ns = int(entry_id.split(b"-", 1)[0]) * 1_000_000
            late = lateness(max_age[0], appended_ns, self._clock_ns()) if max_age and max_age[0] else ""
            verdict = admit(frame, appended_ns, late)
            target = (entry_id, reply_to)
            if verdict.discover:
                replies.append((target, self._hello))
                continue
            reply = verdict.reply
            if verdict.signal is not None:
                sig = verdict.signal
                route = self._stamp(sig) if self.modes.active else 0
                accepted.append((len(replies), encode(SignalAccepted(reply.signal_id, appended_ns, sig, route)), sig))
            replies.append((target, reply))
            self.fallback_frames += 1

    def _answer_fallback(self, replies: list) -> None:
        pipe = self._fallback_redis.pipeline(transaction=False)
        for (entry_id, reply_to), payload in replies:
            if reply_to:
                pipe.xadd(reply_to, {REPLY_FIELD: payload}, maxlen=10_000, approximate=True)
            pipe.xack(self._cfg.storage.intake_stream, GROUP, entry_id)
        try:
            pipe.execute()
        except Exception:  # noqa: BLE001 - unacknowledged entries are read again after a restart
            self.store_failures += 1

    def _refuse_batch(self, replies: list, accepted: list, now: int, later: list) -> None:
        """Nothing was appended: what this batch accepted (and retries of it, in `later` too) becomes
        STORE_UNAVAILABLE, its risk reservations are released and its ids forgotten, so a retry can succeed."""
        failed = set()
        for _, _, signal in accepted:
            self.gate.forget(signal, now)
            failed.add(signal.request_id)
        for rows, i, (ident, reply) in _indexed(replies, later):
            if type(reply) is Reply and reply.status is Status.ACCEPTED and reply.request_id in failed:
                rows[i] = (
                    ident,
                    Reply(
                        status=Status.REJECTED,
                        request_id=reply.request_id,
                        signal_id=reply.signal_id,
                        reasons=[Reason.STORE_UNAVAILABLE],
                        detail="the signal log is unavailable; nothing was accepted, retry with the same request_id",
                        ts_ns=reply.ts_ns,
                    ),
                )
                self.gate.count(Reason.STORE_UNAVAILABLE)

    def _flush_unsent(self) -> None:
        for push, unsent in self._pushes.values():
            while unsent:
                try:
                    push.send(unsent[0], zmq.NOBLOCK)
                except zmq.Again:
                    break
                unsent.popleft()

    def _connect_engine(self, endpoint: str) -> None:
        if endpoint in self._pushes:
            return
        push = tune(self._ctx_ref.socket(zmq.PUSH))
        push.connect(endpoint)
        self._pushes[endpoint] = (push, deque())

    def _housekeeping(self) -> None:
        now = self._clock_ns()
        if now >= self._next_tidy_ns:
            self.gate.expire(now)
            self._save_breakers()
            self._save_controls()
            self._log_store_health()
            self._next_tidy_ns = now + _TIDY_EVERY_NS
        if now >= self._snapshot_due_ns:
            self._save_risk_state(now)
        self._next_expire_ns = min(self._next_tidy_ns, self._snapshot_due_ns)

    def _restore_breakers(self) -> None:
        """Breaker states survive a restart: they are saved (on change, once a second) in Redis,
        and published on the monitoring stream for the ledger's `circuit_breaker_state` table."""
        saved = self._log.get(self._breaker_key)
        self._saved_breakers = json.loads(saved) if saved else {}
        if self._saved_breakers:
            self.risk.restore_breakers(self._saved_breakers)

    def _save_breakers(self) -> None:
        states = self.risk.breaker_states()
        if states != self._saved_breakers:
            _log_breaker_changes(logger(self.name), self._saved_breakers, states)
            try:
                self._log.set(self._breaker_key, json.dumps(states).encode())
                # and to the monitoring stream: the ledger keeps circuit_breaker_state from it
                self._log.add(self._cfg.storage.monitoring_stream,
                              {b"m": json.dumps({"kind": "breaker_state", "states": states}).encode()})
            except StoreError:
                return
            self._saved_breakers = states

    # ---------------------------------------------------------------- durable risk state

    def _restore_risk_state(self) -> None:
        """Rebuild what a trader set and what risk learned, before the intake opens: the controls
        (fold of the control stream), then positions, cash, marks, pending and UNKNOWN symbols (the
        risk snapshot), then the signals and events logged after the snapshot's marks. A store
        failure here fails the start (the supervisor retries): never trade on forgotten controls."""
        t0 = time.perf_counter_ns()
        st = self._cfg.storage
        self._state = RiskStateStore(connect_redis(self._redis_url), self._cfg.node_id, st.controls_stream)
        self._control_fold = self._state.load_controls()
        self._control_fold.state.apply_to(self.risk)
        for strategy_id, mode in self._control_fold.state.modes.items():
            try:
                self.modes.set_mode(strategy_id, mode)
            except ModeError:  # the config no longer names it in [[modes]]: the router takes it
                _log.warning("mode %s of %s kept in the control stream, but the strategy is in no [[modes]]",
                             mode, strategy_id)
        saved = self._state.load_snapshot()
        signals_mark = events_mark = "0"
        if saved is not None:
            try:
                self._unknown = risk_snapshot.restore(self.risk, saved)
                signals_mark, events_mark = saved.signals_mark, saved.events_mark
                for strategy_id, (n, notional, live, live_notional) in saved.canary.items():
                    self.modes.canary[strategy_id] = CanaryUsage(
                        signals=int(n), notional=notional, live_signals=int(live), live_notional=live_notional)
                self.amend_routes.restore(saved.amend_routes_open, saved.amend_routes_done)
            except ValueError as exc:  # checked before anything changed: rebuild from the whole logs
                _log.warning("risk snapshot unusable, replaying the logs from the start: %s", exc)
                saved = None
        signals = events = 0
        self._signals_tip = signals_mark  # the log's tip, unless entries follow the snapshot's mark
        for entry_id, fields in self._state.entries_after(st.signals_stream, signals_mark):
            self._signals_tip = entry_id.decode()
            if SIGNALS_FIELD not in fields:
                continue
            try:
                batch = unpack_signals(fields)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # the ledger dead-letters it
            for acc in batch:
                if acc.route:
                    self._replay_route(acc)  # idempotent: before the skip below
                if acc.signal.request_id in getattr(self.risk, "_pending", ()):
                    continue  # already reserved in the snapshot (an append that was in doubt then)
                self.risk.check(acc.signal, acc.received_ns)  # gives a first-seen symbol its slot
                self.risk.commit(acc.signal, acc.received_ns)
                if acc.route:
                    self.modes.replay(acc.signal.strategy_id, acc.route, self._notional(acc.signal))
                signals += 1
        for entry_id, fields in self._state.entries_after(st.events_stream, events_mark):
            if EVENTS_FIELD not in fields:
                continue
            try:
                reports = unpack_reports(fields)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            for rep in reports:
                self._take_report(rep, replay=True)
                events += 1
        self._events_mark = self._state.tip(st.events_stream)
        self._mark_ns = self._clock_ns()
        self._risk_dirty = True
        self.restored = {
            "controls": _plain_controls(self._control_fold.state), "snapshot": saved is not None,
            "signals_replayed": signals, "reports_replayed": events,
            "unknown_symbols": sorted(s for s, ids in self._unknown.items() if ids),
            "restore_ms": round((time.perf_counter_ns() - t0) / 1e6, 1),
        }  # fmt: skip
        _log.info("risk state restored: %s", {k: v for k, v in self.restored.items() if k != "controls"})

    def _replay_route(self, acc: SignalAccepted) -> None:
        """A stamped signal logged after the snapshot: the route of its order remembered again."""
        amend = acc.signal.amend
        if amend is None or amend.kind is not AmendKind.CANCEL:
            self.amend_routes.record(acc.signal.request_id, acc.route)

    def _save_controls(self) -> bool:
        """Record the controls the control stream missed (Redis was away), in order; True when none waits."""
        while self._unsaved_controls:
            event = self._unsaved_controls[0]
            try:
                self._state.record_control(event, self._control_fold)
            except StoreError:
                return False
            self._unsaved_controls.popleft()
        return True

    def _save_risk_state(self, now: int) -> None:
        """About once a second while risk changes: take the snapshot here (copies: `take`), hand it to
        the writer thread (`actors.snapshot_writer`), which reads the events tip and SETs it off the
        loop; a later look collects the outcome. The snapshot's events mark is the events tip read
        when the previous one was written, at least `_SNAPSHOT_EVERY_NS` before this one is taken
        (every report logged before it has reached this loop), with the exec ids booked since shortly
        before the previous snapshot was taken (so the replay skips them)."""
        writer = self._writer
        if writer is None:
            return
        done = writer.collect()
        if done is not None:
            if done.ok:
                self._events_mark, self._mark_ns = done.events_tip, self._snapshot_taken_ns
                self._snapshot_due_ns = done.tip_read_ns + _SNAPSHOT_EVERY_NS
                self.snapshot_write_hist.observe_ns(done.write_ns)
            else:  # the marks stay; what it held is taken again a period later
                self._risk_dirty = True
                self._snapshot_due_ns = now + _SNAPSHOT_EVERY_NS
            if now < self._snapshot_due_ns:
                return
        elif writer.busy:
            self._snapshot_due_ns = now + _SNAPSHOT_POLL_NS
            return
        if not self._risk_dirty or self._unsaved_controls:
            self._snapshot_due_ns = now + _SNAPSHOT_EVERY_NS
            return
        # the marks only move on: fills booked before this one's overlap are never listed again, so
        # they leave the deque (a scan of the whole deque, up to 200k fills, cost the loop ~10 ms a
        # second at 1,000 fills/s); a clock stepped back keeps a few more ids listed, never fewer
        since = self._mark_ns - _SNAPSHOT_OVERLAP_NS
        booked = self._booked
        while booked and booked[0][0] < since:
            booked.popleft()
        recent = [eid for _, eid in booked]
        snap = risk_snapshot.take(self.risk, self._unknown, recent)
        snap.taken_ns = now
        snap.events_mark = self._events_mark
        snap.signals_mark = self._signals_tip
        snap.canary = {s: [u.signals, u.notional, u.live_signals, u.live_notional] for s, u in self.modes.canary.items()}
        # copies: the writer encodes the snapshot off the loop, while the loop goes on changing these
        snap.amend_routes_open, snap.amend_routes_done = dict(self.amend_routes.open), dict(self.amend_routes.done)
        if not writer.submit(snap):  # the writer stopped (the loop is closing)
            return
        self._snapshot_taken_ns = now
        self._risk_dirty = False  # a failed write sets it again
        self._snapshot_due_ns = now + _SNAPSHOT_POLL_NS

    def _control(self, control: ctl.Control) -> dict:
        """Check, apply, then record one control (on the loop thread). It is applied even when the
        store is away (a kill switch must work then most of all) and recorded when it returns;
        the answer says which: {"applied": True, "durable": bool}."""
        ctl.checked_control(control, self.risk.cfg)
        risk = self.risk
        if isinstance(control, ctl.Kill):
            risk.kill(control.strategy_id)
        elif isinstance(control, ctl.Unkill):
            risk.unkill(control.strategy_id)
        elif isinstance(control, ctl.Pause):
            risk.pause(control.strategy_id)
        elif isinstance(control, ctl.Resume):
            risk.resume(control.strategy_id)
        elif isinstance(control, ctl.SetState):
            risk.set_state(control.state, control.strategy_id)
        elif isinstance(control, ctl.SetMode):
            self.modes.set_mode(control.strategy_id, control.mode)
        elif isinstance(control, ctl.SetLimits):
            risk.set_limits(control.changes)
        else:
            risk.load_covariance(control.symbols, control.matrix)
        after = self._control_fold.state.fold(control)
        event = ctl.ControlEvent(control=control, ts_ns=self._clock_ns(), target=ctl.target_of(control), after=after,
                                 node_id=self._cfg.node_id)
        if self._unsaved_controls:  # keep the order: behind the ones still waiting
            self._unsaved_controls.append(event)
            return {"applied": True, "durable": False, "detail": "the control stream is unavailable; retried"}
        try:
            self._state.record_control(event, self._control_fold)
        except StoreError:
            self._unsaved_controls.append(event)
            return {"applied": True, "durable": False, "detail": "the control stream is unavailable; retried"}
        return {"applied": True, "durable": True}

    # ---------------------------------------------------------------- control (any thread)

    def set_engines(self, engine_intakes: list[str]) -> None:
        """Forward to exactly these engines from now on (an engine added or replaced)."""

        def swap() -> None:
            for endpoint in list(self._pushes):
                if endpoint not in engine_intakes:
                    push, _ = self._pushes.pop(endpoint)
                    push.close(0)
            for endpoint in engine_intakes:
                self._connect_engine(endpoint)
            self._engine_intakes = list(engine_intakes)

        self.call_on_loop(swap)

    # the risk controls: run on the loop thread, which alone touches risk state
    # (every one is recorded on the control stream: see `_control`)
    def kill(self, strategy_id: str | None = None) -> dict:
        done = self.call_on_loop(lambda: self._control(ctl.Kill(strategy_id)))
        lifecycle(logger(self.name), "kill_switch", on=True, strategy_id=strategy_id or "*")
        return done

    def unkill(self, strategy_id: str | None = None) -> dict:
        done = self.call_on_loop(lambda: self._control(ctl.Unkill(strategy_id)))
        lifecycle(logger(self.name), "kill_switch", on=False, strategy_id=strategy_id or "*")
        return done

    def pause(self, strategy_id: str) -> dict:
        return self.call_on_loop(lambda: self._control(ctl.Pause(strategy_id)))

    def resume(self, strategy_id: str) -> dict:
        return self.call_on_loop(lambda: self._control(ctl.Resume(strategy_id)))

    def set_state(self, state: str, strategy_id: str | None = None, by: str = "") -> dict:
        """`by`: who sets it ("" an operator; the reconciler names itself, `node.reconcile_halts`)."""
        if state not in TradingState.__members__:
            raise ctl.ControlError("BAD_STATE", "state must be one of " + ", ".join(TradingState.__members__))
        return self.call_on_loop(lambda: self._control(ctl.SetState(TradingState[state], strategy_id, by)))

    def lift_states(self, by: str) -> dict:
        """Back to ACTIVE every trading state `by` set and nothing set since (`ControlState.placed_by`),
        in one step on the loop (an operator's state set meanwhile is never lifted); recorded like
        every control. {"lifted": [strategy ids, "*" the node]}."""

        def run() -> dict:
            lifted = []
            for target in self._control_fold.state.placed_by(by):
                self._control(ctl.SetState(TradingState.ACTIVE, target, by))
                lifted.append(target or ctl.NODE)
            return {"lifted": lifted}

        done = self.call_on_loop(run)
        if done["lifted"]:
            lifecycle(logger(self.name), "trading_state_lifted", by=by, targets=",".join(done["lifted"]))
        return done

    def set_limits(self, changes: dict[str, float]) -> dict:
        """Change run-time limits (node.risk.controls.RUNTIME_LIMITS), recorded like every control."""
        return self.call_on_loop(lambda: self._control(ctl.SetLimits(dict(changes))))

    def set_mode(self, strategy_id: str, mode: str, force: bool = False) -> dict:
        """Promote or demote a strategy in modes one step (paper, shadow, canary, live; to paper, or
        with `force`, any jump), recorded like every control; {"from", "to", "applied", "durable"}."""
        try:
            wanted = TradingMode(mode)
        except ValueError:
            raise ModeError("BAD_MODE", "mode must be one of " + ", ".join(m.value for m in TradingMode)) from None

        def run() -> dict:
            current = self.modes.mode_of(strategy_id)
            if current is None:
                raise ModeError("NOT_IN_MODES", repr(strategy_id) + " is in no [[modes]] entry of the config")
            check_step(current, wanted, force)
            done = self._control(ctl.SetMode(strategy_id, wanted))
            return {"strategy_id": strategy_id, "from": current.value, "to": wanted.value, **done}

        done = self.call_on_loop(run)
        lifecycle(logger(self.name), "mode", strategy_id=strategy_id, mode_from=done["from"], mode_to=done["to"],
                  durable=done.get("durable"))
        return done

    def modes_in_force(self) -> dict:
        """Every strategy in modes seen so far, with its mode and a canary's counts."""

        def run() -> dict:
            names = set(self.modes.modes) | set(self.modes.canary)
            return {s: {"mode": str(self.modes.mode_of(s)), "canary": msgspec.to_builtins(self.modes.canary.get(s))}
                    for s in sorted(names)}

        return self.call_on_loop(run)

    def controls(self) -> dict:
        """The controls in force (the fold of the control stream), as plain data."""
        return self.call_on_loop(lambda: _plain_controls(self._control_fold.state))

    def reset_breaker(self, name: str) -> None:
        self.call_on_loop(lambda: self.risk.reset_breaker(name))

    def trip_breaker(self, name: str) -> None:
        self.call_on_loop(lambda: self.risk.trip_breaker(name, self._clock_ns()))

    def save_breakers(self) -> None:
        self.call_on_loop(self._save_breakers)

    def load_covariance(self, symbols: list[str], matrix: list[list[float]]) -> dict:
        """Reload the covariance (returns over the risk horizon) without a restart."""
        cov = ctl.LoadCovariance(list(symbols), [[float(x) for x in row] for row in matrix])
        return self.call_on_loop(lambda: self._control(cov))

    def breaker_states(self) -> dict[str, dict]:
        return self.call_on_loop(self.risk.breaker_states)

    def exposures(self) -> dict[str, float]:
        return self.call_on_loop(self.risk.exposures)

    def positions(self) -> dict[str, dict[str, float]]:
        """Filled positions risk books: strategy -> symbol -> signed quantity."""
        return self.call_on_loop(self.risk.positions)

    def _unknown_view(self) -> dict:
        """Orders in UNKNOWN and their symbols (read from another thread: a copy first)."""
        unknown = {sym: len(ids) for sym, ids in dict(getattr(self, "_unknown", {})).items() if ids}
        return {"unknown_orders": sum(unknown.values()), "unknown_symbols": sorted(unknown)}

    def _snapshot_view(self) -> dict:
        """The risk snapshot's writer: saved, failed, one being written now, the write's histogram."""
        w = self._writer
        return {"snapshots_saved": w.saved if w else 0, "snapshot_failures": w.failures if w else 0,
                "snapshot_writing": bool(w and w.busy), "snapshot_last_error": w.last_error if w else "",
                "snapshot_write_hist": self.snapshot_write_hist.snapshot()}

    def _log_store_health(self) -> None:
        """Once a second at most: a store outage begins (appends failed since the last look) or ends."""
        failures, seen = self.store_failures, getattr(self, "_store_failures_seen", 0)
        down = failures > seen
        if down != getattr(self, "_store_down", False):
            lifecycle(logger(self.name), "store_outage" if down else "store_recovered", store_failures=failures)
        self._store_failures_seen, self._store_down = failures, down

    def _reason_counts(self) -> dict:
        """The gate's refusals by reason, the peer limiter's unjudged ones under RATE_LIMITED."""
        counts = dict(self.gate.counts)
        if self.peer_limit.limited:
            counts[Reason.RATE_LIMITED] = counts.get(Reason.RATE_LIMITED, 0) + self.peer_limit.limited
        return counts

    def stats(self) -> ValidatorStats:
        return ValidatorStats(
            accepted=self.accepted,
            rejected=self.rejected,
            store_failures=self.store_failures,
            in_doubt=sum(len(s) for _, s in self._in_doubt),
            in_doubt_logged=self.in_doubt_logged,
            in_doubt_voided=self.in_doubt_voided,
            unsent=sum(len(u) for _, u in self._pushes.values()),
            warmed=self.warmed,
            fallback_frames=self.fallback_frames,
            fallback_errors=self._reader.errors,
            wake_p50_us=_pct_us(self.wake_ns, 50),
            wake_p99_us=_pct_us(self.wake_ns, 99),
            append_p50_us=_pct_us(self.xadd_ns, 50),
            append_p99_us=_pct_us(self.xadd_ns, 99),
            loop_errors=self.loop_errors,
            last_error=self.last_error,
            **self._unknown_view(),
            reply_hist=self.reply_hist.snapshot(),
            append_hist=self.append_hist.snapshot(),
            restored={k: v for k, v in self.restored.items() if k != "controls"},
            unsaved_controls=len(self._unsaved_controls),
            **self._snapshot_view(),
            reasons=self._reason_counts(),
            peer_limited=self.peer_limit.limited,
            peers=len(self.peer_limit),
            **self.stages.snapshot(),
            **self.gc.snapshot(),
        )
