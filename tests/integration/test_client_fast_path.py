"""The clients' fast paths against a real ZeroMQ intake that answers what it chooses (no node): the
asyncio client's one deadline timer fails exactly the signals left unanswered, each after its own
timeout, whatever was answered around them; the blocking client on its own Poller skips a reply to
an earlier attempt and still times out on time."""

from __future__ import annotations

import asyncio
import threading
import time

import msgspec
import pytest
import zmq

from nae_client import AsyncExecutionClient, ExecutionClient
from nae_client.errors import TransportError
from nae_client.wire import Reply, SignedSignal, Status, encode

_env = msgspec.msgpack.Decoder(SignedSignal).decode
_payload = msgspec.msgpack.Decoder(dict).decode


class _Intake:
    """A ROUTER on a thread: answers a signal unless its request_id starts with "mute"; a "stray"
    one first gets a reply stamped as another attempt (another ts_ns)."""

    def __init__(self) -> None:
        self._ctx = zmq.Context()
        self.sock = self._ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.endpoint = "tcp://127.0.0.1:" + str(self.sock.bind_to_random_port("tcp://127.0.0.1"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.sock.poll(50):
                continue
            ident, frame = self.sock.recv_multipart()
            env = _env(frame)
            rid = _payload(env.payload)["request_id"]
            if rid.startswith("mute"):
                continue
            if rid.startswith("stray"):
                self.sock.send_multipart((ident, encode(Reply(status=Status.ACCEPTED, request_id=rid,
                                                              ts_ns=env.ts_ns - 1))))
                continue
            self.sock.send_multipart((ident, encode(Reply(status=Status.ACCEPTED, request_id=rid, ts_ns=env.ts_ns))))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close(0)
        self._ctx.term()


@pytest.fixture()
def intake():
    server = _Intake()
    yield server
    server.close()


def _signal(rid: str) -> dict:
    return {"request_id": rid, "strategy_id": "s1", "symbol": "AAPL", "action": "BUY", "quantity": 1.0}


def test_the_async_client_fails_exactly_the_unanswered_each_after_its_timeout(intake):
    async def run() -> dict[str, object]:
        async with AsyncExecutionClient(intake.endpoint, "k", "secret", timeout_s=0.5) as client:
            async def one(rid: str, delay: float) -> tuple[str, object, float]:
                await asyncio.sleep(delay)
                t0 = time.monotonic()
                try:
                    return rid, await client.send_signal(_signal(rid)), time.monotonic() - t0
                except TransportError as exc:
                    return rid, exc, time.monotonic() - t0

            plan = [("ok-" + str(i), i * 0.05) for i in range(10)] + [("mute-" + str(i), i * 0.1) for i in range(4)]
            done = await asyncio.gather(*(one(rid, d) for rid, d in plan))
            assert not client._pending  # nothing left waiting
            return {rid: (res, took) for rid, res, took in done}

    got = asyncio.run(run())
    for rid, (res, took) in got.items():
        if rid.startswith("ok"):
            assert isinstance(res, Reply) and res.request_id == rid
        else:
            assert isinstance(res, TransportError), rid
            assert took >= 0.45, (rid, took)  # its own deadline, not an earlier signal's


def test_the_blocking_client_skips_a_stray_reply_and_times_out(intake):
    with ExecutionClient(intake.endpoint, "k", "secret", timeout_s=0.5) as client:
        assert client.send_signal(_signal("ok-1")).status == "ACCEPTED"
        t0 = time.monotonic()
        with pytest.raises(TransportError):
            client.send_signal(_signal("stray-1"))  # the only reply is to another attempt
        assert time.monotonic() - t0 >= 0.45
        assert client.send_signal(_signal("ok-2")).request_id == "ok-2"  # a new socket, still registered
