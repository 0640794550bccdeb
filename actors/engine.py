"""The engine host: accepted signal batches in (PULL), orders out to the broker (DEALER), events out (PUB).

It hosts an order manager (the native one by default) and carries the epoch the supervisor
granted. Every report that changed an order is published as multipart [topic, msgpack
ExecutionReport], topic `<kind>/<len>:<strategy_id>` (see `node.messages.event_topic`), and appended to
`execution.events`, one batch entry per wake-up (kept and retried while Redis is away).

Groups: the node may run several engine groups (node.router maps strategies and symbols to them).
An engine keeps only the signals routed to its group, carries its group's epoch and checkpoint, and
names its group on every broker command, so the broker fences each group on its own.

Roles: one engine of each group is the leader (it holds the current epoch and alone submits); the others are hot
standbys: they take the same signal batches and follow the leader's published reports, so their
order books stay current, and they send a heartbeat every `heartbeat_interval_ms` like the leader.
`promote(epoch)` makes a standby the leader (below); `demote()` the reverse. `switch_broker` points
the engine at another broker adapter (the group's broker failed over): a leader then recovers
against it as on a promotion; when the new broker keeps another account, the orders the lost one
never answered are stranded first (UNKNOWN, BROKER_LOST: never sent twice).

Recovery (on `promote`, and on a leader start with `recover=True`): before taking live signals the
engine asks the broker about exactly the orders whose fate it does not know (QueryOrders, which
also fences the old epoch), sends at once, with the same client order ids, those the broker
lacks, then adopts those it has. Then it reads the `execution.signals` entries after its
checkpoint: the entries logged before the broker took the query, which may have reached the old
leader, are all in that read, so the orders in it this engine did not know are asked about the
same way. Anything logged later reached no engine before the fence: it is sent without asking.
The checkpoint (see `node.checkpoint`) is written with the event batch, in the same round trip.
What to do with each answer (adopt, in flight, re-drive, book a fill once, stay UNKNOWN) is decided
by `node.recovery`, shared with the Nautilus engine; this host asks, and carries the plans out.

Open orders (`node.open_orders`): the checkpoint passes an order once the broker answered it, so
orders left resting (limits) are behind it. The leader keeps its group's open orders in a Redis
hash, written with the checkpoint; a recovery adopts every one it does not know, asks the broker
about them (fenced, like the rest) and books the fills it has not booked. A report for an order this
engine still does not know is booked all the same (`NativeOrderManager`), never dropped.

A standby keeps a followed report that arrives before its signal (the two travel different
paths) until the signal comes, and asks the broker (a look: no fence, no take-over, on a socket of
its own) about orders still without word `_LOOK_AFTER_S` after their signal was accepted (a standby
restarted by Ray gets the batches it missed, whose reports went out before it was back: those are
due at once). So its book stays current and a promotion has little to ask.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from typing import Callable

import zmq

from actors.wiring import EngineWiring
from actors.engine_base import EngineBase
from actors.service import Heartbeats, bind_at, bind_random, followed_reports, tune
from adapters.engines.native import NativeOrderManager
from node.checkpoint import EntryCheckpoint, catch_up_from
from node.daily_roll import DailyRoll
from node.recovery import FILL_KINDS, RecoveryPlan, fills_to_book, moved_states, plan_recovery, plan_settle
from node.stats import EngineStats
from node.open_orders import OpenOrderIndex, decode_open_orders, open_orders_key
from node.errors import StoreError
from node.orders import ACTIVE_STATES, DONE_STATES, STATE_OF_KIND, OrderState, client_order_id_for
from node.histogram import LatencyHistogram
from node.logs import lifecycle, logger
from node.config import NodeConfig
from node.amends import CancelPlan, ReplacePlan, original_order_id
from node.modes import is_shadow
from node.messages import (
    CancelOrder,
    ExecKind,
    ExecutionReport,
    OrderSnapshot,
    OrdersReport,
    QueryOrders,
    ReplaceOrder,
    SignalAccepted,
    SubmitOrder,
    batch_decoder,
    broker_event_decoder,
    encode,
    event_topic,
    topic_prefixes,
)
from node.reasons import Reason
from node.stages import Stage, StageClock
from node.streams import (
    EVENTS_FIELD,
    StreamLog,
    entry_key,
    exec_ids_in,
    logged_since_ms,
    pack_batch,
    unpack_signals,
)
from node.followed import FollowedFills, is_execution

_MAX_PENDING_EVENTS = 1_000_000
STALE_EPOCH = Reason.STALE_EPOCH.value
CANCEL_TIMEOUT = Reason.CANCEL_TIMEOUT.value
_QUERY_TIMEOUT_MS = 15_000  # a loaded broker may take seconds to list a busy day
_QUERY_MARGIN_MS = 60_000  # clocks of the Redis host and the broker may differ by this much
_SWEEP_MARGIN_NS = 2_000_000_000  # broker report times are in (nearly) hand-out order: look back this far
_EARLY_MAX = 100_000  # followed reports kept for signals not here yet
_EVENTS_LOOKBACK = 5_000  # event batch entries a recovery reads back for fills published already
_FOLLOWED_EXECS_MAX = 1_000_000  # exec ids of followed fills remembered (oldest forgotten first)
_LOOK_AFTER_S = 0.5  # a standby asks the broker about an order still without word after this


class EngineHost(EngineBase):
    def __init__(
        self, cfg: NodeConfig, engine_name: str, wiring: EngineWiring, clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        super().__init__(cfg, engine_name, wiring, clock_ns)
        self._events_endpoint_for_follow = wiring.follow_endpoint  # the relay's subscriber side
        self._hb: Heartbeats | None = None
        self.manager = NativeOrderManager()
        self.open_index = OpenOrderIndex()
        self._open_key = open_orders_key(cfg.node_id, wiring.group)
        self.adopted_open = 0  # open orders of the group adopted from the index by recoveries
        self.recovered_submitted = 0
        self.fenced = 0
        self.swept_fills = 0
        self.recovered_adopted = 0
        self.events_dropped = 0
        self.stranded = 0
        self.broker_switches = 0
        self._seen_report_ns = 0  # the newest broker report time taken or followed (the broker's clock)
        self._marks: list[tuple[str, int]] = []  # the last promotion's steps (ns since its start)
        self.asked_last = 0  # orders the last recovery asked the broker about
        self.log_entries_read = 0  # signals entries the last recovery read from the log
        self._flush_every_ns = cfg.tuning.events_flush_ms * 1_000_000  # [tuning] events_flush_ms
        self._next_flush_ns = 0
        self._early: OrderedDict[str, list[ExecutionReport]] = OrderedDict()  # standby: reports before their signal
        #: exec ids of the fills followed from the leader (published already): a new leader never publishes
        #: them again; True: `execution.events` holds it (it is never logged again either)
        self._followed_execs: OrderedDict[str, bool] = OrderedDict()
        #: the newest fills followed, until a promotion logs those the old leader did not (`_log_followed_fills`)
        self._followed_fills = FollowedFills()
        self.repeats_withheld = 0  # fills a new leader booked and did not publish (their exec id was followed)
        self._unconfirmed: deque[tuple[float, str]] = deque()  # standby: (when recorded, order) with no word yet
        self._next_look = 0.0
        self._look: zmq.Socket | None = None  # standby: its own socket for looks at the broker
        self.looked_up = 0
        self.cancels_sent = 0
        self.replaces_sent = 0
        self.amends_refused = 0
        self.stages = StageClock()  # the leader's per-batch / per-report stage stamps (node.stages)
        self.fill_hist = LatencyHistogram()  # node.metrics: nae_signal_fill_seconds (the leader's fills)
        self.recovered_in_flight = 0  # asked orders the broker's gate had taken, not yet listed: not re-sent
        self._roll = DailyRoll(cfg.daily_roll_hour_utc, clock_ns())  # forgets finished orders (node.daily_roll)
        self._shadow_events: list[bytes] = []  # reports of shadow copies (node.modes), for the shadow stream
        self._shadow_log: StreamLog | None = None
        self.shadow_published = 0
        self._unknown_asks: dict[str, None] = {}  # leader: orders made UNKNOWN by a deadline, asked about
        self._next_unknown_ask = 0.0
        self.unknown_resolved = 0  # ... and resolved by the broker adapter's word

    # ---------------------------------------------------------------- sockets

    def _open(self, ctx: zmq.Context) -> dict[str, str]:
        host = self._cfg.bind_host
        self._pull = tune(ctx.socket(zmq.PULL))
        intake = bind_at(self._pull, host, self._port)
        self._pub = tune(ctx.socket(zmq.PUB))
        if self._publish_endpoint:  # through the node's events relay (a stable address)
            self._pub.connect(self._publish_endpoint)
            events = self._publish_endpoint
            time.sleep(0.1)  # let the relay pass the subscriptions up before the first report
        else:
            events = bind_random(self._pub, host)
        self._dealer = tune(ctx.socket(zmq.DEALER))
        self._dealer.connect(self._broker_endpoint)
        client = self._open_streams()
        if client is not None and self._modes.active:
            st = self._cfg.storage
            self._shadow_log = StreamLog(client, st.shadow_stream, EVENTS_FIELD, st.stream_maxlen)
        if client is not None:
            saved = client.get(self._checkpoint_key)
            if saved:
                self.checkpoint = EntryCheckpoint(saved.decode())
        self._hb = None
        if self._heartbeat_endpoint:
            self._hb = Heartbeats(self, self._heartbeat_endpoint, self._cfg.heartbeat_interval_ms)
            self._hb.start()
        self._follow = None
        if self.role == "leader":
            if self._recover:
                self._recover_in_flight()
        else:
            self._follow_leader(ctx, events)
        self.poller.register(self._pull, zmq.POLLIN)
        self.poller.register(self._dealer, zmq.POLLIN)
        return {"intake": intake, "events": events}

    def _follow_leader(self, ctx: zmq.Context, events_endpoint: str) -> None:
        """A standby keeps its order state from the leader's published reports."""
        self._follow = ctx.socket(zmq.SUB)
        self._follow.setsockopt(zmq.LINGER, 0)
        self._follow.setsockopt(zmq.RCVHWM, 0)
        self._follow.connect(self._events_endpoint_for_follow or events_endpoint)
        for prefix in topic_prefixes():  # every report; not the relay's greetings of subscribers
            self._follow.setsockopt(zmq.SUBSCRIBE, prefix)
        self.poller.register(self._follow, zmq.POLLIN)

    def _close(self) -> None:
        if self._has_events_to_flush():
            self._flush_events()  # what a flush held back (`events_flush_ms`): a stop loses none of it
        for s in (self._pull, self._pub, self._dealer, self._follow, self._look):
            if s is not None:
                s.close(0)

    # ---------------------------------------------------------------- the loop

    def _has_events_to_flush(self) -> bool:
        """A leader with reports, a checkpoint or a logged mark not yet in Redis."""
        return ((bool(self._pending_events) or self.checkpoint.changed or bool(self._logged_mark)) and self._log is not None
                and self.role == "leader")

    def _poll_timeout_ms(self) -> int:
        if self._pending_events and self._has_events_to_flush():  # a flush held back is due
            return max(0, min(10, -(-(self._next_flush_ns - self._clock_ns()) // 1_000_000)))
        return 10

    def _on_wake(self, events: dict) -> None:
        if self._pull in events:
            self._take_signals()
        if self._dealer in events:
            self._take_reports()
        if self._follow is not None and self._follow in events:
            self._take_followed()
        if self._look is not None and self._look in events:
            self._take_look()
        if self._unconfirmed and self.role != "leader":
            self._look_up_unconfirmed()
        if self.role == "leader":  # sent (or canceled) with no broker word by the deadline: UNKNOWN, published
            cfg = self._cfg
            for rep in self.manager.overdue(self._clock_ns(), cfg.submit_timeout_ms * 1_000_000,
                                            cfg.cancel_timeout_ms * 1_000_000):
                self._publish(rep)
                self._unknown_asks[rep.client_order_id] = None
            if self._unknown_asks:
                self._ask_about_unknown()
        if self._has_events_to_flush():
            now = self._clock_ns()
            if now >= self._next_flush_ns:
                self._next_flush_ns = now + self._flush_every_ns
                self._flush_events()
        if self._roll.due(self._clock_ns()):
            self.manager.roll()
        if self._shadow_events and self._shadow_log is not None and self.role == "leader":
            self._flush_shadow()

    def _flush_shadow(self) -> None:
        """The shadow copies' reports (node.modes) as one entry of the shadow stream (kept and
        retried while Redis is away, the oldest dropped past the bound)."""
        try:
            self._shadow_log.append_packed(pack_batch(self._shadow_events))
        except StoreError:
            excess = len(self._shadow_events) - _MAX_PENDING_EVENTS
            if excess > 0:
                del self._shadow_events[:excess]
            return
        self._shadow_events = []

    def _take_signals(self) -> None:
        recv = self._pull.recv
        for _ in range(1024):
            try:
                frame = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            batch = batch_decoder.decode(frame)
            t_recv = time.time_ns()
            for entry_id, signals in self._with_gap(batch):
                self._submit_batch(entry_id, signals)
            if self.role == "leader" and batch.signals:
                n = len(batch.signals)
                self.stages.observe(Stage.TO_ENGINE, t_recv - batch.signals[0].received_ns, n)
                self.stages.observe(Stage.ENGINE_SUBMIT, time.time_ns() - t_recv, n)

    def _beat(self, now: int) -> None:
        """Beat at once (a role or epoch change should reach the supervisor without waiting)."""
        if self._hb is not None:
            self._hb.now.set()

    def _take_followed(self) -> None:
        manager = self.manager
        orders, on_report = manager.orders, manager.on_report
        seen = self._seen_report_ns
        modes = self._modes.active
        execs = self._followed_execs
        keep = self._followed_fills.keep
        try:
            for rep in followed_reports(self._follow):
                if rep.reason == STALE_EPOCH:  # a fenced engine's refusal says nothing about the order
                    continue
                if rep.ts_ns > seen:
                    seen = rep.ts_ns
                if rep.exec_id and rep.kind in FILL_KINDS and rep.exec_id not in execs:
                    execs[rep.exec_id] = False
                    keep(rep)
                    if len(execs) > _FOLLOWED_EXECS_MAX:
                        execs.popitem(last=False)
                order = orders.get(rep.client_order_id)
                if order is not None:
                    if modes and order.intent.strategy_id != rep.strategy_id:
                        continue  # the same id's other route (node.modes: a live order and its shadow copy)
                    on_report(rep)
                else:
                    self._keep_early(rep)
        finally:
            self._seen_report_ns = seen

    def _look_up_unconfirmed(self) -> None:
        """Standby: ask the broker about the orders still PENDING `_LOOK_AFTER_S` after their signal was
        accepted (at most one ask per `_LOOK_AFTER_S`)."""
        now = time.monotonic()
        if now < self._next_look:
            return
        queue, cutoff, orders = self._unconfirmed, now - _LOOK_AFTER_S, self.manager.orders
        if queue[0][0] > cutoff:
            return  # nothing due yet: looked at again next wake-up (a backlog that arrives is asked about at once)
        self._next_look = now + _LOOK_AFTER_S
        ids = []
        while queue and queue[0][0] <= cutoff:
            coid = queue.popleft()[1]
            order = orders.get(coid)
            if order is not None and order.state is OrderState.PENDING:
                ids.append(coid)
        if not ids:
            return
        if self._look is None:
            self._look = tune(self._ctx.socket(zmq.DEALER))
            self._look.connect(self._broker_endpoint)
            self.poller.register(self._look, zmq.POLLIN)
        self._look.send(encode(QueryOrders(self.epoch, self._engine_name, self._clock_ns(), ids, self.group,
                                           take_over=False)))

    def _take_look(self) -> None:
        for _ in range(64):
            try:
                msg = broker_event_decoder.decode(self._look.recv(zmq.NOBLOCK))
            except zmq.Again:
                return
            if type(msg) is not OrdersReport:
                continue
            if self.role != "leader":
                for snap in msg.orders:
                    self.manager.adopt(snap)  # the broker's word; the leader published it already
                self.looked_up += len(msg.orders)
                continue
            orders = self.manager.orders
            for snap in msg.orders:  # the leader's asks about orders a deadline made UNKNOWN
                order = orders.get(snap.client_order_id)
                if order is None or order.state is not OrderState.UNKNOWN or snap.kind is ExecKind.UNKNOWN:
                    continue
                if order.reason == CANCEL_TIMEOUT and STATE_OF_KIND[snap.kind] not in DONE_STATES:
                    continue  # "still open" may be the adapter's view from before the lost answer: wait for more
                rep = self.manager.adopt(snap)
                if rep is not None:
                    self._publish(rep)
                    self.unknown_resolved += 1

    def _ask_about_unknown(self) -> None:
        """Leader: every `unknown_ask_every_ms`, ask the broker adapter (a look: no fence, nothing
        taken over) about the orders a deadline made UNKNOWN and still UNKNOWN; `_take_look` takes
        its word: any state for a submit's deadline; for a cancel's, only a finished one (an adapter
        that lost the cancel's answer may still list the order open). An order it does not list
        stays UNKNOWN (no made-up state)."""
        now = time.monotonic()
        if now < self._next_unknown_ask:
            return
        self._next_unknown_ask = now + self._cfg.unknown_ask_every_ms / 1000
        orders = self.manager.orders
        for coid in [c for c in self._unknown_asks if (o := orders.get(c)) is None or o.state is not OrderState.UNKNOWN]:
            del self._unknown_asks[coid]
        if not self._unknown_asks:
            return
        if self._look is None:
            self._look = tune(self._ctx.socket(zmq.DEALER))
            self._look.connect(self._broker_endpoint)
            self.poller.register(self._look, zmq.POLLIN)
        self._look.send(encode(QueryOrders(self.epoch, self._engine_name, self._clock_ns(), list(self._unknown_asks),
                                           self.group, take_over=False)))

    def _close_look(self) -> None:
        if self._look is not None:
            self.poller.unregister(self._look)
            self._look.close(0)
            self._look = None

    def _keep_early(self, rep: ExecutionReport) -> None:
        """A followed report whose signal has not reached this engine yet (another group's are dropped)."""
        if not self._routed_here(rep.strategy_id, rep.symbol):
            return
        early = self._early
        held = early.get(rep.client_order_id)
        if held is None:
            early[rep.client_order_id] = [rep]
            if len(early) > _EARLY_MAX:
                early.popitem(last=False)
        else:
            held.append(rep)

    def _early_for(self, client_order_id: str, strategy_id: str) -> list[ExecutionReport]:
        """The followed reports kept for an order before its signal came: those of its own route
        (node.modes: a live order and its shadow copy share the client order id, not the strategy)."""
        held = self._early.pop(client_order_id, ())
        if not self._modes.active:
            return list(held)
        return [r for r in held if r.strategy_id == strategy_id]

    def _fenced(self, client_order_id: str) -> None:
        """The broker refused our epoch: another engine leads now. The refusal is no evidence about
        the order (the new leader owns it), so nothing is published; this engine steps down."""
        self.fenced += 1
        self.manager.unsubmit(client_order_id)
        if self.role == "leader":
            self.role = "standby"
            self._follow_leader(self._ctx, self._events_endpoint_for_follow)

    def _submit_batch(self, entry_id: str, signals: list[SignalAccepted]) -> None:
        send = self._dealer.send
        leader = self.role == "leader"
        on_signal = self.manager.on_signal
        epoch, name, group = self.epoch, self._engine_name, self.group
        early = self._early
        waiting = []
        for acc in self._mine(signals):
            if acc.signal.amend is not None:
                self._amend(acc, leader, waiting)
                continue
            intent = on_signal(acc, leader)
            self.signals += 1
            if intent is None:
                continue
            if not leader:
                if early:
                    for rep in self._early_for(intent.client_order_id, intent.strategy_id):
                        self.manager.on_report(rep)
                # dated by the signal's acceptance, not its arrival here: a batch that waited for this
                # engine (queued while it was dead: Ray restarted it) is asked about at once, not 0.5 s
                # later, so a promotion soon after a restart has not ~2,000 orders to ask about
                age_s = max(0.0, (self._clock_ns() - acc.received_ns) / 1e9)
                self._unconfirmed.append((time.monotonic() - age_s, intent.client_order_id))
                continue
            send(encode(SubmitOrder(epoch, name, intent, group)))
            self.manager.sent(intent.client_order_id, self._clock_ns())
            waiting.append(intent.client_order_id)
        if leader:  # only the leader keeps (and writes) the checkpoint
            self.checkpoint.add_entry(entry_id, waiting)

    def _amend(self, acc: SignalAccepted, leader: bool, waiting: list[str]) -> None:
        """A cancel or replace signal (node.amends): the leader carries out its plan; a standby
        records it. A replacement is waited for like any order; a cancel is not (its answer is the
        original's report, or nothing when the original finished first)."""
        self.signals += 1
        plan = self.manager.on_amend(acc, leader, self._clock_ns())
        if not leader:  # the leader's reports on a replacement that came before its signal
            coid = client_order_id_for(acc.signal_id)
            order = self.manager.orders.get(coid)
            if order is not None:
                for rep in self._early_for(coid, order.intent.strategy_id):
                    self.manager.on_report(rep)
        if plan is None:
            return
        if type(plan) is CancelPlan:
            self._dealer.send(encode(CancelOrder(self.epoch, self._engine_name, plan.client_order_id, self.group)))
            self.manager.cancel_sent(plan.client_order_id, self._clock_ns())
            self.cancels_sent += 1
        elif type(plan) is ReplacePlan:
            coid = plan.intent.client_order_id
            self._dealer.send(encode(ReplaceOrder(self.epoch, self._engine_name, plan.client_order_id, plan.intent,
                                                  self.group)))
            self.manager.sent(coid, self._clock_ns())
            waiting.append(coid)
            self.replaces_sent += 1
        else:
            self.amends_refused += 1
            self._publish(plan.report)

    def _take_reports(self) -> None:
        recv = self._dealer.recv
        for _ in range(4096):
            try:
                frame = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            msg = broker_event_decoder.decode(frame)
            if type(msg) is ExecutionReport:
                if msg.ts_ns > self._seen_report_ns:
                    self._seen_report_ns = msg.ts_ns
                t_recv = time.time_ns()
                self._on_report(msg)
                if msg.ts_ns and self.role == "leader":
                    self.stages.observe(Stage.BROKER_REPORT, t_recv - msg.ts_ns)
                    self.stages.observe(Stage.PUBLISH, time.time_ns() - t_recv)

    def _on_report(self, msg: ExecutionReport) -> None:
        if msg.reason == STALE_EPOCH and msg.kind is ExecKind.REJECTED:
            self._fenced(msg.client_order_id)
            return
        self.checkpoint.answered(msg.client_order_id)
        if self._early and msg.client_order_id not in self.manager.orders:
            self._apply_early(msg.client_order_id, msg.strategy_id)  # followed before its signal: published, booked first
        out = self.manager.on_report(msg)
        if out is None:
            return
        if out.exec_id and self._followed_execs and out.exec_id in self._followed_execs:
            # the old leader published this execution: booked, not sent to subscribers again; logged
            # unless the events stream holds it (the ledger dedupes by exec id all the same)
            self.repeats_withheld += 1
            order = self.manager.orders.get(out.client_order_id)
            if order is not None:
                self.open_index.touch(order)
            if self._followed_execs[out.exec_id]:
                return
            self._followed_execs[out.exec_id] = True
            if is_shadow(out.strategy_id):  # a shadow copy's log is the shadow stream (the report dedupes)
                self._shadow_events.append(encode(out))
            else:
                self._pending_events.append(encode(out))
            return
        self._publish(out)

    def _apply_early(self, client_order_id: str, strategy_id: str) -> None:
        """Book the followed reports held for an order whose signal never came here (they were
        published by the old leader; the first names the order's request_id, strategy and signal)."""
        for rep in self._early_for(client_order_id, strategy_id):
            self.manager.on_report(rep)

    def _publish(self, out: ExecutionReport) -> None:
        order = self.manager.orders.get(out.client_order_id)
        if order is not None:
            self.open_index.touch(order)
        payload = encode(out)
        if is_shadow(out.strategy_id):  # a shadow copy's: never to risk, the ledger or subscribers
            self._shadow_events.append(payload)
            self.shadow_published += 1
            return
        self._pub.send_multipart((event_topic(out.kind, out.strategy_id), payload))
        self._pending_events.append(payload)
        if is_execution(out):  # the logged mark's candidate (node.followed)
            self._last_exec = out.exec_id
        self.published += 1
        if out.kind is ExecKind.FILL:
            order = self.manager.orders.get(out.client_order_id)
            if order is not None and order.accepted_ns:
                self.fill_hist.observe_ns(max(0, self._clock_ns() - order.accepted_ns))

    def _original_strategy(self, acc: SignalAccepted) -> str | None:
        order = self.manager.orders.get(original_order_id(acc.signal.amend.original_request_id))
        return None if order is None else order.intent.strategy_id

    def _open_order_changes(self) -> tuple[str, dict[str, bytes], list[str]] | None:
        changes = self.open_index.changes()
        return None if changes is None else (self._open_key, changes[0], changes[1])

    def _open_orders_flushed(self) -> None:
        self.open_index.flushed()

    def _note_store_failure(self) -> None:
        super()._note_store_failure()
        excess = len(self._pending_events) - _MAX_PENDING_EVENTS
        if excess > 0:
            self.events_dropped += excess
            del self._pending_events[:excess]
            self._marks_on = False  # dropped fills were published: no later mark may pass them

    # ---------------------------------------------------------------- recovery

    def _recover_in_flight(self, t0: int = 0) -> None:
        """Ask the broker, send what it lacks, adopt the rest; then the log (see module doc).
        With `t0`, the time of each step goes to `_marks` (a promotion reports where it spent)."""
        mark = self._mark if t0 else (lambda name, t: None)
        asked = self.manager.pending()
        self.asked_last = len(asked)
        # first just these orders (a small answer: the first order goes out sooner) ...
        answer, early = self._ask([i.client_order_id for i in asked], self._clock_ns())
        fills = list(answer.fills)
        mark("answered", t0)
        self._carry_out(plan_recovery(asked, answer), fills)
        mark("redriven", t0)
        # the group's open orders (resting at the venue, behind the checkpoint) this engine did not know
        opened = self._adopt_open_orders()
        if opened:
            answer, early2 = self._ask(opened, self._clock_ns())
            self._refresh(opened, answer)
            fills += answer.fills
            early += early2
            mark("open_adopted", t0)
        # the broker took the query: what the old leader sent is there for good. This read holds
        # every entry logged before that; the orders this engine did not know are asked about too
        entries, new = self._catch_up(self.checkpoint.position)
        mark("log_read", t0)
        if new:
            answer, early2 = self._ask([i.client_order_id for i in new], self._clock_ns())
            self._carry_out(plan_recovery(new, answer), answer.fills)
            fills += answer.fills
            early += early2
            mark("log_orders_sent", t0)
        # ... then the recent activity: the fills the old leader may have taken and never published
        answer, early2 = self._ask([], self._query_since_ns())
        fills += answer.fills
        early += early2
        mark("recent_read", t0)
        for entry_id in entries:  # behind the hold: the checkpoint passes them once all is answered
            self.checkpoint.add_entry(entry_id, [])
        for coid in self.manager.held_cancels():  # cancels taken as a standby: a no-op if already done
            self._dealer.send(encode(CancelOrder(self.epoch, self._engine_name, coid, self.group)))
            self.cancels_sent += 1
        for msg in early:
            self._on_report(msg)
        self._sweep_fills(fills)
        mark("swept", t0)

    def _adopt_open_orders(self) -> list[str]:
        """Read the group's open-order index; adopt the orders not known here (the reports a standby
        followed for them before it knew them are applied: they were published already). Returns
        the ids adopted."""
        if self._signals is None:
            return []
        try:
            raw = self._signals.hgetall(self._open_key)
        except StoreError:
            raise TimeoutError(self.name + ": the open-order index is unreadable; not trading blind") from None
        entries = decode_open_orders(raw)
        self.open_index.load([e.intent.client_order_id for e in entries])
        adopted = []
        early = self._early
        for entry in entries:
            if self.manager.restore(entry):
                coid = entry.intent.client_order_id
                for rep in early.pop(coid, ()):
                    self.manager.on_report(rep)
                adopted.append(coid)
        self.adopted_open += len(adopted)
        return adopted

    def _refresh(self, client_order_ids: list[str], answer: OrdersReport) -> None:
        """The broker's word on adopted open orders: publish a state that moved while nobody led
        (canceled, expired); see `node.recovery.moved_states`."""
        orders = self.manager.orders

        def same_state(snap: OrderSnapshot) -> bool | None:
            order = orders.get(snap.client_order_id)
            return None if order is None else STATE_OF_KIND[snap.kind] is order.state

        for snap in moved_states(client_order_ids, answer, same_state):
            recovered = self.manager.adopt(snap)  # fills come with their own reports (the sweep)
            if recovered is not None:
                self._publish(recovered)

    def _mark(self, name: str, t0: int) -> None:
        self._marks.append((name, time.perf_counter_ns() - t0))

    def _catch_up(self, position: str) -> tuple[list[str], list]:
        """Read the signal log after `position` as a standby would: this group's orders this engine
        did not know are recorded, not sent. Returns the entry ids read and the new intents.

        The read ends at the log's tip as read now, after the broker took the fence (the recovery's
        first query): an entry logged later reached no engine before the fence, so no older epoch
        sent its orders; its batch comes here through the intake's forward and is sent as any new
        one (a batch read here that comes later is dropped: `_with_gap`). It starts after what this
        engine took already when that reaches back to `position` (`catch_up_from`: a hot standby's
        batches). Under load a promotion read, and asked the broker about, every entry logged while
        the leader was silent and while the promotion itself ran (~1,000 a second)."""
        entries: list[str] = []
        new = []
        if self._signals is None:
            return entries, new
        tip = self._signals.tip()
        start = catch_up_from(position, self._taken_after, self._last_entry)
        on_signal = self.manager.on_signal
        read = start
        while tip != "0":
            batch = self._signals.entries_after(read, 500, tip)
            if not batch:
                break
            for entry_id, fields in batch:
                for acc in self._mine(unpack_signals(fields)):
                    self.signals += 1
                    if acc.signal.amend is not None:  # recorded as a standby would; sent by the recovery
                        self.manager.on_amend(acc, False, self._clock_ns())
                        replacement = self.manager.orders.get(client_order_id_for(acc.signal_id))
                        if replacement is not None and self._early:
                            for rep in self._early_for(replacement.intent.client_order_id,
                                                       replacement.intent.strategy_id):
                                self.manager.on_report(rep)
                        if replacement is not None and replacement.state is OrderState.PENDING:
                            new.append(replacement.intent)
                        continue
                    intent = on_signal(acc, False)
                    if intent is not None:
                        new.append(intent)
                        if self._early:  # followed before this signal came: published already, booked now
                            for rep in self._early_for(intent.client_order_id, intent.strategy_id):
                                self.manager.on_report(rep)
                entries.append(entry_id.decode())
            read = batch[-1][0]
        self.log_entries_read = len(entries)
        if start != position:  # the checkpoint may pass what this engine took, once the hold is answered
            entries.insert(0, start)
        if not self._last_entry or entry_key(tip) > entry_key(self._last_entry):
            if start == position:  # every entry after the checkpoint through the tip is known here now
                self._taken_after = position
            self._last_entry = tip
        return entries, new

    def _ask(self, client_order_ids: list[str], since_ns: int) -> tuple[OrdersReport, list[ExecutionReport]]:
        """QueryOrders with this engine's epoch (it takes the group's reports over); the broker's
        answer, and the reports that came in meanwhile. No answer in time raises: not trading blind."""
        self._dealer.send(encode(QueryOrders(self.epoch, self._engine_name, since_ns, client_order_ids, self.group)))
        early: list[ExecutionReport] = []
        deadline = time.monotonic() + _QUERY_TIMEOUT_MS / 1000
        while time.monotonic() < deadline:
            if not self._dealer.poll(100):
                continue
            msg = broker_event_decoder.decode(self._dealer.recv())
            if type(msg) is OrdersReport:
                return msg, early
            if type(msg) is ExecutionReport:
                early.append(msg)
        raise TimeoutError(self.name + ": the broker did not list its orders in time; not trading blind")

    def _sweep_fills(self, fills: list[ExecutionReport]) -> None:
        """Publish every broker fill of an order this engine knows that it has not booked (its
        report may have died with the old leader): `node.recovery.fills_to_book`."""
        orders = self.manager.orders

        def booked_of(coid: str) -> set[str] | None:
            order = orders.get(coid)
            return None if order is None else order.exec_ids

        to_book = fills_to_book(fills, booked_of)
        execs = self._followed_execs
        for exec_id in self._logged_exec_ids(to_book):  # the old leader published and logged these: booked, not again
            execs[exec_id] = True
        for fill in to_book:
            self._on_report(fill)
            self.swept_fills += 1

    def _logged_exec_ids(self, fills: list[ExecutionReport]) -> set[str]:
        """The exec ids of `fills` the events stream holds already (an engine this one did not follow,
        e.g. before a Ray restart, published them), from the newest entry back (`_EVENTS_LOOKBACK` at
        most, `READ_PAGE` a command). In a promotion that went by a logged mark (node.followed), from
        the mark's entry on: this engine followed the old leader through the mark, so a fill published
        before that entry was followed, and is not asked about here. Unreadable: none (a repeat,
        never a loss)."""
        wanted = {f.exec_id for f in fills if f.exec_id and f.exec_id not in self._followed_execs}
        if self._log is None or not wanted:
            return set()
        try:
            if self._logged_through:
                return self._log.exec_ids_from(self._logged_through, wanted)
            entries = self._log.newest(logged_since_ms(fills), _EVENTS_LOOKBACK)
        except StoreError:
            return set()
        return exec_ids_in(entries, wanted)

    def _log_followed_fills(self) -> None:
        """On promotion: the fills followed from the old leader that `execution.events` lacks, once,
        ahead of the recovery's reports (`EngineBase._log_followed`); each is then known logged (a
        sweep that finds it again books it without logging or publishing it)."""
        fills = self._followed_fills.take()
        self._log_followed(fills)
        execs = self._followed_execs
        for fill in fills:
            execs[fill.exec_id] = True

    def _query_since_ns(self) -> int:
        """The activity the broker must list besides the orders asked about: since the newest report
        this engine took or followed, less a margin, by the broker's own clock (a report the old
        leader took but never published is newer). None seen: since the checkpoint entry's time,
        less a margin for the clocks of the Redis host and the broker."""
        if self._seen_report_ns > _SWEEP_MARGIN_NS:
            return self._seen_report_ns - _SWEEP_MARGIN_NS
        ms = self.checkpoint.position.split("-", 1)[0]
        if not ms.isdigit() or ms == "0":
            return 0
        return max(0, (int(ms) - _QUERY_MARGIN_MS) * 1_000_000)

    def _carry_out(self, plan: RecoveryPlan, fills: list[ExecutionReport]) -> None:
        """A recovery plan (`node.recovery`): send what the broker lacks at once (same ids), wait
        for what it took and does not list yet, then adopt what it has: its fills (`fills`, the
        broker's answer) first, then its state where they do not explain it. `unknown` (no answer)
        is not reached: `_ask` raises first."""
        send = self._dealer.send
        manager = self.manager
        epoch, name, group = self.epoch, self._engine_name, self.group
        for intent in plan.redrive:
            coid = intent.client_order_id
            manager.mark_submitted(coid)
            replaced = manager.replaces.get(coid)
            if replaced is None:
                send(encode(SubmitOrder(epoch, name, intent, group)))
            else:  # a replacement goes as one, never as a second live order beside the old one
                send(encode(ReplaceOrder(epoch, name, replaced, intent, group)))
        now = self._clock_ns()
        for intent in plan.in_flight:  # at the broker already: its reports come here (the take-over)
            manager.mark_submitted(intent.client_order_id)
            manager.sent(intent.client_order_id, now)  # UNKNOWN at the deadline if they never do
        self.recovered_submitted += len(plan.redrive)
        self.recovered_in_flight += len(plan.in_flight)
        self.checkpoint.hold(plan.waiting)
        self._adopt_with_fills(plan.adopt, fills)
        self.recovered_adopted += len(plan.adopt)

    def _adopt_with_fills(self, snaps: list[OrderSnapshot], fills: list[ExecutionReport]) -> None:
        """Take the broker's word for orders it has: their executions first (each with its exec id,
        `_sweep_fills`), then a state they do not explain (restated, reason RECOVERED). A restated
        FILL ahead of the fill itself told a subscriber of an order filled twice (once without an
        exec id, once with the venue's)."""
        adopted = {s.client_order_id for s in snaps}
        self._sweep_fills([f for f in fills if f.client_order_id in adopted])
        manager = self.manager
        for snap in snaps:
            recovered = manager.adopt(snap)
            if recovered is not None:
                self._publish(recovered)

    def promote(self, epoch: int) -> dict:
        """Become the leader with `epoch`: stop following, ask the broker, re-drive in-flight orders."""

        called, entered_ns = time.perf_counter_ns(), time.time_ns()

        def run() -> dict:
            t0 = time.perf_counter_ns()
            self._marks = [("queued", t0 - called)]
            self.epoch = epoch
            self.role = "leader"
            self._last_exec, self._logged_mark = "", b""  # marks of a term as leader before: not this term's
            self._unconfirmed.clear()  # the recovery asks about every unanswered order
            self._close_look()
            if self._follow is not None:
                self._take_followed()  # what the old leader published before it died
                self.poller.unregister(self._follow)
                self._follow.close(0)
                self._follow = None
            try:
                saved = self._signals.get(self._checkpoint_key) if self._signals is not None else None
                if saved:
                    self.checkpoint = EntryCheckpoint(saved.decode())
                self._mark("followed", t0)
                self._log_followed_fills()
                self._mark("followed_logged", t0)
                self._recover_in_flight(t0)
            except Exception:
                # a half-done recovery must not lead: step back, keep following, let the
                # supervisor promote again (the next attempt redoes the whole recovery)
                self.role = "standby"
                self._follow_leader(self._ctx, self._events_endpoint_for_follow)
                self._beat(self._clock_ns())
                raise
            finally:
                self._logged_through = ""  # a leader's later sweeps (a broker resync) look back as any leader's
            self._beat(self._clock_ns())
            return {"epoch": epoch, "took_us": (time.perf_counter_ns() - t0) // 1000,
                    "redriven": self.recovered_submitted, "adopted": self.recovered_adopted,
                    "asked": self.asked_last, "log_entries_read": self.log_entries_read, "entered_ns": entered_ns,
                    "marks_us": {name: ns // 1000 for name, ns in self._marks}}

        return self.call_on_loop(run, timeout_s=90)

    def resync(self) -> dict:
        """The broker adapter restarted: ask it what it has and re-drive what it lacks (leader only)."""

        def run() -> dict:
            if self.role != "leader":
                return {"role": self.role}
            before = self.recovered_submitted
            self._recover_in_flight()
            return {"role": self.role, "redriven": self.recovered_submitted - before}

        return self.call_on_loop(run, timeout_s=30)

    def switch_broker(self, endpoint: str, epoch: int, same_account: bool) -> dict:
        """The group's broker failed over to the adapter at `endpoint`, with `epoch`. A leader
        recovers against it; across accounts it strands what the lost broker never answered."""

        def run() -> dict:
            self.poller.unregister(self._dealer)
            self._dealer.close(0)
            self._dealer = tune(self._ctx.socket(zmq.DEALER))
            self._dealer.connect(endpoint)
            self.poller.register(self._dealer, zmq.POLLIN)
            self._broker_endpoint = endpoint
            self._close_look()  # the next look goes to the new broker
            self.broker_switches += 1
            if self.role != "leader":
                return {"role": self.role}
            t0 = time.perf_counter_ns()
            self.epoch = epoch
            stranded = 0
            if not same_account:
                for rep in self.manager.strand():
                    self.checkpoint.answered(rep.client_order_id)  # never re-sent, so not waited for
                    self._publish(rep)
                    stranded += 1
                self.stranded += stranded
            before = self.recovered_submitted
            self._recover_in_flight()
            self._beat(self._clock_ns())
            return {"role": self.role, "epoch": epoch, "stranded": stranded,
                    "redriven": self.recovered_submitted - before,
                    "took_us": (time.perf_counter_ns() - t0) // 1000}

        return self.call_on_loop(run, timeout_s=90)

    def settle_stranded(self, endpoint: str) -> dict:
        """The lost broker is back (a new adapter on its address, in front of the same account): ask
        it about the orders stranded there, take its word for what it has, and re-drive to the
        current broker what it never got or refused (its old process, and what it held, are gone).
        What it does not know yet (listed UNKNOWN, or taken by its gate and not listed) stays stranded:
        `still_stranded`, for the supervisor to ask again."""

        def run() -> dict:
            ids = self.manager.stranded_ids()
            if not ids or self.role != "leader":
                return {"role": self.role, "stranded": len(ids)}
            report = self._ask_broker_at(endpoint, QueryOrders(self.epoch, self._engine_name, self._clock_ns(), ids,
                                                     self.group, take_over=False))
            orders = self.manager.orders
            plan = plan_settle(ids, report, lambda c: o.exec_ids if (o := orders.get(c)) is not None else None)
            for coid in plan.never_got:
                self.manager.unstrand(coid)
            self._adopt_with_fills(plan.found, plan.fills)
            self._sweep_fills(plan.fills)  # the fills of orders it did not list
            before = self.recovered_submitted
            self._recover_in_flight()  # the current broker: what it lacks of the unstranded is sent
            settled = len(plan.found) + len(plan.never_got)
            self.stranded -= settled
            return {"role": self.role, "found": len(plan.found), "redriven": self.recovered_submitted - before,
                    "still_stranded": len(ids) - settled}

        return self.call_on_loop(run, timeout_s=60)

    def stranded_orders(self) -> list[dict]:
        """The orders stranded at a lost broker (UNKNOWN, BROKER_LOST), for the operator."""

        def run() -> list[dict]:
            out = []
            for coid in self.manager.stranded_ids():
                order = self.manager.orders[coid]
                i = order.intent
                out.append({"client_order_id": coid, "strategy_id": i.strategy_id, "symbol": i.symbol,
                            "side": str(i.side), "quantity": i.quantity, "notional": i.notional,
                            "cum_qty": order.cum_qty, "request_id": i.request_id})
            return out

        return self.call_on_loop(run)

    def order_states(self, client_order_ids: list[str]) -> dict[str, list[str]]:
        """Each asked order as this engine sees it: [state, reason], or absent when it never had it
        (the failover report's look at an accepted signal that never reached the venue)."""

        def run() -> dict[str, list[str]]:
            orders = self.manager.orders
            return {c: [str(o.state), o.reason] for c in client_order_ids if (o := orders.get(c)) is not None}

        return self.call_on_loop(run)

    def resolve_stranded(self, client_order_id: str, filled_qty: float, avg_px: float) -> dict:
        """Close a stranded order on the operator's word (see NativeOrderManager.resolve_stranded):
        its reports are published (the validator's risk and the ledger take them like any other)."""

        def run() -> dict:
            reports = self.manager.resolve_stranded(client_order_id, filled_qty, avg_px, self._clock_ns())
            for rep in reports:
                self._publish(rep)
            self.stranded -= 1
            lifecycle(logger(self.name), "stranded_resolved", client_order_id=client_order_id,
                      filled_qty=filled_qty, avg_px=avg_px)
            return {"client_order_id": client_order_id, "published": [str(r.kind) for r in reports]}

        return self.call_on_loop(run)

    def _ask_broker_at(self, endpoint: str, query: QueryOrders) -> OrdersReport:
        sock = tune(self._ctx.socket(zmq.DEALER))
        sock.connect(endpoint)
        try:
            sock.send(encode(query))
            deadline = time.monotonic() + _QUERY_TIMEOUT_MS / 1000
            while time.monotonic() < deadline:
                if sock.poll(100):
                    msg = broker_event_decoder.decode(sock.recv())
                    if type(msg) is OrdersReport:
                        return msg
            raise TimeoutError(self.name + ": the broker at " + endpoint + " did not list its orders in time")
        finally:
            sock.close(0)

    def cancel_open(self, strategy_id: str | None = None) -> dict:
        """The kill switch's `--cancel-open`: the leader cancels every order of its book that is not
        finished (of one strategy, or all); each is a no-op at the venue if it finished meanwhile.
        The answers are the orders' CANCELED reports (or their fills, if those came first)."""

        def run() -> dict:
            if self.role != "leader":
                return {"role": self.role, "canceled": 0}
            ids = [coid for coid, o in self.manager.orders.items()
                   if o.state in ACTIVE_STATES and (strategy_id is None or o.intent.strategy_id == strategy_id)]
            now = self._clock_ns()
            for coid in ids:
                self._dealer.send(encode(CancelOrder(self.epoch, self._engine_name, coid, self.group)))
                self.manager.cancel_sent(coid, now)
            self.cancels_sent += len(ids)
            lifecycle(logger(self.name), "cancel_open", strategy_id=strategy_id or "*", orders=len(ids))
            return {"role": self.role, "canceled": len(ids), "client_order_ids": ids[:1000]}

        return self.call_on_loop(run)

    def demote(self) -> None:
        """Stop submitting (a manual failover away from this engine); it follows the new leader."""

        def run() -> None:
            self.role = "standby"
            if self._follow is None:
                self._follow_leader(self._ctx, self._events_endpoint_for_follow)

        self.call_on_loop(run)

    # ---------------------------------------------------------------- control

    def stats(self) -> EngineStats:
        m = self.manager
        return EngineStats(
            role=self.role,
            group=self.group,
            epoch=self.epoch,
            broker=self._broker_endpoint,
            broker_switches=self.broker_switches,
            stranded=self.stranded,
            signals=self.signals,
            published=self.published,
            in_flight=len(m.in_flight()),
            checkpoint=self.checkpoint.position,
            recovered_submitted=self.recovered_submitted,
            recovered_adopted=self.recovered_adopted,
            recovered_in_flight=self.recovered_in_flight,
            rolled=m.rolled,
            fenced=self.fenced,
            swept_fills=self.swept_fills,
            repeats_withheld=self.repeats_withheld,
            followed_logged=self.followed_logged,
            followed_from_mark=self.followed_from_mark,
            gaps_filled=self.gaps_filled,
            gap_signals=self.gap_signals,
            looked_up=self.looked_up,
            unconfirmed=len(self._unconfirmed),
            duplicate_signals=m.duplicate_signals,
            duplicate_amends=m.duplicate_amends,
            cancels_sent=self.cancels_sent,
            cancels_timed_out=m.cancels_timed_out,
            unknown_resolved=self.unknown_resolved,
            timed_out=m.timed_out,
            shadow_published=self.shadow_published,
            replaces_sent=self.replaces_sent,
            amends_refused=self.amends_refused,
            duplicate_fills=m.duplicate_fills,
            ignored_reports=m.ignored_reports,
            orphan_reports=m.orphan_reports,
            adopted_open=self.adopted_open,
            open_orders=len(self.open_index),
            pending_events=len(self._pending_events),
            store_failures=self.store_failures,
            events_dropped=self.events_dropped,
            loop_errors=self.loop_errors,
            **self.stages.snapshot(),
            **self.gc.snapshot(),
            tuned=self.tuned,
            last_error=self.last_error,
            fill_hist=self.fill_hist.snapshot(),
        )
