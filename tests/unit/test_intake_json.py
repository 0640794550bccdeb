"""The gate judges a JSON payload (`SignedSignal(fmt="json")`, the HTTP intake) exactly like msgpack:
the signature is over the exact bytes, and the same schema and rules apply."""

import json
import time

import msgspec
import pytest

from node.config import IntakeConfig, SigningConfig
from node.intake import SignalGate
from node.messages import SignedSignal, Status, encode, intake_request_decoder
from node.reasons import Reason
from node.signing import make_envelope, sign

SECRET = b"s3cret"


def gate() -> SignalGate:
    return SignalGate(SigningConfig(keys={"k": SECRET.decode()}), IntakeConfig())


def body(**over) -> bytes:
    d = {"request_id": "r-" + str(time.perf_counter_ns()), "strategy_id": "s1", "timestamp": time.time(),
         "symbol": "AAPL", "action": "BUY", "quantity": 10.0}
    d.update(over)
    return json.dumps(d).encode()


def json_frame(payload: bytes, secret: bytes = SECRET, ts_ns: int | None = None) -> bytes:
    ts_ns = ts_ns or time.time_ns()
    return encode(SignedSignal(key_id="k", ts_ns=ts_ns, payload=payload, sig=sign(secret, ts_ns, payload), fmt="json"))


def test_a_json_signal_is_accepted_and_a_retry_is_answered_again():
    payload = body(request_id="j1")
    g = gate()
    first = g.admit(json_frame(payload), time.time_ns())
    assert first.reply.status is Status.ACCEPTED, first.reply
    assert first.signal.request_id == "j1" and first.signal.quantity == 10.0
    retry = g.admit(json_frame(payload), time.time_ns())
    assert retry.reply.duplicate and retry.signal is None


@pytest.mark.parametrize(
    ("payload", "reason", "request_id"),
    [
        (body(request_id="bad-q", quantity=-1.0), Reason.INVALID_NUMBER, "bad-q"),
        (body(request_id="bad-f", colour="red"), Reason.UNKNOWN_FIELD, "bad-f"),
        (b"{not json", Reason.MALFORMED_FRAME, ""),
        (body(request_id="both", notional=5.0), Reason.SIZE_SPEC, "both"),
    ],
)
def test_json_schema_and_rules(payload, reason, request_id):
    verdict = gate().admit(json_frame(payload), time.time_ns())
    assert verdict.reply.status is Status.REJECTED and reason in verdict.reply.reasons
    assert verdict.reply.request_id == request_id


def test_the_signature_covers_the_exact_json_bytes():
    payload = body(request_id="sig")
    ts = time.time_ns()
    env = SignedSignal(key_id="k", ts_ns=ts, payload=payload, sig=sign(SECRET, ts, payload), fmt="json")
    respaced = msgspec.structs.replace(env, payload=payload.replace(b", ", b","))  # same JSON, other bytes
    verdict = gate().admit(encode(respaced), time.time_ns())
    assert verdict.reply.reasons == [Reason.SIGNATURE_INVALID] and verdict.reply.request_id == "sig"


def test_a_json_payload_sent_as_msgpack_is_refused():
    payload = body()
    frame = encode(make_envelope("k", SECRET, payload, time.time_ns()))  # fmt defaults to msgpack
    verdict = gate().admit(frame, time.time_ns())
    assert verdict.signal is None and verdict.reply.status is Status.REJECTED
    assert verdict.reply.reasons[0] in (Reason.SCHEMA_INVALID, Reason.MALFORMED_FRAME)


def test_an_iso_timestamp_is_accepted_in_json():
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    verdict = gate().admit(json_frame(body(request_id="iso", timestamp=now)), time.time_ns())
    assert verdict.reply.status is Status.ACCEPTED, verdict.reply


def test_an_unknown_format_is_a_malformed_envelope():
    raw = {"type": "sig", "key_id": "k", "ts_ns": 1, "payload": b"x", "sig": b"y", "fmt": "xml"}
    verdict = gate().admit(msgspec.msgpack.encode(raw), time.time_ns())
    assert verdict.reply.reasons == [Reason.MALFORMED_FRAME]


def test_a_msgpack_envelope_has_the_same_bytes_as_before_fmt():
    env = make_envelope("k", SECRET, b"p", 5)
    assert b"fmt" not in encode(env)
    assert intake_request_decoder.decode(encode(env)).fmt == "msgpack"
