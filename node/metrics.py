"""Prometheus exposition of the node's counters, read from the actors' own `stats()` at scrape time.

Nothing on the per-signal path calls a metric: the actors keep plain integer counters (see each
actor's `stats()`), and `NodeCollector` turns one snapshot of the supervisor's `stats()` dict
into metric families when Prometheus scrapes. A counter that restarts from zero with its actor
(a restarted validator) is an ordinary Prometheus counter reset.

Names (all `nae_*`; every per-actor series carries `actor="validator" | "broker" | "engine:<name>"
| "ledger"`), clean under `promtool check metrics`:

- known fields are mapped by `FIELDS` (`accepted` -> `nae_signals_accepted_total`, ...);
- latency histograms, in seconds (an actor's `node.histogram` snapshot, see `HISTOGRAMS`):
  `nae_signal_reply_seconds` (validator: the wake-up that read a signal .. its reply sent),
  `nae_signal_append_seconds` (the durable append of a wake-up), `nae_ledger_commit_seconds`
  (one ledger batch), `nae_signal_fill_seconds` (when an engine reports it), and
  `nae_failover_seconds` (detection, or the manual request, .. the new leader promoted; from the
  supervisor's failover log);
- the validator's `reasons` -> `nae_rejections_total{reason=...}` (and `retry` -> `nae_signal_retries_total`);
- any other number -> gauge `nae_<kind>_<field>`; a field in ms / us / ns becomes `..._seconds`;
  booleans are 0/1; strings and nested values are skipped; the rolling `*_p50_us` / `*_p99_us`
  percentiles are left to `execnode status` (the histograms carry the distribution);
- `nae_actor_up{actor}`, `nae_build_info{version,python,ray,nautilus_trader}`, and from the
  supervisor: `nae_epoch`, `nae_leader_info{engine}`, `nae_failovers_total`,
  `nae_broker_failovers_total`, `nae_restarts_total{role}`, and per engine group
  `nae_group_epoch{group}`, `nae_group_leader_info{group,engine}`, `nae_group_broker_info{group,broker}`;
- a broker with a login (Schwab): `nae_broker_token_expiry_timestamp_seconds{actor,broker}`, when its
  OAuth refresh token lapses (alerts NaeBrokerTokenExpiry / NaeBrokerTokenExpired, deploy/prometheus).
- a broker with an order-event stream (Schwab): `nae_broker_stream_up{actor}` (connected or not) and the
  counters `nae_broker_stream_{connects,disconnects,frames,wakeups,dropped,unreadable}_total`
  (alerts NaeBrokerStreamDown / NaeBrokerStreamDropping).
"""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata
from typing import Any, Callable, Iterator, Mapping

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from node.histogram import is_snapshot, of_seconds
from prometheus_client.registry import Collector, CollectorRegistry

StatsSource = Callable[[], Mapping[str, Any]]

#: what a scrape answers with (the classic text format every Prometheus reads)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

COUNTER = "counter"
GAUGE = "gauge"
PREFIX = "nae_"

#: roles that are not actors (the supervisor's own entry, and the aliases of the first group's
#: leading engine and active broker: they are reported under their own names)
_NOT_ACTORS = frozenset({"supervisor", "engine", "broker"})
_PERCENTILES = ("_p50_us", "_p99_us", "_p999_us")
#: a field in a sub-unit -> (suffix, factor to seconds)
_UNITS = (("_ms", 1e-3), ("_us", 1e-6), ("_ns", 1e-9))
HISTOGRAM = "histogram"
#: stats field holding a histogram snapshot -> (metric name without `nae_`, help)
HISTOGRAMS: dict[str, tuple[str, str]] = {
    "reply_hist": ("signal_reply_seconds", "Signal read by the validator .. its reply sent (per signal), seconds"),
    "append_hist": ("signal_append_seconds", "The durable append (XADD) of one intake wake-up, seconds"),
    "fill_hist": ("signal_fill_seconds", "Signal accepted .. its order's last fill published, seconds"),
    "commit_hist": ("ledger_commit_seconds", "One ledger batch written to PostgreSQL (one transaction), seconds"),
}
_GATE_EVENTS = {"retry": ("signal_retries", "Retries of an answered request_id (answered again, no new order)")}
_RESTART_ROLES = ("validator", "broker")

#: actor kind -> stats field -> (metric name without `nae_` and `_total`, type, help)
FIELDS: dict[str, dict[str, tuple[str, str, str]]] = {
    "*": {
        "store_failures": ("store_failures", COUNTER, "Appends to Redis that failed"),
        "loop_errors": ("loop_errors", COUNTER, "Exceptions caught at an actor's loop boundary"),
    },
    "validator": {
        "accepted": ("signals_accepted", COUNTER, "Signals accepted: durably appended, then ACKed"),
        "rejected": ("signals_rejected", COUNTER, "Signals answered REJECTED, whatever the reason"),
        "unsent": ("validator_unsent_batches", GAUGE, "Durable batches an engine has not taken yet"),
        "warmed": ("validator_warmed_request_ids", GAUGE, "request_ids rebuilt from the signal log at start"),
        "fallback_frames": ("fallback_frames", COUNTER, "Signals taken from the Redis fallback intake"),
        "fallback_errors": ("fallback_errors", COUNTER, "Errors reading the Redis fallback intake"),
        "unknown_orders": ("unknown_orders", GAUGE, "Orders in UNKNOWN (outcome ambiguous): new risk on their symbols waits"),
    },
    "engine": {
        "epoch": ("engine_epoch", GAUGE, "The epoch this engine holds"),
        "signals": ("engine_signals", COUNTER, "Accepted signals this engine took"),
        "published": ("reports_published", COUNTER, "Execution reports this engine published"),
        "in_flight": ("orders_in_flight", GAUGE, "Orders sent to the broker and not done yet"),
        "pending_events": ("engine_pending_events", GAUGE, "Reports waiting for their durable append"),
        "recovered_submitted": ("recovered_submitted", COUNTER, "Orders re-driven after a failover or restart"),
        "recovered_adopted": ("recovered_adopted", COUNTER, "Orders the broker already had after a failover"),
        "fenced": ("engine_fenced", COUNTER, "Commands refused by the broker for a stale epoch"),
        "swept_fills": ("swept_fills", COUNTER, "Fills found by the executions sweep of a new leader"),
        "repeats_withheld": ("engine_repeats_withheld", COUNTER, "Fills a new leader booked and did not publish again"),
        "duplicate_signals": ("engine_duplicate_signals", COUNTER, "Signals the engine already had"),
        "duplicate_fills": ("engine_duplicate_fills", COUNTER, "Fills dropped as duplicates (by exec_id)"),
        "ignored_reports": ("engine_ignored_reports", COUNTER, "Broker reports ignored"),
        "orphan_reports": ("engine_orphan_reports", COUNTER, "Broker reports for orders the engine does not know"),
        "events_dropped": ("engine_events_dropped", COUNTER, "Reports not published"),
        "relayed": ("engine_relayed", COUNTER, "Signals relayed to the engine's kernel process"),
        "replayed": ("engine_replayed", COUNTER, "Signals replayed from the log"),
        "stranded": ("orders_stranded", GAUGE, "Orders UNKNOWN (BROKER_LOST) at a broker the group moved away from"),
        "broker_switches": ("engine_broker_switches", COUNTER, "Broker failovers this engine followed"),
    },
    "broker": {
        "submitted": ("broker_orders_submitted", COUNTER, "Orders sent to the venue (each client order id once)"),
        "reports": ("broker_reports", COUNTER, "Execution reports from the venue"),
        "epoch": ("broker_epoch", GAUGE, "The newest epoch the broker gate has seen"),
        "refused_stale": ("broker_refused_stale_epoch", COUNTER, "Commands refused for an older epoch"),
        "refused_duplicate": ("broker_refused_duplicate", COUNTER, "Submits refused: client order id already sent"),
        "malformed": ("broker_malformed", COUNTER, "Undecodable commands"),
        "refused_group": ("broker_refused_unknown_group", COUNTER, "Commands naming no configured engine group"),
        "venue_ok": ("broker_venue_ok", GAUGE, "1 when the venue takes orders (0: refused with its health reason)"),
        "login_expires_at_s": ("broker_token_expiry_timestamp_seconds", GAUGE, "When the broker's login lapses"),
        "stream_up": ("broker_stream_up", GAUGE, "1 while the broker's order-event stream (Schwab streamer) is connected"),
        "stream_connects": ("broker_stream_connects", COUNTER, "Order-event stream connections made (the first and each reconnect)"),
        "stream_disconnects": ("broker_stream_disconnects", COUNTER, "Order-event stream connections lost"),
        "stream_frames": ("broker_stream_frames", COUNTER, "Order-event stream frames taken"),
        "stream_wakeups": ("broker_stream_wakeups", COUNTER, "Order reads the stream asked for"),
        "stream_dropped": ("broker_stream_dropped", COUNTER, "Order-event stream frames dropped (not JSON, not a streamer frame)"),
        "stream_unreadable": ("broker_stream_unreadable", COUNTER, "Order-event stream entries naming no order that can be read"),
    },
    "api": {
        "forwarded": ("api_signals_forwarded", COUNTER, "POST /v1/signals forwarded to the intake"),
        "intake_timeouts": ("api_intake_timeouts", COUNTER, "POST /v1/signals with no verdict in time (503)"),
    },
    "ledger": {
        "running": ("ledger_running", GAUGE, "1 while the ledger drains the streams"),
        **{
            name: ("ledger_" + name, COUNTER, "Ledger: " + name.replace("_", " ") + " written or handled")
            for name in ("signals", "events", "monitoring", "dead_letters", "entries", "batches", "claimed", "errors", "refused_rows")
        },
    },
    "reconciler": {
        "runs": ("reconcile_runs", COUNTER, "Reconciliation runs (start-up, schedule, failover, on demand)"),
        "mismatched_runs": ("reconcile_mismatched_runs", COUNTER, "Reconciliation runs that found a difference"),
        "errors": ("reconcile_errors", COUNTER, "Reconciliation runs or records that failed"),
        "booked": ("reconcile_booked_reports", COUNTER, "Reports booked from the broker (adopted orders, missed fills)"),
        "last_matched": ("reconcile_last_matched", GAUGE, "1 when the last reconciliation found the books equal"),
        "failed_halt": ("reconcile_failed_halt", GAUGE, "1 while a RECONCILE_FAILED halt of the reconciler's may be in force"),
        "lifted": ("reconcile_lifted", COUNTER, "RECONCILE_FAILED halts the reconciler lifted after a clean run"),
    },
}

#: fields of a broker's nested `venue` stats that are exported (as in FIELDS["broker"]); the rest of it is not
_VENUE_FIELDS = tuple(f for f in FIELDS["broker"] if f.startswith("stream_"))


def _le(bound: float) -> str:
    return repr(float(bound))


@lru_cache(maxsize=1)
def build_info() -> dict[str, str]:
    """Versions of the node and what it runs on (read once)."""
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {"version": version("nae-execnode"), "python": platform.python_version(), "ray": version("ray"),
            "nautilus_trader": version("nautilus_trader")}


def _lint_safe(name: str) -> str:
    """A gauge name promtool accepts: no metric type in it, no `_total` (that is for counters)."""
    for word in ("_counter", "_gauge", "_histogram", "_summary"):
        name = name.replace(word, "")
    return name[: -len("_total")] + "_all" if name.endswith("_total") else name


def _snake(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    return None


class _Families:
    """Metric families of one scrape, by name; a sample joins the family of its name."""

    def __init__(self) -> None:
        self._by_name: dict[str, Metric] = {}

    def add(self, name: str, kind: str, help_text: str, labels: dict[str, str], value: float) -> None:
        family = self._by_name.get(name)
        if family is None:
            cls = CounterMetricFamily if kind == COUNTER else GaugeMetricFamily
            family = cls(PREFIX + name, help_text, labels=list(labels))
            self._by_name[name] = family
        family.add_metric(list(labels.values()), value)

    def histogram(self, name: str, help_text: str, labels: dict[str, str], snap: Mapping[str, Any]) -> None:
        family = self._by_name.get(name)
        if family is None:
            family = HistogramMetricFamily(PREFIX + name, help_text, labels=list(labels))
            self._by_name[name] = family
        buckets = [(_le(bound), float(n)) for bound, n in snap["buckets"]]
        buckets.append(("+Inf", float(snap.get("count", 0))))
        family.add_metric(list(labels.values()), buckets, float(snap.get("sum_s", 0.0)))

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._by_name.values())


def families(stats: Mapping[str, Any]) -> list[Metric]:
    """The metric families of one `Supervisor.stats()` snapshot (pure: no I/O)."""
    out = _Families()
    out.add("build_info", GAUGE, "Versions of the node and its runtime", build_info(), 1.0)
    for role in sorted(stats):
        if role in _NOT_ACTORS:
            continue
        values = stats[role]
        down = not isinstance(values, Mapping) or "down" in values
        out.add("actor_up", GAUGE, "1 when the actor answered the scrape", {"actor": role}, 0.0 if down else 1.0)
        if not down:
            _actor(out, role, values)
    sup = stats.get("supervisor")
    if isinstance(sup, Mapping):
        _supervisor(out, sup)
    return list(out)


def _actor(out: _Families, role: str, values: Mapping[str, Any]) -> None:
    kind = role.split(":", 1)[0]
    known = FIELDS.get(kind, {})
    common = FIELDS["*"]
    labels = {"actor": role}
    if kind == "engine":
        leader = 1.0 if values.get("role") == "leader" else 0.0
        out.add("engine_leader", GAUGE, "1 for the engine that holds the epoch and submits", labels, leader)
    for field in sorted(values):
        value = values[field]
        if field == "reasons" and isinstance(value, Mapping):
            _reasons(out, role, value)
            continue
        if field == "discrepancies" and kind == "reconciler" and isinstance(value, Mapping):
            for k in sorted(value):
                out.add("reconcile_discrepancies", COUNTER, "Discrepancies found, by kind (node.reconcile)",
                        {"actor": role, "kind": str(k)}, float(value[k]))
            continue
        if field == "venue" and kind == "broker" and isinstance(value, Mapping):
            _venue(out, labels, value)
            continue
        if is_snapshot(value):
            name, help_text = HISTOGRAMS.get(field) or (_snake(kind + "_" + field.removesuffix("_hist")) + "_seconds",
                                                         "Latency histogram " + field + ", seconds")
            out.histogram(name, help_text, labels, value)
            continue
        number = _number(value)
        if number is None or field.endswith(_PERCENTILES):
            continue
        if field == "login_expires_at_s" and kind == "broker":
            out.add("broker_token_expiry_timestamp_seconds", GAUGE, "When the broker's login (OAuth refresh token) "
                    "lapses, seconds since the epoch", {"actor": role, "broker": role.split(":", 1)[-1]}, number)
            continue
        spec = known.get(field) or common.get(field)
        if spec is not None:
            out.add(spec[0], spec[1], spec[2], labels, number)
            continue
        name = _lint_safe(_snake(kind + "_" + field))
        for suffix, factor in _UNITS:
            if name.endswith(suffix):
                name, number = name[: -len(suffix)] + "_seconds", number * factor
                break
        out.add(name, GAUGE, "The actor's stats field " + field, labels, number)


def _venue(out: _Families, labels: dict[str, str], values: Mapping[str, Any]) -> None:
    """A broker's `venue` counters (the venue's own `stats()`): its order-event stream's health."""
    for field in _VENUE_FIELDS:
        number = _number(values.get(field))
        if number is not None:
            spec = FIELDS["broker"][field]
            out.add(spec[0], spec[1], spec[2], labels, number)


def _reasons(out: _Families, role: str, counts: Mapping[str, Any]) -> None:
    for key in sorted(counts):
        number = _number(counts[key])
        if number is None:
            continue
        event = _GATE_EVENTS.get(key)
        if event is not None:
            out.add(event[0], COUNTER, event[1], {"actor": role}, number)
        else:
            out.add("rejections", COUNTER, "Signals refused, by reason code (a signal may carry several)",
                    {"actor": role, "reason": str(key)}, number)


def _supervisor(out: _Families, sup: Mapping[str, Any]) -> None:
    epoch = _number(sup.get("epoch"))
    if epoch is not None:
        out.add("epoch", GAUGE, "The epoch the supervisor last granted", {}, epoch)
    leader = sup.get("leader")
    if isinstance(leader, str):
        out.add("leader_info", GAUGE, "The leading engine", {"engine": leader}, 1.0)
    failovers = sup.get("failovers")
    out.add("failovers", COUNTER, "Engine failovers and failbacks", {},
            float(len(failovers)) if isinstance(failovers, list) else 0.0)
    out.histogram("failover_seconds", "Leader failover: detection (or the manual request) .. new leader promoted, "
                  "seconds", {}, of_seconds(failover_durations(failovers if isinstance(failovers, list) else [])))
    moves = sup.get("broker_failovers")
    out.add("broker_failovers", COUNTER, "Engine groups moved to another broker", {},
            float(len(moves)) if isinstance(moves, list) else 0.0)
    groups = sup.get("groups")
    for name, group in sorted(groups.items()) if isinstance(groups, Mapping) else ():
        if not isinstance(group, Mapping):
            continue
        epoch = _number(group.get("epoch"))
        if epoch is not None:
            out.add("group_epoch", GAUGE, "The epoch of an engine group", {"group": name}, epoch)
        out.add("group_leader_info", GAUGE, "The leading engine of a group",
                {"group": name, "engine": str(group.get("leader", ""))}, 1.0)
        out.add("group_broker_info", GAUGE, "The active broker of a group",
                {"group": name, "broker": str(group.get("broker", ""))}, 1.0)
    per_role = dict.fromkeys(_RESTART_ROLES, 0)
    restarts = sup.get("restarts")
    for event in restarts if isinstance(restarts, list) else ():
        role = event.get("role", "") if isinstance(event, Mapping) else ""
        per_role[str(role)] = per_role.get(str(role), 0) + 1
    for role, count in sorted(per_role.items()):
        out.add("restarts", COUNTER, "Actor restarts by the supervisor", {"role": role}, float(count))


def failover_durations(events: list) -> list[float]:
    """Seconds from detection (or the start of a manual one) to promotion, per failover event."""
    out = []
    for event in events:
        if not isinstance(event, Mapping):
            continue
        promoted = _number(event.get("promoted_ns"))
        start = _number(event.get("detected_ns")) or _number(event.get("started_ns"))
        if promoted and start and promoted >= start:
            out.append((promoted - start) / 1e9)
    return out


class NodeCollector(Collector):
    """A prometheus_client collector over a stats source (normally `Supervisor.stats`). A source
    that raises yields `nae_scrape_error 1` instead of failing the scrape."""

    def __init__(self, source: StatsSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self._source()
        except Exception:  # noqa: BLE001 - a scrape reports the failure, it never raises
            stats = None
        error = GaugeMetricFamily(PREFIX + "scrape_error", "1 when the node's stats could not be read")
        error.add_metric([], 0.0 if stats is not None else 1.0)
        yield error
        if stats is not None:
            yield from families(stats)


def make_registry(source: StatsSource) -> CollectorRegistry:
    """A registry of its own (not the process-global one) holding one `NodeCollector`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(source))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """Prometheus text for one scrape of `registry`."""
    return generate_latest(registry)


def render(stats: Mapping[str, Any]) -> bytes:
    """Prometheus text of one stats snapshot (for tests and `execnode status --prometheus`-style use)."""
    return exposition(make_registry(lambda: stats))
