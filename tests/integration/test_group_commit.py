"""The validator's group commit against the machine's Redis (no Ray; the wake-up driven by hand):
a round's append is on the wire while the next round is checked, yet no ACK reaches a client before
its own append is in the log; a refused append leaves its signals unACKed and unlogged and the next
batch goes on; a crash between an append and its ACKs loses nothing (a retry is answered ACCEPTED
from the log, and the log holds each signal once)."""

from __future__ import annotations

import time

import msgspec
import pytest
import redis
import zmq

from actors.validator import Validator
from nae_client.client import prepare
from nae_client.wire import Reply, Status, encode, response_decoder
from node.fenced_log import FencedLog
from node.messages import SignalBatch, batch_decoder
from node.signing import make_envelope
from node.streams import SIGNALS_FIELD, unpack_signals
from tests.chaos.test_redis_outage import free_port


class _Crash(BaseException):
    """The process dying right after an append answered (before any ACK of it went out)."""


class _Store(FencedLog):
    """The real fenced log, with a hook before each send and after each answer (what the test checks
    at those moments, and the real failures it causes there: another writer taking the fence)."""

    def __init__(self, log: FencedLog, before_send, after_receive) -> None:
        self.__dict__.update(log.__dict__)
        self.sends = 0
        self._before_send, self._after_receive = before_send, after_receive

    def send(self, packed: bytes) -> None:
        self.sends += 1
        self._before_send(self.sends)
        super().send(packed)

    def receive(self) -> bytes:
        entry_id = super().receive()
        self._after_receive(self.sends)
        return entry_id


class _Client:
    """A DEALER that signs signals and keeps every reply it has received."""

    def __init__(self, cfg, intake: str) -> None:
        self._ctx = zmq.Context()
        self.sock = self._ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(intake)
        self._key, self._secret = next(iter(cfg.signing.keys.items()))
        self.replies: dict[str, Reply] = {}

    def send(self, request_id: str, qty: float = 1.0) -> None:
        _, payload = prepare({"request_id": request_id, "strategy_id": "gc", "symbol": "AAPL", "action": "BUY",
                              "quantity": qty, "timestamp": time.time()})
        self.sock.send(encode(make_envelope(self._key, self._secret.encode(), payload, time.time_ns())))

    def drain(self, wait_ms: int = 0) -> dict[str, Reply]:
        while self.sock.poll(wait_ms):
            msg = response_decoder.decode(self.sock.recv())
            if type(msg) is Reply:
                self.replies[msg.request_id] = msg
            wait_ms = 0
        return self.replies

    def close(self) -> None:
        self.sock.close(0)
        self._ctx.term()


def _logged(url: str, stream: str) -> list[str]:
    out = []
    for _, fields in redis.Redis.from_url(url).xrange(stream):
        out.extend(acc.signal.request_id for acc in unpack_signals(fields))
    return out


def _opened(cfg, url: str) -> tuple[Validator, zmq.Context, str]:
    v = Validator(cfg, url, ["tcp://127.0.0.1:" + str(free_port())], "tcp://127.0.0.1:" + str(free_port()))
    ctx = zmq.Context()
    intake = v._open(ctx)["intake"]
    return v, ctx, intake


def _closed(v: Validator, ctx: zmq.Context) -> None:
    v._close()
    ctx.term()


def _wake_until(v: Validator, client: _Client, ids: list[str]) -> None:
    """Queue every signal, then run wake-ups (as the loop would) until each has its reply."""
    deadline = time.monotonic() + 20
    while not all(rid in client.drain() for rid in ids):
        if time.monotonic() > deadline:
            raise AssertionError("no reply for " + str([r for r in ids if r not in client.replies]))
        if v._router.poll(50):
            v._on_wake({v._router: zmq.POLLIN})


def _queued(v: Validator) -> None:
    """Wait until the intake has frames to read, then let the rest of the burst cross the loopback
    socket (so rounds of batch_max follow each other in one wake-up)."""
    assert v._router.poll(10_000), "no frame reached the intake"
    time.sleep(0.2)


@pytest.mark.parametrize("batch_max", [1, 2, 3])
def test_an_ack_never_precedes_its_append_and_a_refused_append_acks_nothing(make_config, redis_url, batch_max):
    cfg = make_config()
    cfg = msgspec.structs.replace(cfg, intake=msgspec.structs.replace(cfg.intake, batch_max=batch_max))
    stream = cfg.storage.signals_stream
    v, ctx, intake = _opened(cfg, redis_url)
    client = _Client(cfg, intake)
    rival = FencedLog(redis.Redis.from_url(redis_url), stream, SIGNALS_FIELD, 1_000_000, cfg.node_id + ".signals.fence")
    seen_at_receive: list[int] = []

    def every_ack_is_logged(_: int) -> None:  # at each moment the store is used: no ACK ahead of its append
        logged = set(_logged(redis_url, stream))
        acked = {rid for rid, r in client.drain().items() if r.status is Status.ACCEPTED}
        assert acked <= logged, acked - logged

    def before_send(n: int) -> None:
        every_ack_is_logged(n)
        if n == 2:
            rival.open()  # another writer takes the fence: Redis refuses the second append
        elif n == 3:
            v._fenced.open()  # the validator's log takes it back: the third goes in

    def after_receive(n: int) -> None:
        every_ack_is_logged(n)
        seen_at_receive.append(len(v.gate._memory))

    v._fenced = _Store(v._fenced, before_send, after_receive)
    ids = ["gc-" + str(i) + "-" + str(time.time_ns()) for i in range(3 * batch_max)]
    try:
        for rid in ids:
            client.send(rid)
        _queued(v)
        _wake_until(v, client, ids)
        every_ack_is_logged(0)
        first, second, third = ids[:batch_max], ids[batch_max:2 * batch_max], ids[2 * batch_max:]
        status = {rid: client.replies[rid].status for rid in ids}
        assert all(status[r] is Status.ACCEPTED for r in first + third), status
        assert all(status[r] is Status.REJECTED and client.replies[r].reasons == ["STORE_UNAVAILABLE"]
                   for r in second), status
        assert _logged(redis_url, stream) == first + third  # in intake order, the refused batch nowhere
        # group commit: when the first append's answer was read, the next round had been checked
        assert seen_at_receive[0] >= 2 * batch_max, seen_at_receive
        # a retry of the refused batch is admitted afresh
        for rid in second:
            client.send(rid)
        client.replies.clear()
        _wake_until(v, client, second)
        assert all(client.replies[r].status is Status.ACCEPTED and not client.replies[r].duplicate for r in second)
        assert sorted(_logged(redis_url, stream)) == sorted(ids)
    finally:
        client.close()
        _closed(v, ctx)


def test_a_crash_between_append_and_ack_loses_nothing(make_config, redis_url):
    cfg = make_config()
    cfg = msgspec.structs.replace(cfg, intake=msgspec.structs.replace(cfg.intake, batch_max=2))
    stream = cfg.storage.signals_stream
    v, ctx, intake = _opened(cfg, redis_url)
    client = _Client(cfg, intake)

    def crash_after_first(n: int) -> None:
        if n == 1:
            raise _Crash()

    v._fenced = _Store(v._fenced, lambda n: None, crash_after_first)
    ids = ["crash-" + str(i) + "-" + str(time.time_ns()) for i in range(4)]
    try:
        for rid in ids:
            client.send(rid)
        _queued(v)
        with pytest.raises(_Crash):
            v._on_wake({v._router: zmq.POLLIN})
        assert client.drain(wait_ms=200) == {}  # the first batch is logged, and nobody was told
        assert _logged(redis_url, stream) == ids[:2]
    finally:
        _closed(v, ctx)
        client.close()
    # the node comes back on the same Redis; the client retries everything with the same request_ids
    crashed_tip = redis.Redis.from_url(redis_url).xrevrange(stream, count=1)[0][0].decode()
    v, ctx, intake = _opened(cfg, redis_url)
    forwarded: list[SignalBatch] = []
    v._forward = lambda batch: forwarded.append(batch_decoder.decode(batch))
    client = _Client(cfg, intake)
    try:
        for rid in ids:
            client.send(rid)
        _wake_until(v, client, ids)
        assert all(client.replies[r].status is Status.ACCEPTED for r in ids), client.replies
        assert [client.replies[r].duplicate for r in ids] == [True, True, False, False]  # from the log
        assert sorted(_logged(redis_url, stream)) == sorted(ids)  # each once: nothing lost, none doubled
        # the first batch forwarded after the crash names the entry logged and never forwarded before it:
        # an engine that never got that one reads it back (tests/integration/test_signal_gap.py)
        assert forwarded and forwarded[0].prev_id == crashed_tip, (crashed_tip, forwarded[:1])
        assert all(b.prev_id == a.entry_id for a, b in zip(forwarded, forwarded[1:]))
    finally:
        client.close()
        _closed(v, ctx)
