"""The validator's intake reads a message frame by frame (no `recv_multipart`) and answers it with two
sends (no `send_multipart`), against the machine's Redis (no Ray): a message of other than one frame
from its sender is drained whole and refused MALFORMED_FRAME, and the frames after it are judged as
the messages they are (a left-over frame is never read as a new sender's identity or signal). The
events follower (`actors.service.followed_reports`, the validator's fills and a standby's reports)
reads frame by frame too: a message of other than topic and payload raises ValueError (as the
unpacking of `recv_multipart`'s list did) and is drained whole, so the next report reads clean."""

from __future__ import annotations

import time
import uuid

import pytest
import zmq

from actors.service import followed_reports
from actors.validator import Validator
from nae_client.client import prepare
from nae_client.wire import ExecKind, ExecutionReport, Reply, Status, encode, response_decoder
from node.reasons import Reason
from node.signing import make_envelope
from tests.chaos.test_redis_outage import free_port


def _signed(cfg, request_id: str) -> bytes:
    key, secret = next(iter(cfg.signing.keys.items()))
    _, payload = prepare({"request_id": request_id, "strategy_id": "frames", "symbol": "AAPL", "action": "BUY",
                          "quantity": 1.0, "timestamp": time.time()})
    return encode(make_envelope(key, secret.encode(), payload, time.time_ns()))


def _replies(sock: zmq.Socket, n: int, timeout_s: float = 20.0) -> list[Reply]:
    got: list[Reply] = []
    end = time.monotonic() + timeout_s
    while len(got) < n:
        left_ms = int((end - time.monotonic()) * 1000)
        if left_ms <= 0 or not sock.poll(left_ms):
            raise AssertionError("replies so far: " + repr(got))
        frames = sock.recv_multipart()
        assert len(frames) == 1, frames  # one frame per reply to a DEALER (the identity went to the ROUTER)
        got.append(response_decoder.decode(frames[0]))
    return got


@pytest.mark.parametrize("extra", [1, 2, 5])
def test_a_message_of_several_frames_is_refused_whole_and_the_next_ones_are_judged(make_config, redis_url, extra):
    cfg = make_config()
    v = Validator(cfg, redis_url, ["tcp://127.0.0.1:" + str(free_port())], "tcp://127.0.0.1:" + str(free_port()))
    intake = v.start(timeout_s=60)["intake"]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(intake)
    try:
        first, second = "f-" + uuid.uuid4().hex, "f-" + uuid.uuid4().hex
        sock.send(_signed(cfg, first))
        sock.send_multipart([_signed(cfg, "never-" + uuid.uuid4().hex)] + [b"junk"] * extra)  # one message
        sock.send(_signed(cfg, second))
        got = _replies(sock, 3)
        assert [(r.request_id, r.status) for r in (got[0], got[2])] == [(first, Status.ACCEPTED),
                                                                          (second, Status.ACCEPTED)], got
        assert got[1].status is Status.REJECTED and got[1].reasons == [Reason.MALFORMED_FRAME], got[1]
        assert got[1].detail == "expected one frame"
        # replies come back in the order of their messages: a frame of the refused one judged on its own
        # would have answered between it and `second`
        assert v.stats().accepted == 2
        # and nothing else was judged: a left-over frame read as a message is refused (to an identity
        # that routes nowhere, so the sender never sees it) and counted here
        assert v.stats().reasons == {Reason.MALFORMED_FRAME: 1}
    finally:
        sock.close(0)
        ctx.term()
        v.stop()


def _reports(sub: zmq.Socket, n: int, timeout_s: float = 10.0) -> list:
    """Read until `n` reports or errors came out of `followed_reports` (an error ends one call)."""
    out: list = []
    end = time.monotonic() + timeout_s
    while len(out) < n:
        left_ms = int((end - time.monotonic()) * 1000)
        if left_ms <= 0 or not sub.poll(left_ms):
            raise AssertionError("so far: " + repr(out))
        try:
            out.extend(rep.exec_id for rep in followed_reports(sub))
        except ValueError as exc:
            out.append("ValueError: " + str(exc).split(" (")[0])
    return out


def test_followed_reports_refuses_a_message_of_other_than_two_frames_and_reads_on():
    ctx = zmq.Context()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    for s in (pub, sub):
        s.setsockopt(zmq.LINGER, 0)
    endpoint = "tcp://127.0.0.1:" + str(free_port())
    pub.bind(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    try:
        def report(exec_id: str) -> bytes:
            return encode(ExecutionReport(kind=ExecKind.FILL, client_order_id="c", exec_id=exec_id, symbol="AAPL"))

        # a subscription is silent: publish a probe until it arrives (then the pipe is up)
        end = time.monotonic() + 10
        while not sub.poll(50):
            assert time.monotonic() < end, "the subscription never reached the publisher"
            pub.send_multipart([b"fill/1:s", report("probe")])
        while sub.poll(200):  # the probes still on their way
            sub.recv_multipart()
        pub.send_multipart([b"fill/1:s", report("e1")])
        pub.send_multipart([b"fill/1:s"])  # one frame
        pub.send_multipart([b"fill/1:s", report("e2")])
        pub.send_multipart([b"fill/1:s", report("x"), b"junk", b"junk"])  # four frames
        pub.send_multipart([b"fill/1:s", report("e3")])
        assert _reports(sub, 5) == ["e1", "ValueError: an events message of one frame", "e2",
                                    "ValueError: an events message of more than two frames", "e3"]
    finally:
        pub.close(0)
        sub.close(0)
        ctx.term()
