"""The client Optimus uses: sign and send signals, get replies, subscribe to fills and events.

    with ExecutionClient("tcp://127.0.0.1:5555", "optimus", secret) as client:
        reply = client.send_signal({"strategy_id": "s1", "symbol": "AAPL", "action": "BUY", "quantity": 10})
        client.subscribe()
        for report in client.events(timeout_s=1.0): ...

`AsyncExecutionClient` is the asyncio twin; it keeps many signals in flight on one socket and
matches replies by `request_id`. A reply that does not come within `timeout_s` raises
`TransportError` (reason TIMEOUT): retry with the same `request_id`, the node answers a retry with
the first answer and never places a second order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, AsyncIterator, Iterator

import msgspec
import zmq
import zmq.asyncio

from node.errors import TransportError
from node.messages import (
    Discover,
    Endpoints,
    ExecutionReport,
    Reply,
    Signal,
    encode,
    intake_response_decoder,
    report_decoder,
)
from node.signing import make_envelope

SignalLike = Signal | dict[str, Any]


def _secret(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def prepare(signal: SignalLike) -> tuple[str, bytes]:
    """(request_id, payload bytes). A dict gets a request_id and timestamp when it has none; it is
    sent as given otherwise, so the node (not the client) judges it."""
    if isinstance(signal, Signal):
        return signal.request_id, encode(signal)
    fields = dict(signal)
    fields.setdefault("request_id", uuid.uuid4().hex)
    fields.setdefault("timestamp", time.time())
    rid = fields["request_id"]
    return (rid if isinstance(rid, str) else ""), msgspec.msgpack.encode(fields)


class _Base:
    def __init__(self, endpoint: str, key_id: str, secret: str | bytes, timeout_s: float) -> None:
        self.endpoint = endpoint
        self.key_id = key_id
        self._secret = _secret(secret)
        self.timeout_s = timeout_s

    def frame(self, payload: bytes) -> bytes:
        return encode(make_envelope(self.key_id, self._secret, payload, time.time_ns()))

    def _timeout(self, what: str) -> TransportError:
        return TransportError("no " + what + " from " + self.endpoint + " within " + str(self.timeout_s) + " s")


class ExecutionClient(_Base):
    """Blocking client: one request at a time."""

    def __init__(
        self,
        endpoint: str,
        key_id: str,
        secret: str | bytes,
        timeout_s: float = 2.0,
        events_endpoint: str | None = None,
    ) -> None:
        super().__init__(endpoint, key_id, secret, timeout_s)
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(endpoint)
        self._events_endpoint = events_endpoint
        self._sub: zmq.Socket | None = None

    def __enter__(self) -> "ExecutionClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close(0)
        if self._sub is not None:
            self._sub.close(0)

    def send_signal(self, signal: SignalLike) -> Reply:
        rid, payload = prepare(signal)
        return self.send_frame(self.frame(payload), rid)

    def send_frame(self, frame: bytes, request_id: str | None = None) -> Reply:
        """Send a raw frame; with request_id None, the next reply is taken whatever its id."""
        self._sock.send(frame)
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(int(left * 1000) + 1):
                raise self._timeout("reply")
            msg = intake_response_decoder.decode(self._sock.recv())
            if type(msg) is Reply and (request_id is None or msg.request_id in (request_id, "")):
                return msg

    def endpoints(self) -> Endpoints:
        self._sock.send(encode(Discover()))
        if not self._sock.poll(int(self.timeout_s * 1000)):
            raise self._timeout("endpoints")
        while True:
            msg = intake_response_decoder.decode(self._sock.recv())
            if type(msg) is Endpoints:
                return msg

    def subscribe(self, strategy_id: str = "") -> None:
        """Start receiving execution reports (all, or one strategy's)."""
        if self._sub is None:
            endpoint = self._events_endpoint or self.endpoints().events
            self._sub = self._ctx.socket(zmq.SUB)
            self._sub.setsockopt(zmq.LINGER, 0)
            self._sub.setsockopt(zmq.RCVHWM, 0)
            self._sub.connect(endpoint)
        self._sub.setsockopt(zmq.SUBSCRIBE, strategy_id.encode())

    def next_event(self, timeout_s: float | None = None) -> ExecutionReport | None:
        if self._sub is None:
            raise RuntimeError("call subscribe() first")
        wait = self.timeout_s if timeout_s is None else timeout_s
        if not self._sub.poll(int(wait * 1000)):
            return None
        _, payload = self._sub.recv_multipart()
        return report_decoder.decode(payload)

    def events(self, timeout_s: float = 1.0) -> Iterator[ExecutionReport]:
        """Yield reports until none arrives for `timeout_s`."""
        while (ev := self.next_event(timeout_s)) is not None:
            yield ev


class AsyncExecutionClient(_Base):
    """asyncio client: many signals in flight on one socket, replies matched by request_id."""

    def __init__(
        self,
        endpoint: str,
        key_id: str,
        secret: str | bytes,
        timeout_s: float = 2.0,
        events_endpoint: str | None = None,
    ) -> None:
        super().__init__(endpoint, key_id, secret, timeout_s)
        self._ctx = zmq.asyncio.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, 0)
        self._sock.setsockopt(zmq.RCVHWM, 0)
        self._sock.connect(endpoint)
        self._events_endpoint = events_endpoint
        self._pending: dict[str, asyncio.Future] = {}
        self._hello: asyncio.Future | None = None
        self._reader: asyncio.Task | None = None
        self._sub: zmq.asyncio.Socket | None = None
        self.unmatched = 0

    async def __aenter__(self) -> "AsyncExecutionClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing
                pass
        self._sock.close(0)
        if self._sub is not None:
            self._sub.close(0)

    def _ensure_reader(self) -> None:
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read_replies())

    async def _read_replies(self) -> None:
        recv = self._sock.recv
        pending = self._pending
        while True:
            msg = intake_response_decoder.decode(await recv())
            if type(msg) is Reply:
                fut = pending.pop(msg.request_id, None)
                if fut is None or fut.done():
                    self.unmatched += 1
                else:
                    fut.set_result(msg)
            elif self._hello is not None and not self._hello.done():
                self._hello.set_result(msg)

    async def send_signal(self, signal: SignalLike) -> Reply:
        rid, payload = prepare(signal)
        return await self.send_payload(rid, payload)

    async def send_payload(self, request_id: str, payload: bytes) -> Reply:
        self._ensure_reader()
        fut = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        await self._sock.send(self.frame(payload))
        try:
            return await asyncio.wait_for(fut, self.timeout_s)
        except asyncio.TimeoutError:
            self._pending.pop(request_id, None)
            raise self._timeout("reply") from None

    async def endpoints(self) -> Endpoints:
        self._ensure_reader()
        self._hello = asyncio.get_running_loop().create_future()
        await self._sock.send(encode(Discover()))
        try:
            return await asyncio.wait_for(self._hello, self.timeout_s)
        except asyncio.TimeoutError:
            raise self._timeout("endpoints") from None

    async def subscribe(self, strategy_id: str = "") -> None:
        if self._sub is None:
            endpoint = self._events_endpoint or (await self.endpoints()).events
            self._sub = self._ctx.socket(zmq.SUB)
            self._sub.setsockopt(zmq.LINGER, 0)
            self._sub.setsockopt(zmq.RCVHWM, 0)
            self._sub.connect(endpoint)
        self._sub.setsockopt(zmq.SUBSCRIBE, strategy_id.encode())

    async def next_event(self, timeout_s: float | None = None) -> ExecutionReport | None:
        if self._sub is None:
            raise RuntimeError("call subscribe() first")
        wait = self.timeout_s if timeout_s is None else timeout_s
        if not await self._sub.poll(int(wait * 1000)):
            return None
        _, payload = await self._sub.recv_multipart()
        return report_decoder.decode(payload)

    async def events(self, timeout_s: float = 1.0) -> AsyncIterator[ExecutionReport]:
        while (ev := await self.next_event(timeout_s)) is not None:
            yield ev
