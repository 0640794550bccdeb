"""What every engine host shares, whatever runs the orders (the native manager, a Nautilus kernel):
the wiring the supervisor hands it, its group's router and checkpoint key, and its streams."""

from __future__ import annotations

import time
from typing import Callable

import redis

from actors.service import LoopService
from actors.wiring import EngineWiring
from node import proctune
from node.checkpoint import EntryCheckpoint, checkpoint_key
from node.config import NodeConfig
from node.engine_opening import opened_before, opening, spawn_key
from node.errors import StoreError
from node.followed import FOLLOWED_LOG_MARGIN_MS, decode_mark, encode_mark, logged_mark_key, split_at_mark, unlogged
from node.messages import ExecutionReport, SignalAccepted, SignalBatch, encode
from node.modes import SHADOW_SUFFIX, ModeTable, Route, amend_at, is_shadow
from node.router import Router
from node.streams import EVENTS_FIELD, SIGNALS_FIELD, StreamLog, connect_redis, entry_key, logged_since_ms, pack_batch


class EngineBase(LoopService):
    _role = ""
    tuned: dict = {}

    @property
    def role(self) -> str:
        """"leader" or "standby"; a change re-applies the process's niceness and CPUs
        (`[tuning]`: a hot standby may yield the CPU, a promoted one takes it back)."""
        return self._role

    @role.setter
    def role(self, value: str) -> None:
        if value != self._role:
            self._role = value
            self.tuned = proctune.apply(self._cfg.tuning, "engine:" + self._engine_name if value == "leader" else "standby")

    def _pause_ns(self) -> int:
        """A hot standby only follows: it sleeps `[tuning] standby_wake_ms` after each wake-up, so what
        came meanwhile is taken in one (its CPU per signal is mostly per wake-up); a leader never does.
        A promotion waits that long at most."""
        return self._standby_pause_ns if self._role != "leader" else 0

    def __init__(
        self, cfg: NodeConfig, engine_name: str, wiring: EngineWiring, clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        super().__init__()
        self.name = "engine:" + engine_name
        self._engine_name = self.engine_name = engine_name
        self._cfg = cfg
        self.gc_freeze, self.gc_threshold0 = cfg.tuning.gc_freeze, cfg.tuning.gc_threshold0
        self._standby_pause_ns = cfg.tuning.standby_wake_ms * 1_000_000
        self._redis_url = wiring.redis_url
        self._broker_endpoint = wiring.broker_endpoint
        self._publish_endpoint = wiring.publish_endpoint
        self.epoch = wiring.epoch
        self._recover = wiring.recover
        self._spawn_id = wiring.spawn_id
        self.restarted = False  # this spawn opened before: Ray restarted it (node.engine_opening)
        self.role = wiring.role
        self._heartbeat_endpoint = wiring.heartbeat_endpoint
        self._port = wiring.port
        self.group = wiring.group
        self._router = Router.from_config(cfg)
        self._modes = ModeTable.from_config(cfg)  # paper / shadow / canary / live per strategy (node.modes)
        self._clock_ns = clock_ns
        self.checkpoint = EntryCheckpoint()
        self._checkpoint_key = checkpoint_key(cfg.node_id, wiring.group)
        self._pending_events: list[bytes] = []
        # the logged mark (node.followed): the newest execution published into `_pending_events`, and
        # the mark its append made, written with the next flush; off for good once events were dropped
        self._mark_key = logged_mark_key(cfg.node_id, wiring.group)
        self._last_exec = ""
        self._logged_mark = b""
        self._marks_on = True
        self.followed_from_mark = 0  # promotions that read the events stream from a logged mark
        self._logged_through = ""  # this promotion's logged mark's entry, once the stream showed it holds its exec id
        self._log: StreamLog | None = None  # execution.events
        self._signals: StreamLog | None = None  # execution.signals
        self.signals = 0
        self.published = 0
        self.store_failures = 0
        self.followed_logged = 0  # followed fills a promotion appended to the events stream (the old leader never did)
        self._last_entry = ""  # the signals entry of the newest batch taken ("": none yet, no gap judged)
        self._taken_after: str | None = None  # every entry after it through `_last_entry` was taken (None: not known)
        self.batches_read_already = 0  # forwarded batches a recovery had read from the log before they came
        self.gaps_filled = 0  # batches whose `prev_id` this engine never got: the gap read back from the log
        self.gap_signals = 0  # signals in those gaps
        self.gap_read_failures = 0  # gap reads the store refused (read again at the next batch)

    def _open_streams(self) -> redis.Redis | None:
        """The events and signal streams (none without Redis); the client, for what else it reads."""
        if not self._redis_url:
            return None
        client = connect_redis(self._redis_url)
        st = self._cfg.storage
        self._log = StreamLog(client, st.events_stream, EVENTS_FIELD, st.stream_maxlen)
        self._signals = StreamLog(client, st.signals_stream, SIGNALS_FIELD, st.stream_maxlen)
        self._rejoin_if_restarted(client)
        return client

    def _rejoin_if_restarted(self, client: redis.Redis) -> None:
        """Before the role decides anything: a spawn that opened before (Ray re-ran its constructor
        with its first wiring) opens as a standby and waits for the supervisor (node.engine_opening).
        Redis not answering: the wiring stands (Ray's own flag already made a restart a standby)."""
        if not self._spawn_id:
            return
        try:
            previous = client.set(spawn_key(self._cfg.node_id, self._engine_name), self._spawn_id, get=True)
        except redis.RedisError:
            return
        if opened_before(previous, self._spawn_id):
            self.restarted = True
            self.role, self._recover = opening(self.role, self._recover, restarted=True)

    def _flush_events(self) -> None:
        """The reports published since the last flush, as one `execution.events` entry, and the
        leader's checkpoint with them in the same round trip (kept and retried while Redis is away)."""
        cp = self.checkpoint
        leader = self.role == "leader"
        also = (self._checkpoint_key, cp.position.encode()) if cp.changed and leader else None
        index = self._open_order_changes() if leader else None
        mark = (self._mark_key, self._logged_mark) if self._logged_mark and leader else None
        entry = None
        try:
            if self._pending_events or index is not None or mark is not None:
                packed = pack_batch(self._pending_events) if self._pending_events else None
                entry = self._log.append_packed(packed, also, index, mark)
            elif also is not None:
                self._log.set(*also)
        except StoreError:
            self._note_store_failure()
            return
        if index is not None:
            self._open_orders_flushed()
        if mark is not None:
            self._logged_mark = b""
        if entry is not None and self._last_exec and self._marks_on:  # the stream holds it now: said next flush
            self._logged_mark = encode_mark(entry, self._last_exec)
        self._last_exec = ""
        cp.changed = False
        self._pending_events = []

    def _with_gap(self, batch: SignalBatch) -> list[tuple[str, list[SignalAccepted]]]:
        """The entries to take for `batch`, in log order: those logged between the last batch this
        engine took and this one that never reached it (`prev_id` names an entry it did not get: a
        validator killed between its append and its forward, or its queue for this engine lost with
        it), read back from the signal log, then the batch itself. Their signals were ACKed: without
        this, a leader's checkpoint passed them by and no recovery read them again (5 ACKed signals
        lost in a 100-kill run at a validator kill). A store that does not answer: the gap is read at
        the next batch (what it finds that this engine already has is a repeat it drops)."""
        last = self._last_entry
        if not last or not batch.prev_id:  # a run of entries starts here: nothing before it judged
            self._last_entry = batch.entry_id
            self._taken_after = batch.prev_id or None
            return [(batch.entry_id, batch.signals)]
        if batch.prev_id == last or self._signals is None:
            self._last_entry = batch.entry_id
            return [(batch.entry_id, batch.signals)]
        if entry_key(batch.entry_id) <= entry_key(last):  # a recovery read it from the log already
            self.batches_read_already += 1
            return []
        self._last_entry = batch.entry_id
        try:
            missed = self._signals.signals_between(last, batch.entry_id)
        except StoreError:
            self._last_entry = last
            self.gap_read_failures += 1
            return [(batch.entry_id, batch.signals)]
        self.gaps_filled += 1
        self.gap_signals += sum(len(signals) for _, signals in missed)
        missed.append((batch.entry_id, batch.signals))
        return missed

    def _log_followed(self, fills: list[ExecutionReport]) -> None:
        """On promotion, whatever the engine: the fills followed from the old leader (`node.followed`)
        that `execution.events` does not hold (it died or was fenced between publishing them and its
        events flush) go, once, ahead of anything this engine has pending or publishes next; never
        to subscribers again. The stream is read forward from the oldest one's time to its end
        (exact); unreadable: all are appended (a repeat the ledger dedupes by exec id, never a
        loss). They go with the next events flush (kept and retried while Redis is away)."""
        if not fills or self._log is None:
            return
        try:
            fills, logged = self._past_logged_mark(fills)
            if logged is None:
                logged = self._log.exec_ids_since(logged_since_ms(fills, FOLLOWED_LOG_MARGIN_MS),
                                                  {f.exec_id for f in fills})
        except StoreError:
            logged = set()
        missing = [encode(f) for f in unlogged(fills, logged)]
        self._pending_events[:0] = missing  # the stream keeps their order, ahead of this engine's own
        self.followed_logged += len(missing)

    def _past_logged_mark(self, fills: list[ExecutionReport]) -> tuple[list[ExecutionReport], set[str] | None]:
        """From the group's logged mark (node.followed), when this engine followed its exec id and the
        stream holds it from the mark's entry on: (the fills followed after it, those of them the
        stream holds). Otherwise (no mark, not followed, trimmed; several groups or modes, whose
        leaders' fills interleave here): (`fills`, None), for the read by time. Raises `StoreError`."""
        if not self._router.single or self._modes.active:
            return fills, None
        mark = decode_mark(self._log.get(self._mark_key))
        if mark is None:
            return fills, None
        entry_id, exec_id = mark
        after = split_at_mark(fills, exec_id)
        if after is None:
            return fills, None
        found = self._log.exec_ids_from(entry_id, {exec_id} | {f.exec_id for f in after})
        if exec_id not in found:
            return fills, None
        self.followed_from_mark += 1
        self._logged_through = entry_id
        return after, found

    def _open_order_changes(self) -> tuple[str, dict[str, bytes], list[str]] | None:
        """(hash key, open orders to set, to delete) for this flush (`node.open_orders`); None: none."""
        return None

    def _open_orders_flushed(self) -> None:
        pass

    def _note_store_failure(self) -> None:
        self.store_failures += 1

    def _routed_here(self, strategy_id: str, symbol: str) -> bool:
        if self._modes.active:
            entry = self._modes.entry_of(strategy_id[:-len(SHADOW_SUFFIX)] if is_shadow(strategy_id) else strategy_id)
            if entry is not None:
                return self.group in (entry.paper_group, entry.live_group)
        return self._router.single or self._router.group_of(strategy_id, symbol) == self.group

    def _mine(self, signals: list) -> list:
        """The signals routed to this engine's group: by the validator's stamp for a strategy in
        modes (node.modes: a shadow signal comes to the paper group as its copy), else by the router."""
        if self._router.single and not self._modes.active:
            return signals
        route, group = self._router.group_of, self.group
        if not self._modes.active:
            return [acc for acc in signals if route(acc.signal.strategy_id, acc.signal.symbol) == group]
        out = []
        take = self._modes.take
        for acc in signals:
            stamp = acc.route
            if stamp and self._modes.entry_of(acc.signal.strategy_id) is not None:
                got = amend_at(acc, self._original_strategy(acc)) if stamp == Route.AMEND else take(acc, group)
                if got is not None:
                    out.append(got)
            elif self._router.single or route(acc.signal.strategy_id, acc.signal.symbol) == group:
                out.append(acc)
        return out

    def _original_strategy(self, acc) -> str | None:
        """The strategy id under which this engine holds the order an amend names (None: not held)."""
        return None
