"""node.status: the operator's view of one stats snapshot, and its table."""

from node.status import table, view

STATS = {
    "validator": {"accepted": 10, "rejected": 2, "store_failures": 0, "wake_p50_us": 410.0, "wake_p99_us": 900.0,
                  "loop_errors": 1, "last_error": "ValueError: boom", "unknown_orders": 2, "unknown_symbols": ["MSFT"]},
    "engine:a": {"kind": "native", "group": "default", "role": "leader", "epoch": 3, "in_flight": 2, "stranded": 1,
                 "loop_errors": 0, "last_error": ""},
    "engine:b": {"down": "RayActorError"},
    "engine": {"role": "leader"},
    "broker:paper": {"epoch": 3, "submitted": 10, "refused_stale": 0, "loop_errors": 0},
    "broker:backup": {"down": "GetTimeoutError"},
    "broker": {},
    "ledger": {"running": True, "last_error": ""},
    "supervisor": {"epoch": 3, "leader": "a", "failovers": [{}, {}], "restarts": [{}],
                   "groups": {"default": {"epoch": 3, "leader": "a", "broker": "paper"}}},
}
BREAKERS = {"system": {"state": "CLOSED"}, "execution": {"state": "OPEN"}, "strategy:s1": {"state": "CLOSED"}}


def test_view_keeps_what_an_operator_reads_first():
    v = view(STATS, BREAKERS, {"execution.signals": 4, "execution.events": 7})
    assert v["groups"] == [{"name": "default", "epoch": 3, "leader": "a", "broker": "paper", "promoting": ""}]
    assert [(e["name"], e["state"], e["role"]) for e in v["engines"]] == [("a", "up", "leader"), ("b", "down", "")]
    assert [(b["name"], b["state"]) for b in v["brokers"]] == [("backup", "down"), ("paper", "up")]
    assert v["stranded"] == 1 and v["failovers"] == 2 and v["restarts"] == 1
    assert v["breakers"]["execution"] == "OPEN" and v["ledger"]["lag"]["execution.events"] == 7
    assert v["validator"]["last_error"] == "ValueError: boom"


def test_table_is_readable():
    text = table(view(STATS, BREAKERS, {"execution.signals": 4}), "nae-1")
    lines = text.splitlines()
    assert lines[0] == "node nae-1"
    header = next(line for line in lines if line.startswith("ENGINE"))
    assert header.split() == ["ENGINE", "STATE", "KIND", "GROUP", "ROLE", "EPOCH", "IN-FLIGHT", "STRANDED", "LOOP-ERRORS"]
    assert any(line.split()[:2] == ["b", "down"] for line in lines)
    assert next(line for line in lines if line.startswith("GROUP")).split() == ["GROUP", "EPOCH", "LEADER", "BROKER", "PROMOTING"]
    assert "breakers: execution OPEN" in text
    assert "stranded UNKNOWN orders (BROKER_LOST): 1" in text and "execnode orders settle" in text
    assert "last loop error of validator: ValueError: boom" in text
    assert "UNKNOWN orders (new risk on their symbols waits for the broker's word): 2 on MSFT" in text
    assert "ledger up: lag (entries not yet in PostgreSQL) execution.signals 4" in text


def test_an_empty_snapshot_still_renders():
    text = table(view({}, None, None))
    assert "ledger: off" in text and "breakers: unknown" in text


def test_a_promotion_under_way_is_shown_beside_the_leader_it_replaces():
    stats = dict(STATS, supervisor=dict(STATS["supervisor"], groups={"default": {"epoch": 4, "leader": "a", "broker": "paper",
                                                                                 "promoting": "b"}}))
    lines = table(view(stats, BREAKERS, {})).splitlines()
    assert next(line for line in lines if line.startswith("default")).split() == ["default", "4", "a", "paper", "b"]
