"""Sign and send signals to the node, get the verdict, read execution reports; sync and asyncio.

    from nae_client import ExecutionClient
    with ExecutionClient("tcp://node:5555", "optimus", secret, fallback_redis_url="redis://...") as client:
        reply = client.send_execution_signal({"strategy_id": "s1", "symbol": "AAPL", "action": "BUY", "quantity": 10})

`send_execution_signal(signal) -> dict` is the NAE execution client's call, kept for Optimus: a dict in
(the NAE signal fields; `request_id` and `timestamp` are filled in when missing), a dict out
(`status` ACCEPTED / REJECTED / ERROR, `request_id`, `signal_id`, `reasons`, `detail`, `duplicate`).
A signal whose verdict does not come within `timeout_s` raises `TransportError`: send it again with the
same `request_id` (the node answers a retry with the first answer and never places a second order).
With `fallback_redis_url`, an unanswered signal is queued on the node's Redis intake stream with a
maximum age (`fallback_max_age_ms`) and its verdict awaited there.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, AsyncIterator, Iterable, Iterator, Mapping, MutableMapping

import msgspec
import zmq
import zmq.asyncio

from nae_client.errors import TransportError
from nae_client.fallback import DEFAULT_MAX_AGE_MS, FallbackChannel
from nae_client.signing import make_envelope
from nae_client.wire import Discover, Endpoints, ExecKind, ExecutionReport, Reply, encode, report_decoder, \
    response_decoder, topic_prefixes

_pack = msgspec.msgpack.Encoder().encode


def prepare(signal: Mapping[str, Any]) -> tuple[str, bytes]:
    """(request_id, msgpack payload): a `request_id` and a `timestamp` are added when missing (into the
    caller's dict itself, so sending the same dict again is a retry the node answers with its first
    verdict, never a second order); the rest goes as given, so the node (not the client) judges it."""
    if isinstance(signal, MutableMapping):
        signal.setdefault("request_id", uuid.uuid4().hex)
        signal.setdefault("timestamp", time.time())
    fields = dict(signal)
    fields.setdefault("request_id", uuid.uuid4().hex)
    fields.setdefault("timestamp", time.time())
    rid = fields["request_id"]
    return (rid if isinstance(rid, str) else ""), _pack(fields)


def reply_dict(reply: Reply) -> dict[str, Any]:
    return msgspec.structs.asdict(reply) | {"status": str(reply.status)}


class _Base:
    def __init__(self, endpoint: str, key_id: str, secret: str | bytes, timeout_s: float = 2.0,
                 events_endpoint: str | None = None, fallback_redis_url: str | None = None,
                 fallback_stream: str = "execution.intake", fallback_max_age_ms: int = DEFAULT_MAX_AGE_MS) -> None:
        self.endpoint = endpoint
        self.key_id = key_id
        self._secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        self.timeout_s = timeout_s
        self._events_endpoint = events_endpoint
        self.fallback = (FallbackChannel(fallback_redis_url, fallback_stream, key_id, fallback_max_age_ms)
                         if fallback_redis_url else None)

    def frame(self, payload: bytes, ts_ns: int | None = None) -> bytes:
        return encode(make_envelope(self.key_id, self._secret, payload, ts_ns or time.time_ns()))

    def _timeout(self, what: str) -> TransportError:
        return TransportError("no " + what + " from " + self.endpoint + " within " + str(self.timeout_s) + " s")

    @staticmethod
    def _socket(ctx: zmq.Context, kind: int) -> zmq.Socket:
        sock = ctx.socket(kind)
        for opt, val in ((zmq.LINGER, 0), (zmq.SNDHWM, 0), (zmq.RCVHWM, 0)):
            sock.setsockopt(opt, val)
        return sock


class ExecutionClient(_Base):
    """Blocking client: one signal at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ctx = zmq.Context.instance()
        self._sock = self._socket(self._ctx, zmq.DEALER)
        self._sock.connect(self.endpoint)
        self._sub: zmq.Socket | None = None

    def __enter__(self) -> "ExecutionClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close(0)
        if self._sub is not None:
            self._sub.close(0)
        if self.fallback is not None:
            self.fallback.close()

    def send_execution_signal(self, signal: Mapping[str, Any]) -> dict[str, Any]:
        """The NAE execution client's call: a signal dict in, the verdict as a dict out."""
        return reply_dict(self.send_signal(signal))

    def send_signal(self, signal: Mapping[str, Any]) -> Reply:
        rid, payload = prepare(signal)
        ts = time.time_ns()
        try:
            return self._exchange(self.frame(payload, ts), rid, ts)
        except TransportError:
            if self.fallback is None:
                raise
            self.fallback.submit(self.frame(payload))
            return self.fallback.await_reply(rid, self.timeout_s)

    def _exchange(self, frame: bytes, request_id: str, ts_ns: int) -> Reply:
        self._sock.send(frame)
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(int(left * 1000) + 1):
                raise self._timeout("reply")
            msg = response_decoder.decode(self._sock.recv())
            if type(msg) is Reply and msg.request_id in (request_id, "") and msg.ts_ns in (ts_ns, 0):
                return msg  # a reply to an earlier attempt (another ts_ns) is skipped

    def endpoints(self) -> Endpoints:
        self._sock.send(encode(Discover()))
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(int(left * 1000) + 1):
                raise self._timeout("endpoints")
            msg = response_decoder.decode(self._sock.recv())
            if type(msg) is Endpoints:
                return msg

    def subscribe(self, strategy_id: str = "", kinds: Iterable[ExecKind] | None = None) -> None:
        """Receive execution reports of one strategy ("" = all), some kinds (None = all)."""
        if self._sub is None:
            self._sub = self._socket(self._ctx, zmq.SUB)
            self._sub.connect(self._events_endpoint or self.endpoints().events)
        for prefix in topic_prefixes(strategy_id, kinds):
            self._sub.setsockopt(zmq.SUBSCRIBE, prefix)

    def next_event(self, timeout_s: float | None = None) -> ExecutionReport | None:
        if self._sub is None:
            raise RuntimeError("call subscribe() first")
        if not self._sub.poll(int((self.timeout_s if timeout_s is None else timeout_s) * 1000)):
            return None
        return report_decoder.decode(self._sub.recv_multipart()[-1])

    def events(self, timeout_s: float = 1.0) -> Iterator[ExecutionReport]:
        """Reports until none arrives for `timeout_s`."""
        while (report := self.next_event(timeout_s)) is not None:
            yield report


class AsyncExecutionClient(_Base):
    """asyncio client: many signals in flight on one socket, verdicts matched by `request_id`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ctx = zmq.asyncio.Context.instance()
        self._sock = self._socket(self._ctx, zmq.DEALER)
        self._sock.connect(self.endpoint)
        self._sub: zmq.asyncio.Socket | None = None
        self._pending: dict[str, tuple[Any, int]] = {}
        self._reader: Any = None
        self._hello: Any = None

    async def __aenter__(self) -> "AsyncExecutionClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self._sock.close(0)
        if self._sub is not None:
            self._sub.close(0)
        if self.fallback is not None:
            self.fallback.close()

    def _ensure_reader(self) -> None:
        import asyncio

        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read_replies())

    async def _read_replies(self) -> None:
        while True:
            msg = response_decoder.decode(await self._sock.recv())
            if type(msg) is Endpoints:
                if self._hello is not None and not self._hello.done():
                    self._hello.set_result(msg)
                continue
            entry = self._pending.get(msg.request_id)
            if entry is not None and not entry[0].done() and msg.ts_ns in (entry[1], 0):
                del self._pending[msg.request_id]
                entry[0].set_result(msg)

    async def send_execution_signal(self, signal: Mapping[str, Any]) -> dict[str, Any]:
        return reply_dict(await self.send_signal(signal))

    async def send_signal(self, signal: Mapping[str, Any]) -> Reply:
        import asyncio

        rid, payload = prepare(signal)
        self._ensure_reader()
        fut = asyncio.get_running_loop().create_future()
        ts = time.time_ns()
        self._pending[rid] = (fut, ts)
        await self._sock.send(self.frame(payload, ts))
        try:
            return await asyncio.wait_for(fut, self.timeout_s)
        except asyncio.TimeoutError:
            self._pending.pop(rid, None)
            if self.fallback is None:
                raise self._timeout("reply") from None
        await asyncio.to_thread(self.fallback.submit, self.frame(payload))
        return await asyncio.to_thread(self.fallback.await_reply, rid, self.timeout_s)

    async def endpoints(self) -> Endpoints:
        import asyncio

        self._ensure_reader()
        self._hello = asyncio.get_running_loop().create_future()
        await self._sock.send(encode(Discover()))
        try:
            return await asyncio.wait_for(self._hello, self.timeout_s)
        except asyncio.TimeoutError:
            raise self._timeout("endpoints") from None

    async def subscribe(self, strategy_id: str = "", kinds: Iterable[ExecKind] | None = None) -> None:
        if self._sub is None:
            endpoint = self._events_endpoint or (await self.endpoints()).events
            self._sub = self._socket(self._ctx, zmq.SUB)
            self._sub.connect(endpoint)
        for prefix in topic_prefixes(strategy_id, kinds):
            self._sub.setsockopt(zmq.SUBSCRIBE, prefix)

    async def next_event(self, timeout_s: float | None = None) -> ExecutionReport | None:
        if self._sub is None:
            raise RuntimeError("call subscribe() first")
        if not await self._sub.poll(int((self.timeout_s if timeout_s is None else timeout_s) * 1000)):
            return None
        return report_decoder.decode((await self._sub.recv_multipart())[-1])

    async def events(self, timeout_s: float = 1.0) -> AsyncIterator[ExecutionReport]:
        while (report := await self.next_event(timeout_s)) is not None:
            yield report


def send_execution_signal(signal: Mapping[str, Any], *, endpoint: str, key_id: str, secret: str | bytes,
                          timeout_s: float = 2.0, fallback_redis_url: str | None = None) -> dict[str, Any]:
    """One signal, one verdict, as a function (opens and closes a client: for scripts, not hot loops)."""
    with ExecutionClient(endpoint, key_id, secret, timeout_s=timeout_s, fallback_redis_url=fallback_redis_url) as c:
        return c.send_execution_signal(signal)
