"""node.ledger_rows: stream entries -> row tuples (pure; no Redis, no PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import orjson
import pytest

from node.ledger_rows import (
    DEAD_LETTER_COLUMNS,
    EVENT_COLUMNS,
    FAILOVER_COLUMNS,
    FILL_COLUMNS,
    MONITORING_COLUMNS,
    ORDER_COLUMNS,
    SIGNAL_COLUMNS,
    build_batch,
    event_key,
    field_value,
    stream_pos,
)
from node.messages import ExecKind, ExecutionReport, Side, Signal, SignalAccepted, encode

SIG, EV, MON = "execution.signals", "execution.events", "monitoring.events"
SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def report(kind: ExecKind, coid: str = "o1", **kw) -> ExecutionReport:
    base = dict(
        client_order_id=coid, venue_order_id="v-" + coid, symbol="AAPL", side=Side.SELL,
        strategy_id="s1", request_id="r-" + coid, signal_id="g-" + coid, ts_ns=1_000,
    )  # fmt: skip
    base.update(kw)
    return ExecutionReport(kind=kind, **base)


def lifecycle(coid: str = "o1") -> list[ExecutionReport]:
    return [
        report(ExecKind.NEW, coid, leaves_qty=100.0, ts_ns=1),
        report(ExecKind.PARTIAL_FILL, coid, exec_id=coid + "-x1", last_qty=40.0, last_px=10.0, cum_qty=40.0,
               leaves_qty=60.0, avg_px=10.0, ts_ns=2),
        report(ExecKind.FILL, coid, exec_id=coid + "-x2", last_qty=60.0, last_px=11.0, cum_qty=100.0,
               leaves_qty=0.0, avg_px=10.6, ts_ns=3),
    ]  # fmt: skip


def entries(field: bytes, payloads: list[bytes], ms: int = 1_700_000_000_000) -> list:
    return [(str(ms) + "-" + str(i)).encode() for i in range(len(payloads))], [
        ((str(ms) + "-" + str(i)).encode(), {field: p}) for i, p in enumerate(payloads)
    ]


def accepted(i: int = 1) -> SignalAccepted:
    sig = Signal(request_id="r" + str(i), strategy_id="s1", timestamp=1_700_000_000.5, symbol="MSFT",
                 action="SELL_TO_OPEN", notional=5_000.0, order_type="LIMIT", limit_price=420.0, model_id="m")  # fmt: skip
    return SignalAccepted("g" + str(i), 123_456_789, sig)


# ---------------------------------------------------------------- keys


@pytest.mark.parametrize(
    ("earlier", "later"),
    [(b"1-0", b"1-1"), (b"1-999", b"2-0"), (b"1700000000000-5", b"1700000000001-0"), (b"5-1", b"5-10")],
)
def test_stream_pos_orders_entry_ids(earlier: bytes, later: bytes) -> None:
    assert stream_pos(earlier) < stream_pos(later)


def test_event_key_per_kind() -> None:
    new, part, fill = lifecycle()
    assert event_key(new) == ""
    assert event_key(part) == "o1-x1"
    assert event_key(fill) == "o1-x2"
    assert event_key(report(ExecKind.UNKNOWN, ts_ns=77)) == "77"
    # a fill without a broker exec id gets a deterministic one
    no_id = report(ExecKind.FILL, last_qty=5.0, cum_qty=5.0)
    assert event_key(no_id) == event_key(no_id) == "o1:5.0"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({b"e": b"x"}, b"x"), ([b"e", b"x"], b"x"), ([b"z", b"1", b"e", b"x"], b"x"), ([b"z", b"1"], None), (None, None)],
)
def test_field_value_reads_dict_and_flat_forms(fields, expected) -> None:
    assert field_value(fields, b"e") == expected


# ---------------------------------------------------------------- signals


def test_signal_row_carries_the_audit_fields_and_raw_bytes() -> None:
    acc = accepted()
    raw = encode(acc)
    ids, ents = entries(b"a", [raw])
    batch = build_batch([[SIG.encode(), ents]], SIG, EV, MON)
    assert batch.acks == {SIG: ids}
    (row,) = batch.signals
    assert len(row) == len(SIGNAL_COLUMNS)
    got = dict(zip(SIGNAL_COLUMNS, row))
    assert got["signal_id"] == "g1" and got["request_id"] == "r1" and got["side"] == "SELL"
    assert got["action"] == "SELL_TO_OPEN" and got["order_type"] == "LIMIT"
    assert got["quantity"] is None and got["notional"] == 5_000.0 and got["limit_price"] == 420.0
    assert got["signal_ts_s"] == 1_700_000_000.5 and got["received_ns"] == 123_456_789
    assert got["stream_id"] == ids[0].decode() and got["raw"] == raw


# ---------------------------------------------------------------- events


def test_order_lifecycle_gives_events_fills_and_one_order_row() -> None:
    ids, ents = entries(b"e", [encode(r) for r in lifecycle()])
    batch = build_batch([[EV, ents]], SIG, EV, MON)
    assert batch.entry_count == 3 and batch.acks == {EV: ids}
    assert [dict(zip(EVENT_COLUMNS, r))["kind"] for r in batch.events] == ["NEW", "PARTIAL_FILL", "FILL"]
    fills = [dict(zip(FILL_COLUMNS, r)) for r in batch.fills]
    assert [(f["exec_id"], f["qty"], f["px"], f["side"]) for f in fills] == [
        ("o1-x1", 40.0, 10.0, "SELL"), ("o1-x2", 60.0, 11.0, "SELL"),
    ]  # fmt: skip
    (order,) = [dict(zip(ORDER_COLUMNS, r)) for r in batch.orders]
    assert order["state"] == "FILL" and order["cum_qty"] == 100.0 and order["avg_px"] == 10.6
    assert order["stream_id"] == ids[2].decode() and order["stream_pos"] == stream_pos(ids[2])
    assert all(len(r) == len(EVENT_COLUMNS) for r in batch.events)
    assert all(len(r) == len(FILL_COLUMNS) for r in batch.fills)


def test_zero_quantity_fill_report_is_an_event_but_not_a_fill() -> None:
    _, ents = entries(b"e", [encode(report(ExecKind.PARTIAL_FILL, exec_id="x", last_qty=0.0))])
    batch = build_batch([[EV, ents]], SIG, EV, MON)
    assert len(batch.events) == 1 and batch.fills == []


def test_order_reduction_keeps_latest_state_and_fills_gaps() -> None:
    new, part, _ = lifecycle()
    # a cancel that carries neither ids nor side nor avg price, appended after the partial fill
    cancel = ExecutionReport(kind=ExecKind.CANCELED, client_order_id="o1", ts_ns=9)
    _, ents = entries(b"e", [encode(new), encode(part), encode(cancel)])
    (order,) = [dict(zip(ORDER_COLUMNS, r)) for r in build_batch([[EV, ents]], SIG, EV, MON).orders]
    assert order["state"] == "CANCELED"
    assert order["side"] == "SELL" and order["symbol"] == "AAPL" and order["signal_id"] == "g-o1"
    assert order["venue_order_id"] == "v-o1" and order["cum_qty"] == 40.0 and order["avg_px"] == 10.0


def test_claimed_older_entry_after_newer_one_does_not_win() -> None:
    new, _, fill = lifecycle()
    reply = [[EV, [(b"200-0", {b"e": encode(fill)}), (b"100-0", {b"e": encode(new)})]]]
    (order,) = [dict(zip(ORDER_COLUMNS, r)) for r in build_batch(reply, SIG, EV, MON).orders]
    assert order["state"] == "FILL" and order["stream_id"] == "200-0"


def test_many_orders_one_row_each() -> None:
    payloads = [encode(r) for i in range(50) for r in lifecycle("o" + str(i))]
    _, ents = entries(b"e", payloads)
    batch = build_batch([[EV, ents]], SIG, EV, MON)
    assert len(batch.orders) == 50 and len(batch.fills) == 100 and len(batch.events) == 150


def test_same_entries_twice_give_identical_rows() -> None:
    _, ents = entries(b"e", [encode(r) for r in lifecycle()])
    a = build_batch([[EV, ents]], SIG, EV, MON)
    b = build_batch([[EV, ents]], SIG, EV, MON)
    assert (a.events, a.fills, a.orders) == (b.events, b.fills, b.orders)


def test_raw_list_and_resp3_map_replies_parse_like_dicts() -> None:
    payloads = [encode(r) for r in lifecycle()]
    parsed = [[EV, [(str(i).encode() + b"-0", {b"e": p}) for i, p in enumerate(payloads, 1)]]]
    raw_list = [[EV.encode(), [[str(i).encode() + b"-0", [b"e", p]] for i, p in enumerate(payloads, 1)]]]
    resp3 = {EV.encode(): raw_list[0][1]}
    want = build_batch(parsed, SIG, EV, MON)
    for form in (raw_list, resp3):
        got = build_batch(form, SIG, EV, MON)
        assert (got.events, got.fills, got.orders, got.acks) == (want.events, want.fills, want.orders, want.acks)


# ---------------------------------------------------------------- bad entries


@pytest.mark.parametrize(
    ("stream", "fields", "error"),
    [
        (EV, {b"e": b"\xc1not msgpack"}, "decode"),
        (EV, None, "missing field E or e"),  # trimmed while pending
        (EV, {b"x": b"1"}, "missing field E or e"),
        (SIG, {b"a": encode(report(ExecKind.NEW))}, "decode"),  # wrong message type
        (MON, {b"m": b"{not json"}, "json"),
        (MON, {b"m": b"[1, 2]"}, "not a JSON object"),
        ("other.stream", {b"e": b"1"}, "unexpected stream"),
    ],
)
def test_bad_entries_become_dead_letters_and_are_acked(stream: str, fields, error: str) -> None:
    good = encode(lifecycle()[0])
    reply = [[stream, [(b"5-0", fields)]], [EV, [(b"6-0", {b"e": good})]]]
    batch = build_batch(reply, SIG, EV, MON)
    (dead,) = batch.dead
    assert len(dead) == len(DEAD_LETTER_COLUMNS)
    assert dead[0] == stream and dead[1] == "5-0" and error in dead[3]
    assert b"5-0" in batch.acks[stream] and batch.acks[EV][-1] == b"6-0"
    assert len(batch.events) == 1  # the good entry still counts


# ---------------------------------------------------------------- monitoring


def test_monitoring_entries_and_failovers() -> None:
    msgs = [
        {"kind": "breaker_trip", "name": "broker:paper", "ts_ns": 1_700_000_000_000_000_000},
        {"kind": "failover", "role": "engine", "epoch": 7, "from": "engine:a", "to": "engine:b", "reason": "dead"},
        {"kind": "failover", "epoch": "not-an-int", "to": "x"},
        {"kind": "failover", "epoch": 8, "from": "engine:b", "to": "engine:a", "reason": "manual"},
    ]
    reply = [[MON, [(b"1700000000123-" + str(i).encode(), {b"m": orjson.dumps(m)}) for i, m in enumerate(msgs)]]]
    batch = build_batch(reply, SIG, EV, MON)
    assert [r[1] for r in batch.monitoring] == ["breaker_trip", "failover", "failover", "failover"]
    assert all(len(r) == len(MONITORING_COLUMNS) for r in batch.monitoring)
    assert batch.monitoring[0][3] == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert batch.monitoring[1][3] == dt.datetime.fromtimestamp(1_700_000_000.123, tz=dt.UTC)
    assert orjson.loads(batch.monitoring[1][2])["to"] == "engine:b"
    fos = [dict(zip(FAILOVER_COLUMNS, r)) for r in batch.failovers]
    got = [(fo["role"], fo["epoch"], fo["from_name"], fo["to_name"], fo["manual"]) for fo in fos]
    assert got == [("engine", 7, "engine:a", "engine:b", False), ("engine", 8, "engine:b", "engine:a", True)]


# ---------------------------------------------------------------- the SQL agrees with the columns


def _table_columns(table: str) -> set[str]:
    text = "\n".join(p.read_text() for p in sorted(SQL_DIR.glob("*.sql")))
    m = re.search(r"CREATE TABLE " + table + r" \((.*?)\n\);", text, re.S)
    assert m is not None, table
    cols = set()
    for line in m.group(1).splitlines():
        word = line.strip().split(" ", 1)[0]
        if word and word.upper() not in {"PRIMARY", "CONSTRAINT", "UNIQUE", "CHECK", "--"} and not word.startswith("--"):
            cols.add(word)
    return cols


@pytest.mark.parametrize(
    ("table", "columns"),
    [
        ("signals", SIGNAL_COLUMNS), ("orders", ORDER_COLUMNS), ("fills", FILL_COLUMNS),
        ("order_events", EVENT_COLUMNS), ("monitoring_events", MONITORING_COLUMNS),
        ("failover_events", FAILOVER_COLUMNS), ("ledger_dead_letters", DEAD_LETTER_COLUMNS),
    ],
)  # fmt: skip
def test_row_columns_exist_in_the_migrations(table: str, columns: tuple[str, ...]) -> None:
    assert set(columns) <= _table_columns(table)
