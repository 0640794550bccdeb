"""`execnode status`: one stats snapshot of a running node, as a view for machines and a table for people.

Pure: `view(stats, breakers)` takes what `Supervisor.stats()` returns (and the validator's
breaker states) and keeps what an operator reads first: each engine group (epoch, leader, active
broker), each engine and broker (up or down, role, epoch, orders in flight, stranded UNKNOWN
orders), the breakers, the ledger's lag, the intake's counters and the last loop errors.
`table(view)` renders it as fixed-width text.
"""

from __future__ import annotations

from typing import Any, Mapping

_DOWN = "down"


def _up(values: Any) -> bool:
    return isinstance(values, Mapping) and "down" not in values


def view(stats: Mapping[str, Any], breakers: Mapping[str, Any] | None = None,
         ledger_lag: Mapping[str, Any] | None = None) -> dict[str, Any]:
    sup_raw = stats.get("supervisor")
    sup: Mapping[str, Any] = sup_raw if isinstance(sup_raw, Mapping) else {}
    groups_raw = sup.get("groups")
    groups: Mapping[str, Any] = groups_raw if isinstance(groups_raw, Mapping) else {}
    engines, brokers = [], []
    for role in sorted(stats):
        values = stats[role]
        if role.startswith("engine:"):
            up = _up(values)
            v = values if up else {}
            engines.append({"name": role.split(":", 1)[1], "state": "up" if up else _DOWN,
                            "detail": "" if up else str(values.get("down", "")) if isinstance(values, Mapping) else "",
                            "kind": v.get("kind", "native") if up else "", "group": v.get("group", ""), "role": v.get("role", ""),
                            "epoch": v.get("epoch"), "in_flight": v.get("in_flight", 0),
                            "stranded": v.get("stranded", 0), "loop_errors": v.get("loop_errors", 0),
                            "last_error": v.get("last_error", "")})
        elif role.startswith("broker:"):
            up = _up(values)
            v = values if up else {}
            brokers.append({"name": role.split(":", 1)[1], "state": "up" if up else _DOWN,
                            "epoch": v.get("epoch"), "submitted": v.get("submitted", 0),
                            "refused_stale": v.get("refused_stale", 0), "loop_errors": v.get("loop_errors", 0),
                            "last_error": v.get("last_error", "")})
    validator = stats.get("validator")
    vup = _up(validator)
    vals: Mapping[str, Any] = validator if isinstance(validator, Mapping) and vup else {}
    ledger = stats.get("ledger")
    return {
        "groups": [{"name": name, "epoch": g.get("epoch"), "leader": g.get("leader"), "broker": g.get("broker"),
                    "promoting": g.get("promoting") or ""}
                   for name, g in sorted(groups.items()) if isinstance(g, Mapping)],
        "engines": engines,
        "brokers": brokers,
        "validator": {"state": "up" if vup else _DOWN, "accepted": vals.get("accepted", 0),
                      "rejected": vals.get("rejected", 0), "store_failures": vals.get("store_failures", 0),
                      "reply_p50_us": vals.get("wake_p50_us"), "reply_p99_us": vals.get("wake_p99_us"),
                      "loop_errors": vals.get("loop_errors", 0), "last_error": vals.get("last_error", ""),
                      "unknown_orders": vals.get("unknown_orders", 0), "unknown_symbols": vals.get("unknown_symbols", [])},
        "ledger": None if ledger is None else {"state": "up" if _up(ledger) else _DOWN,
                                               "lag": dict(ledger_lag or {}),
                                               "last_error": ledger.get("last_error", "") if _up(ledger) else ""},
        "breakers": {name: (b.get("state") if isinstance(b, Mapping) else str(b))
                     for name, b in sorted((breakers or {}).items())},
        "stranded": sum(e["stranded"] or 0 for e in engines),
        "failovers": len(sup.get("failovers") or []),
        "restarts": len(sup.get("restarts") or []),
    }


def _rows(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [["-" if c is None or c == "" else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]


def table(v: Mapping[str, Any], node_id: str = "") -> str:
    out = ["node " + node_id if node_id else "node"]
    out += [""] + _rows(["GROUP", "EPOCH", "LEADER", "BROKER", "PROMOTING"],
                        [[g["name"], g["epoch"], g["leader"], g["broker"], g.get("promoting")] for g in v["groups"]])
    out += [""] + _rows(["ENGINE", "STATE", "KIND", "GROUP", "ROLE", "EPOCH", "IN-FLIGHT", "STRANDED", "LOOP-ERRORS"],
                        [[e["name"], e["state"], e["kind"], e["group"], e["role"], e["epoch"], e["in_flight"],
                          e["stranded"], e["loop_errors"]] for e in v["engines"]])
    out += [""] + _rows(["BROKER", "STATE", "EPOCH", "SUBMITTED", "REFUSED-STALE", "LOOP-ERRORS"],
                        [[b["name"], b["state"], b["epoch"], b["submitted"], b["refused_stale"], b["loop_errors"]]
                         for b in v["brokers"]])
    val = v["validator"]
    out += ["", "validator %s: accepted %s, rejected %s, store failures %s, reply p50 %s us / p99 %s us" % (
        val["state"], val["accepted"], val["rejected"], val["store_failures"], val["reply_p50_us"],
        val["reply_p99_us"])]
    led = v["ledger"]
    if led is not None:
        lag = ", ".join("%s %s" % (k, n) for k, n in sorted(led["lag"].items())) or "unknown"
        out.append("ledger %s: lag (entries not yet in PostgreSQL) %s" % (led["state"], lag))
    else:
        out.append("ledger: off")
    tripped = [n + " " + s for n, s in v["breakers"].items() if s not in ("CLOSED", None)]
    out.append("breakers: " + (", ".join(tripped) if tripped else "all closed" if v["breakers"] else "unknown"))
    out.append("UNKNOWN orders (new risk on their symbols waits for the broker's word): %d%s" % (
        val["unknown_orders"], " on " + ", ".join(val["unknown_symbols"]) if val["unknown_symbols"] else ""))
    out.append("stranded UNKNOWN orders (BROKER_LOST): %d%s" % (
        v["stranded"], "  -> `execnode orders settle --broker NAME`" if v["stranded"] else ""))
    out.append("failovers %d, restarts %d" % (v["failovers"], v["restarts"]))
    errors = [(n, e["last_error"]) for n, e in [("validator", val)] + [("engine:" + e["name"], e) for e in v["engines"]]
              + [("broker:" + b["name"], b) for b in v["brokers"]] if e.get("last_error")]
    for name, err in errors:
        out.append("last loop error of %s: %s" % (name, err))
    return "\n".join(out)
