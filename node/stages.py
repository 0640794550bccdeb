"""Where a signal's time goes: per-stage latency histograms the actors fill once per wake-up.

A *stage* is the time between two stamps on a signal's way (client send, intake receive, risk done,
appended, reply sent, engine receive, order sent, broker report, report published, client
receive). An actor owns a `StageClock`, calls `observe(stage, ns, count)` once per wake-up (a
bisect over `BOUNDS_NS` and three additions; `count` signals that spent `ns` each, e.g. every
signal of a batch in its durable append), and its `stats()` carries `snapshot()`: one field
``stage_<name>_hist`` per stage, in the plain histogram form the metrics exporter turns into a
Prometheus histogram in seconds (``{"hist": True, "buckets": [[le_s, cumulative], ...],
"sum_s", "count"}``). Nothing here formats, logs or allocates per signal.

`budget(snapshots)` turns the snapshots of one run (`diff` of two reads) into the budget table:
p50/p99 per stage in microseconds, interpolated inside the fine log buckets (10 per decade, so a
percentile is within ~12% of the exact one).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from enum import Enum
from typing import Any, Iterable, Mapping


class Stage(str, Enum):
    """Stages in path order; the value is the stats field's middle part."""

    WIRE_IN = "wire_in"  # client send (the envelope's signing time) -> intake read (wall clocks of one host)
    INTAKE_GATE = "intake_gate"  # intake receive -> decoded, verified, risk done (the wake-up's gate loop)
    APPEND = "append"  # risk done -> durably appended (one XADD per wake-up)
    REPLY = "reply"  # appended -> every reply of the wake-up sent
    TO_ENGINE = "to_engine"  # intake receive -> engine receive (wall clocks of one host)
    ENGINE_SUBMIT = "engine_submit"  # engine receive -> orders sent to the broker
    BROKER_REPORT = "broker_report"  # broker/venue report stamped -> engine receive
    PUBLISH = "publish"  # engine receive of a report -> report published


LABELS: dict[Stage, str] = {
    Stage.WIRE_IN: "client send -> intake read",
    Stage.INTAKE_GATE: "intake receive -> decoded + risk done",
    Stage.APPEND: "risk done -> appended (XADD)",
    Stage.REPLY: "appended -> reply sent",
    Stage.TO_ENGINE: "intake receive -> engine receive",
    Stage.ENGINE_SUBMIT: "engine receive -> order sent",
    Stage.BROKER_REPORT: "venue report -> engine receive",
    Stage.PUBLISH: "report receive -> published",
}
PREFIX, SUFFIX = "stage_", "_hist"
_ALIASES = frozenset({"supervisor", "engine", "broker"})  # a node's stats: roles that repeat an actor
_PER_DECADE = 10
#: upper bounds, ns: 1 us .. 10 s, 10 per decade (and +Inf past the last)
BOUNDS_NS: tuple[int, ...] = tuple(int(round(10 ** (3 + k / _PER_DECADE))) for k in range(7 * _PER_DECADE + 1))


def field(stage: Stage) -> str:
    return PREFIX + stage.value + SUFFIX


class StageClock:
    """One histogram (counts per bucket, sum, count) per stage; observed on the actor's own loop."""

    __slots__ = ("_counts", "_sum_ns", "_n")

    def __init__(self) -> None:
        self._counts = {s: [0] * (len(BOUNDS_NS) + 1) for s in Stage}
        self._sum_ns = dict.fromkeys(Stage, 0)
        self._n = dict.fromkeys(Stage, 0)

    def observe(self, stage: Stage, ns: int, count: int = 1) -> None:
        """`count` signals spent `ns` nanoseconds each in `stage` (a negative clock skew counts as 0)."""
        if ns < 0:
            ns = 0
        self._counts[stage][bisect_left(BOUNDS_NS, ns)] += count
        self._sum_ns[stage] += ns * count
        self._n[stage] += count

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """{"stage_<name>_hist": histogram snapshot} for every stage observed at least once."""
        out = {}
        for s in Stage:
            if not self._n[s]:
                continue
            cumulative, running = [], 0
            for bound, n in zip(BOUNDS_NS, self._counts[s]):
                running += n
                cumulative.append([bound / 1e9, running])
            out[field(s)] = {"hist": True, "buckets": cumulative, "sum_s": self._sum_ns[s] / 1e9, "count": self._n[s]}
        return out


# ---------------------------------------------------------------- reading snapshots (off the path)


def stage_fields(stats: Mapping[str, Any]) -> dict[str, dict]:
    """Every stage histogram in a node's `stats()` (role -> actor stats), merged across actors."""
    merged: dict[str, dict] = {}
    for role, values in stats.items():
        if role in _ALIASES or not isinstance(values, Mapping):
            continue
        for name, snap in values.items():
            if name.startswith(PREFIX) and name.endswith(SUFFIX) and _is_hist(snap):
                merged[name] = _add(merged.get(name), snap)
    return merged


def diff(after: Mapping[str, dict], before: Mapping[str, dict]) -> dict[str, dict]:
    """What was observed between two reads of `stage_fields` (a counter reset keeps `after`)."""
    out = {}
    for name, a in after.items():
        b = before.get(name)
        if b is None or b["count"] > a["count"]:
            out[name] = a
            continue
        buckets = [[le, ca - cb] for (le, ca), (_, cb) in zip(a["buckets"], b["buckets"])]
        out[name] = {"hist": True, "buckets": buckets, "sum_s": a["sum_s"] - b["sum_s"], "count": a["count"] - b["count"]}
    return out


def percentile_us(snap: Mapping[str, Any], q: float) -> float | None:
    """The q-th percentile (0..100) in microseconds, log-interpolated inside its bucket."""
    total = snap.get("count", 0)
    if total <= 0:
        return None
    rank = q / 100.0 * total
    lower_s, below = 0.0, 0
    for le_s, cum in snap["buckets"]:
        if cum >= rank and cum > below:
            frac = (rank - below) / (cum - below)
            lo = lower_s if lower_s > 0 else le_s / 10 ** (1 / _PER_DECADE)
            return round(lo * math.exp(frac * math.log(le_s / lo)) * 1e6, 1)
        lower_s, below = le_s, cum
    return round(lower_s * 1e6, 1)  # past the last bound: report the bound


def budget(snaps: Mapping[str, dict]) -> list[dict]:
    """The budget table: one row per stage observed, in path order."""
    rows = []
    for s in Stage:
        snap = snaps.get(field(s))
        if not snap or not snap.get("count"):
            continue
        rows.append({"stage": s.value, "span": LABELS[s], "n": snap["count"],
                     "p50_us": percentile_us(snap, 50.0), "p99_us": percentile_us(snap, 99.0),
                     "mean_us": round(snap["sum_s"] / snap["count"] * 1e6, 1)})
    return rows


def budget_table(rows: Iterable[dict]) -> str:
    lines = ["%-16s %-40s %9s %9s %9s %8s" % ("stage", "span", "p50 us", "p99 us", "mean us", "n")]
    for r in rows:
        lines.append("%-16s %-40s %9s %9s %9s %8d" % (r["stage"], r["span"], r["p50_us"], r["p99_us"], r["mean_us"], r["n"]))
    return "\n".join(lines)


def _is_hist(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("hist") is True and isinstance(value.get("buckets"), list)


def _add(a: dict | None, b: Mapping[str, Any]) -> dict:
    if a is None:
        return {"hist": True, "buckets": [list(x) for x in b["buckets"]], "sum_s": b["sum_s"], "count": b["count"]}
    a["buckets"] = [[le, ca + cb] for (le, ca), (_, cb) in zip(a["buckets"], b["buckets"])]
    a["sum_s"] += b["sum_s"]
    a["count"] += b["count"]
    return a
