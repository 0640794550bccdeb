"""The gate's fuzz harness (issue 10): hypothesis over raw bytes, the envelope and the payload, in
msgpack and JSON, with deep nesting, huge numbers, odd unicode and control characters.

The property, for every frame: `admit` returns (never raises) either the discovery answer or a
`Reply` whose status is a `Status` and, unless ACCEPTED, carries at least one known reason code;
nothing is half-admitted (a refusal reserves no risk and an acceptance is remembered); and the next
valid signal is ACCEPTED.

Budget: `NAE_FUZZ_EXAMPLES` examples per test (default 150: a few seconds in all); raise it for a
longer run, e.g. `NAE_FUZZ_EXAMPLES=20000 pytest tests/unit/test_gate_fuzz.py`.
"""

import json
import os
import time

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from node.config import IntakeConfig, SigningConfig
from node.intake import SignalGate
from node.messages import Status, encode
from node.reasons import Reason
from node.risk import PreTradeRisk
from node.risk.config import throughput_limits
from node.signing import sign

SECRET = b"fuzz-secret"
NOW_NS = 1_800_000_000 * 1_000_000_000
EXAMPLES = int(os.environ.get("NAE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
REASONS = frozenset(Reason)

_counter = [0]


def make_gate() -> SignalGate:
    signing = SigningConfig(keys={"k": SECRET.decode()}, dedupe_max_entries=64)
    intake = IntakeConfig(key_rate_per_sec=1e9, key_burst=1e9, max_strategies=64, max_symbols=64)
    prices = {"AAPL": 200.0, "MSFT": 400.0}
    return SignalGate(signing, intake, PreTradeRisk(throughput_limits(), list(prices), prices, 1e9))


GATE = make_gate()

# ---------------------------------------------------------------- strategies

odd_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["\x00", "a\x00b", "\u202e", "\ufeff", "\U0001f4a9", "a/b", "", " ", "\n", "\x85", "\u2028",
                     "AAPL", "optimus.momentum", "optimus.momentum/evil", "x" * 200]),
)
huge_numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([2**63, 2**64 - 1, -(2**63), 0, -1, 10**18]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-320, 1e308, float("inf"), float("nan")]),
)
scalars = st.one_of(st.none(), st.booleans(), huge_numbers, odd_text, st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(odd_text, inner, max_size=4)), max_leaves=12)

SIGNAL_FIELDS = {
    "request_id": st.one_of(odd_text, values),
    "strategy_id": st.one_of(st.just("optimus.momentum"), odd_text, values),
    "timestamp": st.one_of(st.just(NOW_NS / 1e9), huge_numbers, odd_text,
                           st.sampled_from(["0001-01-01T00:00:00", "9999-12-31T23:59:59Z", "2027-01-15T08:00:00"])),
    "symbol": st.one_of(st.sampled_from(["AAPL", "MSFT"]), odd_text, values),
    "action": st.one_of(st.sampled_from(["BUY", "SELL", "BUY_TO_OPEN"]), odd_text),
    "quantity": st.one_of(st.just(10.0), huge_numbers, values),
    "notional": st.one_of(huge_numbers, st.just(0.01)),
    "order_type": st.one_of(st.sampled_from(["MARKET", "LIMIT", "STOP", "STOP_LIMIT"]), odd_text),
    "limit_price": huge_numbers,
    "stop_price": huge_numbers,
    "risk_meta": values,
    "correlation_group": st.one_of(odd_text, values),
    "model_id": st.one_of(odd_text, values),
    "confidence": huge_numbers,
    "expected_pnl": huge_numbers,
}


@st.composite
def signal_dicts(draw) -> dict:
    base = {"request_id": "f-" + str(draw(st.integers(0, 10**9))), "strategy_id": "optimus.momentum",
            "timestamp": NOW_NS / 1e9, "symbol": "AAPL", "action": "BUY", "quantity": 10.0}
    for name in draw(st.lists(st.sampled_from(sorted(SIGNAL_FIELDS)), max_size=4, unique=True)):
        base[name] = draw(SIGNAL_FIELDS[name])
    for name in draw(st.lists(st.sampled_from(sorted(base)), max_size=2, unique=True)):
        del base[name]
    if draw(st.booleans()):
        base[draw(odd_text)] = draw(values)
    return base


def deep(depth: int, fmt: str) -> bytes:
    return b"[" * depth + b"]" * depth if fmt == "json" else b"\x91" * depth + b"\x90"


def encode_payload(obj: object, fmt: str) -> bytes:
    if fmt == "json":
        try:
            return json.dumps(obj, allow_nan=True).encode()
        except (TypeError, ValueError):
            return json.dumps(str(obj)).encode()
    try:
        return msgspec.msgpack.encode(obj)
    except (TypeError, OverflowError):
        return msgspec.msgpack.encode(repr(obj))


def envelope(payload: bytes, fmt: str, key: str = "k", secret: bytes = SECRET, ts_ns: int = NOW_NS, **extra) -> bytes:
    env = {"type": "sig", "key_id": key, "ts_ns": ts_ns, "payload": payload, "sig": sign(secret, ts_ns, payload)}
    if fmt != "msgpack":
        env["fmt"] = fmt
    env.update(extra)
    return msgspec.msgpack.encode(env)


# ---------------------------------------------------------------- the property


def check_property(frame: bytes) -> None:
    gate = GATE
    pending_before = len(gate.risk._pending)
    verdict = gate.admit(frame, NOW_NS)  # must not raise
    if not verdict.discover:
        reply = verdict.reply
        assert reply is not None and isinstance(reply.status, Status)
        if reply.status is Status.ACCEPTED:
            assert reply.duplicate or verdict.signal is not None
            if verdict.signal is not None:
                assert gate._memory.lookup(reply.request_id, b"\xff")[0]  # remembered
        else:
            assert reply.reasons and set(reply.reasons) <= REASONS, reply
            assert verdict.signal is None
            assert len(gate.risk._pending) == pending_before  # nothing reserved for a refusal
    _counter[0] += 1
    payload = msgspec.msgpack.encode({
        "request_id": "next-" + str(_counter[0]) + "-" + str(time.perf_counter_ns()),
        "strategy_id": "optimus.momentum", "timestamp": NOW_NS / 1e9, "symbol": "AAPL", "action": "BUY",
        "quantity": 10.0})
    nxt = gate.admit(envelope(payload, "msgpack"), NOW_NS)
    assert nxt.reply is not None and nxt.reply.status is Status.ACCEPTED, nxt.reply


@FUZZ
@given(st.binary(max_size=4096))
def test_raw_bytes(frame):
    check_property(frame)


@FUZZ
@given(st.dictionaries(odd_text, values, max_size=8), st.booleans())
def test_envelope_shapes(fields, tagged):
    if tagged:
        fields["type"] = "sig"
    check_property(encode_payload(fields, "msgpack"))


_ANCIENT = {"request_id": "ancient", "strategy_id": "s", "timestamp": "0001-01-01T00:00:00+01:00", "symbol": "AAPL",
            "action": "BUY", "quantity": 1.0}


@FUZZ
@example(_ANCIENT, "json")
@example(dict(_ANCIENT, request_id="nul\x00"), "msgpack")
@given(signal_dicts(), st.sampled_from(["msgpack", "json"]))
def test_signed_payloads(signal, fmt):
    check_property(envelope(encode_payload(signal, fmt), fmt))


@FUZZ
@given(st.integers(1, 60_000), st.sampled_from(["msgpack", "json"]), st.sampled_from(["payload", "envelope", "field"]))
def test_deep_nesting(depth, fmt, where):
    nested = deep(depth, fmt)
    if where == "payload":
        frame = envelope(nested, fmt)
    elif where == "envelope":
        frame = envelope(b"", "msgpack", x=msgspec.Raw(deep(depth, "msgpack")))
    else:
        body = b'{"request_id": "d", "risk_meta": ' + deep(depth, "json") + b"}"
        frame = envelope(body if fmt == "json" else nested, fmt)
    check_property(frame)


@FUZZ
@given(values, st.sampled_from(["k", "nobody", "", "\x00"]), huge_numbers, st.binary(max_size=40))
def test_envelope_fields(payload, key, ts_ns, sig):
    fields = {"type": "sig", "key_id": key, "ts_ns": ts_ns, "payload": payload, "sig": sig}
    try:
        frame = msgspec.msgpack.encode(fields)
    except (TypeError, OverflowError):
        frame = encode(fields["sig"])
    check_property(frame)


# ---------------------------------------------------------------- the HTTP intake's own refusals

_header_text = st.one_of(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=60),
                         st.sampled_from(["", "9" * 5000, "-1", "18446744073709551616", "1_000", " 12 ", "ff", "zz"]))


@pytest.fixture(scope="module")
def http_client():
    from fastapi.testclient import TestClient

    from actors.api import build_app
    from node.config import ApiConfig

    app = build_app(ApiConfig(port=0, peer_rate_per_sec=1e9, peer_burst=1e9), lambda t: {}, lambda a, b: {})
    with TestClient(app, raise_server_exceptions=True) as client:
        yield client


@FUZZ
@given(headers=st.dictionaries(st.sampled_from(["X-Key-Id", "X-Timestamp", "X-Signature"]), _header_text),
       body=st.binary(max_size=300))
def test_http_headers_and_bodies(http_client, headers, body):
    """Whatever the headers, the HTTP intake answers JSON with a reason code, never a traceback
    (no intake behind this app: what passes its own checks is a 503 NO_ENGINE)."""
    raw = {k.encode(): (v.strip() or "x").encode("latin-1") for k, v in headers.items()}
    reply = http_client.post("/v1/signals", content=body, headers=raw)
    assert reply.status_code in (400, 413, 503), reply.text
    assert reply.json()["reasons"] and set(reply.json()["reasons"]) <= REASONS
