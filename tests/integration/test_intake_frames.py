"""The validator's intake reads a message frame by frame (no `recv_multipart`) and answers it with two
sends (no `send_multipart`), against the machine's Redis (no Ray): a message of other than one frame
from its sender is drained whole and refused MALFORMED_FRAME, and the frames after it are judged as
the messages they are (a left-over frame is never read as a new sender's identity or signal)."""

from __future__ import annotations

import time
import uuid

import pytest
import zmq

from actors.validator import Validator
from nae_client.client import prepare
from nae_client.wire import Reply, Status, encode, response_decoder
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
        assert v.stats()["accepted"] == 2
        # and nothing else was judged: a left-over frame read as a message is refused (to an identity
        # that routes nowhere, so the sender never sees it) and counted here
        assert v.stats()["reasons"] == {Reason.MALFORMED_FRAME: 1}
    finally:
        sock.close(0)
        ctx.term()
        v.stop()
