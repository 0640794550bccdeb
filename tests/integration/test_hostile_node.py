"""Hostile frames against a whole node (issue 10 item 1): one poison frame in a burst of good ones
must not cost the good ones anything: each is ACCEPTED once, appended, executed and answered, and a
retry is answered as a retry of a signal that really executed."""

from __future__ import annotations

import time
import uuid

import msgspec
import pytest
import zmq

from node.messages import Reply, Status, encode, intake_response_decoder
from node.signing import make_envelope


@pytest.fixture(scope="module")
def node(module_node):
    return module_node


def signed(node, payload: bytes, fmt: str = "msgpack") -> bytes:
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    env = make_envelope(key_id, secret.encode(), payload, time.time_ns())
    return encode(msgspec.structs.replace(env, fmt=fmt))


def good_payload(request_id: str) -> bytes:
    return msgspec.msgpack.encode({"request_id": request_id, "strategy_id": "hostile", "timestamp": time.time(),
                                   "symbol": "AAPL", "action": "BUY", "quantity": 1.0})


def poison_frames(node) -> list[bytes]:
    env = {"type": "sig", "key_id": "k", "ts_ns": 1, "payload": b"", "x": []}
    nested_envelope = msgspec.msgpack.encode(env)[:-1] + b"\x91" * 30_000 + b"\x90"
    nested_json = signed(node, b"[" * 30_000 + b"]" * 30_000, fmt="json")
    ancient = signed(node, msgspec.json.encode({"request_id": "ancient-" + uuid.uuid4().hex, "strategy_id": "hostile",
                                                "timestamp": "0001-01-01T00:00:00+01:00", "symbol": "AAPL",
                                                "action": "BUY", "quantity": 1.0}), fmt="json")
    return [nested_envelope, nested_json, ancient]


def burst(node, frames: list[bytes], timeout_s: float = 30.0) -> list[Reply]:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(node.registry["intake"])
    try:
        for f in frames:
            sock.send(f)
        replies = []
        deadline = time.monotonic() + timeout_s
        while len(replies) < len(frames):
            assert sock.poll(int(max(0.0, deadline - time.monotonic()) * 1000) + 1), "replies missing"
            msg = intake_response_decoder.decode(sock.recv())
            if type(msg) is Reply:
                replies.append(msg)
        return replies
    finally:
        sock.close(0)


def test_poison_frames_in_a_burst_cost_the_good_signals_nothing(node):
    ids = ["good-" + uuid.uuid4().hex for _ in range(60)]
    poison = poison_frames(node)
    frames = [signed(node, good_payload(r)) for r in ids[:30]] + poison + [signed(node, good_payload(r)) for r in ids[30:]]
    before = node.stats()["broker"]["submitted"]
    replies = burst(node, frames)
    by_id = {r.request_id: r for r in replies if r.request_id in ids}
    assert set(by_id) == set(ids)
    assert all(r.status is Status.ACCEPTED and not r.duplicate for r in by_id.values())
    refused = [r for r in replies if r.request_id not in ids]
    assert len(refused) == len(poison) and all(r.status is Status.REJECTED and r.reasons for r in refused)
    deadline = time.monotonic() + 30
    while node.stats()["broker"]["submitted"] - before < len(ids):  # every good one reaches the broker
        assert time.monotonic() < deadline, "accepted signals were never executed"
        time.sleep(0.1)
    retries = burst(node, [signed(node, good_payload(r)) for r in ids[:5]])
    assert all(r.status is Status.ACCEPTED and r.duplicate for r in retries)
