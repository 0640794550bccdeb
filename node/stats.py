"""The actors' counters, as typed structs defined once (pure: no I/O).

An actor's `stats()` builds one of these; it leaves the process as plain data where it leaves
(`to_plain`, at the Ray actor's boundary in `actors/ray_actors.py`), so the supervisor, the HTTP
API, `/metrics` and `execnode status` see the same JSON shape as before: a field is always there,
except the optional histograms (`None` fields are left out: a stage never observed has no key).
"""

from __future__ import annotations

from typing import Any

import msgspec

from node.stages import PREFIX, SUFFIX, Stage

Hist = dict[str, Any]  # node.histogram snapshot: {"hist": True, "buckets": [...], "sum_s", "count"}


class _Stats(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every field is required, except the optional ones (default None: left out when None)."""


class LoopFields(_Stats, kw_only=True):
    """Every loop service: exceptions caught at its loop boundary, and the newest ("" none)."""

    loop_errors: int
    last_error: str


class GcFields(LoopFields, kw_only=True):
    """A loop service that also reports `node.gcwatch.GcWatch.snapshot()`, flat (structs inherit
    in one line: msgspec takes one base with fields)."""

    gc_frozen: int
    gc_pause_hist: Hist
    gc0_collections: int
    gc0_pause_total_ms: float
    gc0_pause_max_ms: float
    gc0_cpu_total_ms: float
    gc1_collections: int
    gc1_pause_total_ms: float
    gc1_pause_max_ms: float
    gc1_cpu_total_ms: float
    gc2_collections: int
    gc2_pause_total_ms: float
    gc2_pause_max_ms: float
    gc2_cpu_total_ms: float


class StageFields(GcFields, kw_only=True):
    """... and `node.stages.StageClock.snapshot()`: a histogram per stage observed at least once."""

    stage_wire_in_hist: Hist | None = None
    stage_intake_gate_hist: Hist | None = None
    stage_append_hist: Hist | None = None
    stage_reply_hist: Hist | None = None
    stage_to_engine_hist: Hist | None = None
    stage_engine_submit_hist: Hist | None = None
    stage_broker_report_hist: Hist | None = None
    stage_publish_hist: Hist | None = None


class EngineStats(StageFields, kw_only=True):
    """The native engine host (`actors/engine.py`)."""

    role: str
    group: str
    epoch: int
    broker: str
    broker_switches: int
    stranded: int
    signals: int
    published: int
    in_flight: int
    checkpoint: str
    recovered_submitted: int
    recovered_adopted: int
    recovered_in_flight: int
    rolled: int
    fenced: int
    swept_fills: int
    looked_up: int
    unconfirmed: int
    duplicate_signals: int
    duplicate_amends: int
    cancels_sent: int
    cancels_timed_out: int  # orders made UNKNOWN (CANCEL_TIMEOUT) by a cancel's deadline
    unknown_resolved: int  # orders a deadline made UNKNOWN, resolved by the broker adapter's word
    timed_out: int  # orders made UNKNOWN (TIMEOUT) by the submit deadline
    shadow_published: int  # shadow copies' reports, to the shadow stream (node.modes)
    replaces_sent: int
    amends_refused: int
    duplicate_fills: int
    ignored_reports: int
    orphan_reports: int
    adopted_open: int
    open_orders: int
    pending_events: int
    store_failures: int
    events_dropped: int
    tuned: dict[str, Any]
    fill_hist: Hist
    repeats_withheld: int  # fills a new leader booked, not published again (exec id followed from the old leader)
    followed_logged: int  # followed fills a promotion appended to execution.events (the old leader never did)
    followed_from_mark: int  # promotions that read the stream for them from the group's logged mark (node.followed)
    gaps_filled: int  # batches whose predecessor never reached this engine: the gap read back from the log
    gap_signals: int  # ACKed signals in those gaps


class KernelStats(_Stats, kw_only=True):
    """The Nautilus kernel child's counters (its control channel's `KernelStats` answer)."""

    signals: int
    sent: int
    reports: int
    published: int
    duplicate_signals: int
    rejected_local: int
    duplicate_fills: int
    orphan_reports: int
    passthrough_reports: int
    bad_frames: int
    intake_errors: int
    orders_in_cache: int
    trader_running: bool
    standby: bool
    epoch: int
    intake_frames: int
    held_sends: int
    held_open: int
    followed: int
    followed_fills: int  # a standby's newest followed fills kept for its promotion (node.followed)
    early_applied: int
    early_waiting: int
    promotions: int
    resent: int
    adopted: int
    in_flight: int
    swept: int
    cancels: int  # cancels sent to the broker (cancel signals, replaces' cancels, --cancel-open)
    cancels_timed_out: int  # orders made UNKNOWN (CANCEL_TIMEOUT) by a cancel's deadline
    held_cancels: int  # a standby's cancels held, not sent (a promotion sends those still open)
    held_amends: int  # cancels and replaces a standby held since it started (counter)
    adopted_replacements: int  # replacements a promotion found at the broker: adopted, not sent


class NautilusEngineStats(LoopFields, kw_only=True):
    """The Nautilus engine host (`actors/nautilus_engine.py`); `child`: the kernel's counters
    (`KernelStats` as plain data), or {"error": type} when its control channel did not answer, {}
    without a live child."""

    kind: str
    role: str
    epoch: int
    signals: int
    relayed: int
    replayed: int
    child_starts: int
    broker_switches: int
    child_start_failures: int
    child_ready_ms: float
    last_promotion: dict[str, Any]
    published: int
    pending_events: int
    store_failures: int
    followed_logged: int  # followed fills a promotion appended to execution.events (the old leader never did)
    followed_from_mark: int  # promotions that read the stream for them from the group's logged mark (node.followed)
    gaps_filled: int  # batches whose predecessor never reached this engine: the gap read back from the log
    gap_signals: int  # ACKed signals in those gaps
    child_pid: int | None
    child: dict[str, Any]


class BrokerStats(LoopFields, kw_only=True):
    """The broker adapter host (`actors/broker.py`); `venue`: the venue's own counters."""

    submitted: int
    reports: int
    epoch: int
    epochs: dict[str, int]
    refused_stale: int
    stale_from: dict[str, int]
    last_stale: str
    refused_duplicate: int
    refused_group: int
    malformed: int
    orders_tracked: int
    forgotten: int
    first_submit_ns: dict[str, dict[int, int]]
    venue_health: dict[str, Any]
    venue_ok: bool
    login_expires_at_s: float | None
    venue: dict[str, Any]


class ValidatorStats(StageFields, kw_only=True):
    """The validator (`actors/validator.py`): intake counts, the in-doubt appends, UNKNOWN orders,
    the risk state it restored at start (`restored`: {} before that), the gate's refusals by reason."""

    accepted: int
    rejected: int
    store_failures: int
    in_doubt: int
    in_doubt_logged: int
    in_doubt_voided: int
    unsent: int
    warmed: int
    fallback_frames: int
    fallback_errors: int
    wake_p50_us: float
    wake_p99_us: float
    append_p50_us: float
    append_p99_us: float
    unknown_orders: int
    unknown_symbols: list[str]
    reply_hist: Hist
    append_hist: Hist
    restored: dict[str, Any]
    unsaved_controls: int
    snapshots_saved: int  # the risk snapshot's writer (actors/snapshot_writer.py)
    snapshot_failures: int
    snapshot_writing: bool
    snapshot_last_error: str
    snapshot_write_hist: Hist
    reasons: dict[str, int]
    peer_limited: int
    peers: int


class LedgerStats(_Stats, kw_only=True):
    """The PostgreSQL ledger (`actors/ledger.py`): entries drained by stream, commit latency;
    `degraded` only while it is not writing (not connected to PostgreSQL yet)."""

    signals: int
    events: int
    monitoring: int
    dead_letters: int
    entries: int
    batches: int
    claimed: int
    errors: int
    refused_rows: int
    running: bool
    last_error: str
    commit_p50_us: float
    commit_p99_us: float
    commit_hist: Hist
    degraded: str | None = None


class ReconcilerStats(_Stats, kw_only=True):
    """The reconciler (`actors/reconciler.py`): runs, discrepancies by kind, the last run ("" / None /
    0.0 before the first; `last_matched` is there, None, until a run ends)."""

    runs: int
    mismatched_runs: int
    errors: int
    booked: int
    discrepancies: dict[str, int]
    last_run_id: str
    last_matched: bool | None
    last_took_ms: float
    last_trigger: str
    last_error: str
    failed_halt: bool  # a RECONCILE_FAILED halt of its own may be in force (it runs again soon, to lift it)
    lifted: int  # RECONCILE_FAILED halts it lifted (targets), after a run that compared clean


class SupervisorStats(_Stats, kw_only=True):
    """The supervisor's own line of `Supervisor.stats()` (`actors/supervisor.py`): the first group's
    epoch and leader, restarts and failovers (events as recorded), every group's lane, the recorder's
    counters, health (`ok`, `gave_up`) and the roles that run degraded."""

    epoch: int
    leader: str
    restarts: list[dict[str, Any]]
    start_took_ms: dict[str, float]
    failovers: list[dict[str, Any]]
    broker_failovers: list[dict[str, Any]]
    groups: dict[str, dict[str, Any]]
    epoch_grants: int
    recorder: dict[str, int]
    stale_demotes: int
    health: dict[str, Any]
    watch_errors: int
    resumed: dict[str, Any]
    last_watch_error: str
    degraded: list[str]


def to_plain(stats: Any) -> Any:
    """What leaves the actor: a stats struct as plain data (dicts, lists, numbers, strings); anything
    else as it is."""
    if isinstance(stats, msgspec.Struct):
        return msgspec.to_builtins(stats)
    return stats


#: every stage has its field (checked by the unit test: a new Stage needs one in StageFields)
STAGE_FIELDS = tuple(PREFIX + s.value + SUFFIX for s in Stage)
