"""Stream entries -> ledger row tuples. Pure: no I/O, no clock, unit-testable.

The ledger reads `execution.signals` (b"A" = msgpack array of `SignalAccepted`, one entry per
validator wake-up; b"a" = one), `execution.events` (b"E" = msgpack array of `ExecutionReport`, one
entry per engine wake-up; b"e" = one) and `monitoring.events` (b"m" = JSON), and turns one
XREADGROUP reply into a `Batch`: row tuples per table, in the column order of the `*_COLUMNS`
constants (which match `sql/001_ledger.sql` and `sql/003_monitoring.sql`), plus the entry ids to
XACK once the batch is committed.

Idempotent keys (the tables' unique keys; the writer inserts with ON CONFLICT DO NOTHING):
- signals: `signal_id` (and `request_id`);
- fills: `exec_id` (synthesised as `client_order_id:cum_qty` when a report carries none);
- order_events: (`client_order_id`, `kind`, `event_key`): `event_key` is the exec id for fills,
  the report's `ts_ns` for UNKNOWN, '' for NEW / CANCELED / REJECTED (one each per order);
- orders: one row per `client_order_id`, the latest event by stream position wins (`stream_pos`),
  reduced here so one batch never updates the same order twice;
- monitoring_events: the stream entry id; failover_events: (role, epoch).
An entry that cannot be decoded becomes a dead-letter row and is acknowledged, never retried.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Sequence

import msgspec
import orjson

from node.messages import ExecKind, ExecutionReport, SignalAccepted, accepted_decoder, report_decoder
from node.risk.controls import CONTROLS_FIELD
from node.risk.controls import decode_event as decode_control

SIGNAL_FIELD = b"a"  # one SignalAccepted per entry (tests, tools)
EVENT_FIELD = b"e"  # one ExecutionReport per entry (tests, tools)
SIGNAL_BATCH_FIELD = b"A"  # what the validator writes: a msgpack array of SignalAccepted
EVENT_BATCH_FIELD = b"E"  # what the engine writes: a msgpack array of ExecutionReport
_accepted_batch = msgspec.msgpack.Decoder(list[SignalAccepted])
_report_batch = msgspec.msgpack.Decoder(list[ExecutionReport])
_encode = msgspec.msgpack.Encoder().encode
MONITORING_FIELD = b"m"

SIGNAL_COLUMNS = (
    "signal_id", "request_id", "strategy_id", "symbol", "action", "side", "quantity", "notional",
    "order_type", "limit_price", "stop_price", "correlation_group", "model_id", "confidence",
    "expected_pnl", "signal_ts_s", "received_ns", "stream_id", "raw",
)  # fmt: skip
ORDER_COLUMNS = (
    "client_order_id", "signal_id", "request_id", "strategy_id", "symbol", "side", "venue_order_id",
    "state", "cum_qty", "leaves_qty", "avg_px", "reason", "last_event_ns", "stream_pos", "stream_id",
)  # fmt: skip
FILL_COLUMNS = (
    "exec_id", "client_order_id", "venue_order_id", "signal_id", "request_id", "strategy_id", "symbol",
    "side", "qty", "px", "cum_qty", "ts_ns", "stream_id",
)  # fmt: skip
EVENT_COLUMNS = (
    "client_order_id", "kind", "event_key", "exec_id", "venue_order_id", "last_qty", "last_px",
    "cum_qty", "leaves_qty", "avg_px", "reason", "ts_ns", "stream_id",
)  # fmt: skip
MONITORING_COLUMNS = ("stream_id", "kind", "payload", "ts")
CONTROL_COLUMNS = ("stream_id", "kind", "target", "payload", "ts")
STRATEGY_STATE_COLUMNS = ("strategy_id", "paused", "killed", "mode", "reason", "updated_at", "stream_pos", "stream_id")
FAILOVER_COLUMNS = ("role", "epoch", "from_name", "to_name", "reason", "manual", "ts", "stream_id")
DEAD_LETTER_COLUMNS = ("stream", "stream_id", "raw", "error")

FILL_KINDS = frozenset({ExecKind.PARTIAL_FILL, ExecKind.FILL})
FAILOVER_KINDS = frozenset({"failover", "failback"})

# order-row tuple positions the reducer merges on
_O_SIGNAL, _O_REQUEST, _O_STRATEGY, _O_SYMBOL, _O_SIDE, _O_VENUE = 1, 2, 3, 4, 5, 6
_O_CUM, _O_AVG_PX, _O_POS = 8, 10, 13
_SEQ_LIMIT = 999_999

#: One stream entry: (entry id, fields) where fields is {field: value} (redis-py's parsed form), a
#: flat [field, value, ...] list (the raw reply), or None when the entry was trimmed while pending.
Entry = tuple[bytes, "dict[bytes, bytes] | list[bytes] | None"]


def field_value(fields: "dict[bytes, bytes] | list[bytes] | None", name: bytes) -> bytes | None:
    """The value of field `name` in an entry's fields, whatever their form; None when absent."""
    if not fields:
        return None
    if isinstance(fields, dict):
        return fields.get(name)
    if fields[0] == name:  # the usual single-field entry
        return fields[1]
    for i in range(2, len(fields) - 1, 2):
        if fields[i] == name:
            return fields[i + 1]
    return None


class Batch:
    """The rows of one XREADGROUP reply, per table, and the ids to XACK per stream after commit."""

    __slots__ = ("signals", "orders", "fills", "events", "monitoring", "failovers", "breakers", "dead", "acks",
                 "controls", "strategy_states")

    def __init__(self) -> None:
        self.signals: list[tuple] = []
        self.orders: list[tuple] = []
        self.fills: list[tuple] = []
        self.events: list[tuple] = []
        self.monitoring: list[tuple] = []
        self.failovers: list[tuple] = []
        self.breakers: dict[str, tuple] = {}  # name -> the newest circuit_breaker_state row
        self.dead: list[tuple] = []
        self.acks: dict[str, list[bytes]] = {}
        self.controls: list[tuple] = []  # control_events rows
        self.strategy_states: dict[str, tuple] = {}  # target -> the newest strategy_state row

    @property
    def entry_count(self) -> int:
        return sum(len(ids) for ids in self.acks.values())

    @property
    def empty(self) -> bool:
        return not self.acks


def stream_pos(entry_id: bytes) -> int:
    """A stream entry id `ms-seq` as one sortable integer: ms * 1e6 + seq (seq capped at 999,999)."""
    ms, _, seq = entry_id.partition(b"-")
    s = int(seq) if seq else 0
    return int(ms) * 1_000_000 + (s if s < _SEQ_LIMIT else _SEQ_LIMIT)


def batch_pos(entry_id: bytes, index: int) -> int:
    """The position of item `index` of a batch entry: ms * 1e6 + seq * 1e4 + index (capped)."""
    ms, _, seq = entry_id.partition(b"-")
    s = min(int(seq) if seq else 0, 99)
    return int(ms) * 1_000_000 + s * 10_000 + min(index, 9_999)


def signal_row(entry_id: bytes, raw: bytes, acc: SignalAccepted) -> tuple:
    """The `signals` row of one accepted signal (column order `SIGNAL_COLUMNS`)."""
    s = acc.signal
    return (
        acc.signal_id, s.request_id, s.strategy_id, s.symbol, str(s.action), str(s.side),
        s.quantity, s.notional, str(s.order_type), s.limit_price, s.stop_price, s.correlation_group,
        s.model_id, s.confidence, s.expected_pnl, s.timestamp_s(), acc.received_ns,
        entry_id.decode(), raw,
    )  # fmt: skip


def fill_exec_id(rep: ExecutionReport) -> str:
    """The fill's key: the broker's exec id, or `client_order_id:cum_qty` when it sent none."""
    return rep.exec_id or (rep.client_order_id + ":" + repr(rep.cum_qty))


def event_key(rep: ExecutionReport) -> str:
    """The order_events dedupe key within (client_order_id, kind)."""
    kind = rep.kind
    if kind in FILL_KINDS:
        return fill_exec_id(rep)
    if kind is ExecKind.UNKNOWN:
        return str(rep.ts_ns)
    return rep.exec_id


def event_row(sid: str, rep: ExecutionReport) -> tuple:
    """The `order_events` row of one report (column order `EVENT_COLUMNS`)."""
    return (
        rep.client_order_id, rep.kind, event_key(rep), rep.exec_id, rep.venue_order_id,
        rep.last_qty, rep.last_px, rep.cum_qty, rep.leaves_qty, rep.avg_px, rep.reason, rep.ts_ns, sid,
    )  # fmt: skip


def fill_row(sid: str, rep: ExecutionReport) -> tuple:
    """The `fills` row of a fill report (column order `FILL_COLUMNS`)."""
    return (
        fill_exec_id(rep), rep.client_order_id, rep.venue_order_id, rep.signal_id, rep.request_id,
        rep.strategy_id, rep.symbol, rep.side, rep.last_qty, rep.last_px, rep.cum_qty, rep.ts_ns, sid,
    )  # fmt: skip


def order_row(sid: str, pos: int, rep: ExecutionReport) -> tuple:
    """The `orders` row (latest state) a report implies (column order `ORDER_COLUMNS`)."""
    return (
        rep.client_order_id, rep.signal_id, rep.request_id, rep.strategy_id, rep.symbol, rep.side,
        rep.venue_order_id, rep.kind, rep.cum_qty, rep.leaves_qty, rep.avg_px, rep.reason,
        rep.ts_ns, pos, sid,
    )  # fmt: skip


def merge_order(older: tuple, newer: tuple) -> tuple:
    """Two order rows of one order -> the one to keep: the later stream position's state, with
    identifying fields it left empty taken from the other, the side of the first event (later
    reports such as CANCELED may carry the default side), the larger cum_qty, and the last
    non-zero avg_px."""
    if newer[_O_POS] < older[_O_POS]:
        older, newer = newer, older
    if (
        newer[_O_SIDE] == older[_O_SIDE] and newer[_O_CUM] >= older[_O_CUM] and newer[_O_AVG_PX]
        and newer[_O_SIGNAL] and newer[_O_REQUEST] and newer[_O_STRATEGY] and newer[_O_SYMBOL] and newer[_O_VENUE]
    ):
        return newer  # the usual case: the later report is complete
    row = list(newer)
    row[_O_SIDE] = older[_O_SIDE]
    for i in (_O_SIGNAL, _O_REQUEST, _O_STRATEGY, _O_SYMBOL, _O_VENUE):
        if not row[i]:
            row[i] = older[i]
    if older[_O_CUM] > row[_O_CUM]:
        row[_O_CUM] = older[_O_CUM]
    if not row[_O_AVG_PX]:
        row[_O_AVG_PX] = older[_O_AVG_PX]
    return tuple(row)


def add_signals(batch: Batch, stream: str, entries: Sequence[Entry]) -> None:
    """Decode `execution.signals` entries into `batch` (rows + ids to ack)."""
    ids = batch.acks.setdefault(stream, [])
    decode = accepted_decoder.decode
    rows = batch.signals
    for entry_id, fields in entries:
        ids.append(entry_id)
        packed = field_value(fields, SIGNAL_BATCH_FIELD)
        if packed is not None:
            try:
                rows.extend([signal_row(entry_id, _encode(acc), acc) for acc in _accepted_batch.decode(packed)])
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError, OverflowError) as exc:
                batch.dead.append((stream, entry_id.decode(), packed, "decode: " + str(exc)[:200]))
            continue
        raw = field_value(fields, SIGNAL_FIELD)
        if raw is None:
            batch.dead.append((stream, entry_id.decode(), None, "missing field A or a"))
            continue
        try:
            rows.append(signal_row(entry_id, raw, decode(raw)))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, OverflowError) as exc:
            batch.dead.append((stream, entry_id.decode(), raw, "decode: " + str(exc)[:200]))


def add_events(batch: Batch, stream: str, entries: Sequence[Entry], latest: dict[str, tuple]) -> None:
    """Decode `execution.events` entries into `batch`; `latest` reduces order rows per client order id."""
    ids = batch.acks.setdefault(stream, [])
    decode = report_decoder.decode
    events, fills = batch.events, batch.fills
    for entry_id, fields in entries:
        ids.append(entry_id)
        packed = field_value(fields, EVENT_BATCH_FIELD)
        if packed is not None:
            try:
                reports = _report_batch.decode(packed)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                batch.dead.append((stream, entry_id.decode(), packed, "decode: " + str(exc)[:200]))
                continue
            base = entry_id.decode() + "/"
            for idx, rep in enumerate(reports):
                _add_event(events, fills, latest, base + str(idx), batch_pos(entry_id, idx), rep)
            continue
        raw = field_value(fields, EVENT_FIELD)
        if raw is None:
            batch.dead.append((stream, entry_id.decode(), None, "missing field E or e"))
            continue
        try:
            rep = decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            batch.dead.append((stream, entry_id.decode(), raw, "decode: " + str(exc)[:200]))
            continue
        _add_event(events, fills, latest, entry_id.decode(), stream_pos(entry_id), rep)


def _add_event(events: list, fills: list, latest: dict, sid: str, pos: int, rep: ExecutionReport) -> None:
    events.append(event_row(sid, rep))
    if rep.kind in FILL_KINDS and rep.last_qty > 0.0:
        fills.append(fill_row(sid, rep))
    row = order_row(sid, pos, rep)
    prev = latest.get(rep.client_order_id)
    latest[rep.client_order_id] = row if prev is None else merge_order(prev, row)


def entry_time(entry_id: bytes) -> dt.datetime:
    """The time Redis gave an entry (its id's milliseconds), UTC."""
    ms = int(entry_id.partition(b"-")[0])
    return dt.datetime.fromtimestamp(ms / 1000.0, tz=dt.UTC)


def add_monitoring(batch: Batch, stream: str, entries: Sequence[Entry]) -> None:
    """Decode `monitoring.events` entries (JSON objects with a "kind") into `batch`; failovers and
    failbacks with an epoch also become `failover_events` rows."""
    ids = batch.acks.setdefault(stream, [])
    for entry_id, fields in entries:
        ids.append(entry_id)
        raw = field_value(fields, MONITORING_FIELD)
        sid = entry_id.decode()
        try:
            payload = orjson.loads(raw) if raw is not None else None
        except orjson.JSONDecodeError as exc:
            batch.dead.append((stream, sid, raw, "json: " + str(exc)[:200]))
            continue
        if not isinstance(payload, dict) or not isinstance(payload.get("kind"), str):
            batch.dead.append((stream, sid, raw, "not a JSON object with a kind"))
            continue
        ts = _payload_time(payload, entry_id)
        batch.monitoring.append((sid, payload["kind"], orjson.dumps(payload).decode(), ts))
        failover = failover_row(sid, ts, payload)
        if failover is not None:
            batch.failovers.append(failover)
        if payload["kind"] == "breaker_state" and isinstance(payload.get("states"), dict):
            for name, st in payload["states"].items():
                row = breaker_row(name, st, ts)
                if row is not None:
                    batch.breakers[name] = row


def breaker_row(name: str, st: object, ts: dt.datetime) -> tuple | None:
    """A `circuit_breaker_state` row (name, state, failures, opened_at, updated_at) from the
    validator's saved breaker dict; None when it is not one."""
    if not isinstance(st, dict) or st.get("state") not in ("CLOSED", "OPEN", "HALF_OPEN"):
        return None
    opened = ts if st["state"] != "CLOSED" else None
    return (str(name), st["state"], max(0, int(st.get("failures", 0))), opened, ts)


def failover_row(sid: str, ts: dt.datetime, payload: dict) -> tuple | None:
    """A `failover_events` row from a monitoring payload {"kind": "failover", "role", "epoch",
    "from", "to", "reason", "manual"} (the supervisor's shape; role defaults to engine, manual to
    reason == "manual"), or None when it is not a well-formed failover."""
    if payload.get("kind") not in FAILOVER_KINDS:
        return None
    epoch, to = payload.get("epoch"), payload.get("to")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not isinstance(to, str):
        return None
    return (
        str(payload.get("role") or "engine"), epoch, str(payload.get("from") or ""), to,
        str(payload.get("reason") or ""), _is_manual(payload),
        ts, sid,
    )  # fmt: skip


def _is_manual(payload: dict) -> bool:
    if "manual" in payload:
        return bool(payload["manual"])
    return payload.get("kind") == "failback" or payload.get("reason") == "manual"


def _payload_time(payload: dict, entry_id: bytes) -> dt.datetime:
    ts_ns = payload.get("ts_ns")
    if isinstance(ts_ns, int) and not isinstance(ts_ns, bool) and ts_ns > 0:
        return dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC)
    return entry_time(entry_id)


def add_controls(batch: Batch, stream: str, entries: Sequence[Entry]) -> None:
    """Decode `execution.controls` entries (msgpack `ControlEvent`, field b"c") into `control_events`
    rows and, for switches, the newest `strategy_state` row per target."""
    ids = batch.acks.setdefault(stream, [])
    for entry_id, fields in entries:
        ids.append(entry_id)
        raw = field_value(fields, CONTROLS_FIELD)
        sid = entry_id.decode()
        if raw is None:
            batch.dead.append((stream, sid, None, "missing field c"))
            continue
        try:
            event = decode_control(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            batch.dead.append((stream, sid, raw, "decode: " + str(exc)[:200]))
            continue
        ts = dt.datetime.fromtimestamp(event.ts_ns / 1e9, tz=dt.UTC) if event.ts_ns > 0 else entry_time(entry_id)
        payload = msgspec.to_builtins(event.control)
        batch.controls.append((sid, payload.pop("type"), event.target, orjson.dumps(payload).decode(), ts))
        sw = event.after
        if sw is not None:
            pos = stream_pos(entry_id)
            prev = batch.strategy_states.get(event.target)
            if prev is None or prev[6] < pos:
                batch.strategy_states[event.target] = (
                    event.target, sw.paused, sw.killed, sw.state.name, payload_reason(payload), ts, pos, sid,
                )


def payload_reason(payload: dict) -> str:
    if not isinstance(payload, dict):
        return ""
    return str(payload.get("reason") or payload.get("by") or "")  # a SetState names who set it (`by`)


def build_batch(
    reply: "Iterable[Sequence] | dict", signals_stream: str, events_stream: str, monitoring_stream: str,
    controls_stream: str = "execution.controls",
) -> Batch:
    """One XREADGROUP result ([[stream, entries], ...] or {stream: entries}; names bytes or str)
    -> a `Batch`. Entries of a stream not named here are dead letters (acknowledged)."""
    batch = Batch()
    latest: dict[str, tuple] = {}
    for name, entries in reply.items() if isinstance(reply, dict) else reply:
        stream = name.decode() if isinstance(name, bytes) else name
        if not entries:
            continue
        if stream == events_stream:
            add_events(batch, stream, entries, latest)
        elif stream == signals_stream:
            add_signals(batch, stream, entries)
        elif stream == monitoring_stream:
            add_monitoring(batch, stream, entries)
        elif stream == controls_stream:
            add_controls(batch, stream, entries)
        else:
            ids = batch.acks.setdefault(stream, [])
            for entry_id, _ in entries:
                ids.append(entry_id)
                batch.dead.append((stream, entry_id.decode(), None, "unexpected stream"))
    batch.orders = list(latest.values())
    return batch
