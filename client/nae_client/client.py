"""Sign and send signals to the node, get the verdict, read execution reports; sync and asyncio.

    from nae_client import ExecutionClient
    with ExecutionClient("tcp://node:5555", "optimus", secret, fallback_redis_url="redis://...") as client:
        reply = client.send_execution_signal({"strategy_id": "s1", "symbol": "AAPL", "action": "BUY", "quantity": 10})
        client.subscribe("s1")
        for report in client.events(timeout_s=1.0): ...

This is the one client: Optimus installs it as `nae-client`, and the node's own tools, tests and
benchmarks use the same module (`node.client` re-exports it).

`send_execution_signal(signal) -> dict` is the NAE execution client's call, kept for Optimus: a dict in
(the NAE signal fields; `request_id` and `timestamp` are filled in when missing), a dict out
(`status` ACCEPTED / REJECTED / ERROR, `request_id`, `signal_id`, `reasons`, `detail`, `duplicate`);
`send_signal` answers the `Reply` itself. A verdict that does not come within `timeout_s` raises
`TransportError` (reason TIMEOUT): send it again with the same `request_id` (the node answers a retry
with the first answer and never places a second order).

`AsyncExecutionClient` is the asyncio twin; it keeps many signals in flight on one socket and
matches replies by `request_id`.

With `fallback_redis_url`, a signal whose reply does not come in time is re-signed and appended to
the fallback stream (`execution.intake`) with a maximum age (`fallback_max_age_ms`) instead, and the
verdict is awaited there (see `nae_client.fallback`); only if that also stays silent does the call raise.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections import deque
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Mapping, MutableMapping

import msgspec
import zmq

from nae_client.delivered import Delivered
from nae_client.errors import TransportError
from nae_client.fallback import DEFAULT_MAX_AGE_MS, FallbackChannel
from nae_client.signing import signing_bytes
from nae_client.wire import (
    Discover,
    HELLO_TOPIC,
    Endpoints,
    ExecKind,
    ExecutionReport,
    Reply,
    SignedSignal,
    encode,
    hello_topic,
    report_decoder,
    response_decoder,
    topic_prefixes,
)

#: a signal as a dict of the NAE fields, or a typed struct with a `request_id` (the node's `Signal`)
SignalLike = Mapping[str, Any] | msgspec.Struct


def _secret(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def prepare(signal: SignalLike) -> tuple[str, bytes]:
    """(request_id, msgpack payload): a `request_id` and a `timestamp` are added when missing (into the
    caller's dict itself, so sending the same dict again is a retry the node answers with its first
    verdict, never a second order); the rest goes as given, so the node (not the client) judges it."""
    if type(signal) is dict:  # the common case, before the ABC checks (typing's isinstance costs ~10 us)
        fields: MutableMapping[str, Any] = signal
    elif isinstance(signal, msgspec.Struct):
        return getattr(signal, "request_id"), encode(signal)
    else:
        fields = signal if isinstance(signal, MutableMapping) else dict(signal)
    if "request_id" not in fields:
        fields["request_id"] = uuid.uuid4().hex
    if "timestamp" not in fields:
        fields["timestamp"] = time.time()
    rid = fields["request_id"]
    return (rid if isinstance(rid, str) else ""), encode(fields)


def reply_dict(reply: Reply) -> dict[str, Any]:
    return msgspec.structs.asdict(reply) | {"status": str(reply.status)}


class _Base:
    """What both clients share: the key, the DEALER to the intake, the fallback channel."""

    def __init__(
        self,
        endpoint: str,
        key_id: str,
        secret: str | bytes,
        timeout_s: float = 2.0,
        events_endpoint: str | None = None,
        fallback_redis_url: str | None = None,
        fallback_stream: str = "execution.intake",
        fallback_max_age_ms: int = DEFAULT_MAX_AGE_MS,
    ) -> None:
        self.endpoint = endpoint
        self.key_id = key_id
        self._secret = _secret(secret)  # also keys the HMAC the frames copy (see the property)
        self.timeout_s = timeout_s
        self.fallback = FallbackChannel(fallback_redis_url, fallback_stream, key_id) if fallback_redis_url else None
        self.fallback_max_age_ms = fallback_max_age_ms  # a queued signal not taken by then is refused
        self._events_endpoint = events_endpoint
        self._ctx = zmq.Context.instance()
        self._sock = self._dealer()
        self.delivered = Delivered()  # each fill handed out once (by exec id); `.repeats` counts the drops

    def _dealer(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        for opt, val in ((zmq.LINGER, 0), (zmq.SNDHWM, 0), (zmq.RCVHWM, 0)):
            sock.setsockopt(opt, val)
        sock.connect(self.endpoint)
        return sock

    @property
    def _secret(self) -> bytes:
        return self._key

    @_secret.setter
    def _secret(self, secret: bytes) -> None:
        self._key = secret
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)  # keyed once: copied per frame

    def frame(self, payload: bytes, ts_ns: int | None = None) -> bytes:
        """The signed envelope (`make_envelope`'s bytes, from a keyed HMAC copied per frame)."""
        ts = ts_ns or time.time_ns()
        mac = self._mac.copy()
        mac.update(signing_bytes(ts, payload))
        return encode(SignedSignal(key_id=self.key_id, ts_ns=ts, payload=payload, sig=mac.digest()))

    def _timeout(self, what: str) -> TransportError:
        return TransportError("no " + what + " from " + self.endpoint + " within " + str(self.timeout_s) + " s")


class ExecutionClient(_Base):
    """Blocking client: one request at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sub: zmq.Socket | None = None
        self._poller = zmq.Poller()  # made once, the DEALER registered (again when it is replaced)
        self._poller.register(self._sock, zmq.POLLIN)
        self._early: deque[ExecutionReport] = deque()  # reports that came while a subscribe awaited its greeting

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

    def send_signal(self, signal: SignalLike) -> Reply:
        rid, payload = prepare(signal)
        ts = time.time_ns()
        try:
            return self.send_frame(self.frame(payload, ts), rid, ts)
        except TransportError:
            # a frame the socket still holds (no intake to take it) would reach a restarted intake
            # later, beside the fallback's copy: a new socket drops it
            self._poller.unregister(self._sock)
            self._sock.close(0)
            self._sock = self._dealer()
            self._poller.register(self._sock, zmq.POLLIN)
            if self.fallback is None:
                raise
            self.fallback.submit(self.frame(payload), self.fallback_max_age_ms)
            return self.fallback.await_reply(rid, self.timeout_s)

    def send_frame(self, frame: bytes, request_id: str | None = None, ts_ns: int = 0) -> Reply:
        """Send a raw frame; with request_id None, the next reply is taken whatever its id. A reply
        to an earlier attempt of the same request_id (another `ts_ns`) is skipped."""
        sock = self._sock
        sock.send(frame)
        deadline = time.monotonic() + self.timeout_s
        wait_ms = int(self.timeout_s * 1000) + 1
        while True:  # on the client's own Poller (`Socket.poll` builds a Poller per call)
            if not self._poller.poll(wait_ms):
                raise self._timeout("reply")
            msg = response_decoder.decode(sock.recv())
            if type(msg) is Reply and (request_id is None or msg.request_id in (request_id, "")):
                if not ts_ns or msg.ts_ns in (ts_ns, 0):
                    return msg
            left = deadline - time.monotonic()  # a reply to an earlier attempt: wait out the rest
            if left <= 0:
                raise self._timeout("reply")
            wait_ms = int(left * 1000) + 1

    def endpoints(self) -> Endpoints:
        self._sock.send(encode(Discover()))
        if not self._sock.poll(int(self.timeout_s * 1000)):
            raise self._timeout("endpoints")
        while True:
            msg = response_decoder.decode(self._sock.recv())
            if type(msg) is Endpoints:
                return msg

    def subscribe(self, strategy_id: str = "", kinds: Iterable[ExecKind] | None = None) -> None:
        """Start receiving execution reports: one strategy's ("" = all), some kinds (None = all).
        The filter runs at the publisher, so unwanted kinds cost this process nothing.

        Returns once the events relay holds the subscription (its greeting came back), so no report of
        what this client sends afterwards is lost; raises `TransportError` if no greeting comes within
        `timeout_s`."""
        if self._sub is None:
            endpoint = self._events_endpoint or self.endpoints().events
            self._sub = self._ctx.socket(zmq.SUB)
            self._sub.setsockopt(zmq.LINGER, 0)
            self._sub.setsockopt(zmq.RCVHWM, 0)
            self._sub.connect(endpoint)
        for prefix in topic_prefixes(strategy_id, kinds):
            self._sub.setsockopt(zmq.SUBSCRIBE, prefix)
        self._await_greeting(self._sub)

    def _await_greeting(self, sub: zmq.Socket) -> None:
        topic = hello_topic(uuid.uuid4().hex)
        sub.setsockopt(zmq.SUBSCRIBE, topic)  # after the prefixes: the relay sees them first
        deadline = time.monotonic() + self.timeout_s
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not sub.poll(int(left * 1000) + 1):
                    raise TransportError("no greeting from the events relay within " + str(self.timeout_s) + " s")
                head, *rest = sub.recv_multipart()
                if head == topic:
                    return
                if not head.startswith(HELLO_TOPIC):
                    report = report_decoder.decode(rest[-1])
                    if self.delivered.first(report):
                        self._early.append(report)
        finally:
            sub.setsockopt(zmq.UNSUBSCRIBE, topic)

    def next_event(self, timeout_s: float | None = None) -> ExecutionReport | None:
        if self._sub is None:
            raise RuntimeError("call subscribe() first")
        if self._early:
            return self._early.popleft()
        wait = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + wait
        while self._sub.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            parts = self._sub.recv_multipart()
            if parts[0].startswith(HELLO_TOPIC):
                continue  # another subscriber's greeting (this one may subscribe to every topic): not a report
            report = report_decoder.decode(parts[-1])
            if self.delivered.first(report):
                return report
        return None

    def events(self, timeout_s: float = 1.0) -> Iterator[ExecutionReport]:
        """Yield reports until none arrives for `timeout_s`."""
        while (ev := self.next_event(timeout_s)) is not None:
            yield ev


def _drain_when_readable(loop: asyncio.AbstractEventLoop, sock: zmq.Socket, handle) -> Callable[[], None]:
    """Watch a (sync) ZeroMQ socket from the asyncio loop and hand every message to `handle`.

    The ZeroMQ FD is edge-triggered: on each wake-up everything queued is drained, and the
    returned `kick` must be called after a send on the same socket (a send can eat the edge).
    """
    recv = sock.recv_multipart
    events = sock.getsockopt

    def drain() -> None:
        while events(zmq.EVENTS) & zmq.POLLIN:
            try:
                handle(recv(zmq.NOBLOCK))
            except zmq.Again:
                return

    loop.add_reader(sock.getsockopt(zmq.FD), drain)
    scheduled = [False]

    def run_kick() -> None:
        scheduled[0] = False
        drain()

    def kick() -> None:
        if not scheduled[0]:
            scheduled[0] = True
            loop.call_soon(run_kick)

    kick()
    return kick


class AsyncExecutionClient(_Base):
    """asyncio client: many signals in flight on one socket, replies matched by request_id.

    The sockets are plain ZeroMQ sockets watched by the event loop: one wake-up drains every
    queued reply or event, so thousands of signals in flight cost one callback per batch, not
    one task per message (`zmq.asyncio` would add a future per receive). A signal costs one future
    and no timer: the deadlines wait in send order, and one timer, armed for the oldest, fails those
    that passed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[str, tuple[asyncio.Future, int]] = {}  # request_id -> (future, ts_ns of the attempt)
        # deadlines in send order (one timeout for all: they come due in that order), swept by one timer
        self._deadlines: deque[tuple[float, str, asyncio.Future]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._hello: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick: Callable[[], None] | None = None
        self._sub: zmq.Socket | None = None
        self._events: asyncio.Queue[ExecutionReport] = asyncio.Queue()
        self._greetings: dict[bytes, asyncio.Future] = {}
        self.unmatched = 0

    async def __aenter__(self) -> "AsyncExecutionClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._sock.getsockopt(zmq.FD))
            if self._sub is not None:
                self._loop.remove_reader(self._sub.getsockopt(zmq.FD))
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.cancel()
        self._pending.clear()
        self._deadlines.clear()
        self._sock.close(0)
        if self._sub is not None:
            self._sub.close(0)
        if self.fallback is not None:
            self.fallback.close()

    def _attach(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._kick = _drain_when_readable(self._loop, self._sock, self._on_reply)
        return self._loop

    def _on_reply(self, parts: list[bytes]) -> None:
        msg = response_decoder.decode(parts[-1])
        if type(msg) is Reply:
            entry = self._pending.get(msg.request_id)
            if entry is None or entry[0].done() or msg.ts_ns not in (entry[1], 0):
                self.unmatched += 1  # an answer to an earlier attempt, or to nobody waiting
                return
            del self._pending[msg.request_id]
            entry[0].set_result(msg)
        elif self._hello is not None and not self._hello.done():
            self._hello.set_result(msg)

    def _expire(self) -> None:
        """The one timer: every signal whose deadline passed without its reply raises TransportError."""
        self._sweep = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        due = self._deadlines
        while due and due[0][0] <= now:
            _, request_id, fut = due.popleft()
            entry = self._pending.get(request_id)
            if entry is not None and entry[0] is fut:
                del self._pending[request_id]
            if not fut.done():
                fut.set_exception(self._timeout("reply"))
        if due:
            self._sweep = loop.call_at(due[0][0], self._expire)

    async def send_execution_signal(self, signal: Mapping[str, Any]) -> dict[str, Any]:
        return reply_dict(await self.send_signal(signal))

    async def send_signal(self, signal: SignalLike) -> Reply:
        rid, payload = prepare(signal)
        return await self.send_payload(rid, payload)

    def submit_payload(self, request_id: str, payload: bytes) -> asyncio.Future:
        """Send without waiting: a future that resolves to the Reply (or raises TransportError)."""
        loop = self._attach()
        fut = loop.create_future()
        ts = time.time_ns()
        self._pending[request_id] = (fut, ts)
        deadline = loop.time() + self.timeout_s
        self._deadlines.append((deadline, request_id, fut))
        if self._sweep is None:  # no timer per signal: one, for the oldest deadline
            self._sweep = loop.call_at(deadline, self._expire)
        self._sock.send(self.frame(payload, ts), zmq.NOBLOCK)
        self._kick()
        return fut

    async def send_payload(self, request_id: str, payload: bytes) -> Reply:
        try:
            return await self.submit_payload(request_id, payload)
        except TransportError:
            if self.fallback is None:
                raise
            await asyncio.to_thread(self.fallback.submit, self.frame(payload), self.fallback_max_age_ms)
            return await asyncio.to_thread(self.fallback.await_reply, request_id, self.timeout_s)

    async def endpoints(self) -> Endpoints:
        loop = self._attach()
        self._hello = loop.create_future()
        self._sock.send(encode(Discover()), zmq.NOBLOCK)
        self._kick()
        try:
            return await asyncio.wait_for(self._hello, self.timeout_s)
        except asyncio.TimeoutError:
            raise self._timeout("endpoints") from None

    async def subscribe(self, strategy_id: str = "", kinds: Iterable[ExecKind] | None = None) -> None:
        """Start receiving execution reports: one strategy's ("" = all), some kinds (None = all)."""
        if self._sub is None:
            endpoint = self._events_endpoint or (await self.endpoints()).events
            self._sub = self._ctx.socket(zmq.SUB)
            self._sub.setsockopt(zmq.LINGER, 0)
            self._sub.setsockopt(zmq.RCVHWM, 0)
            self._sub.connect(endpoint)
            _drain_when_readable(self._attach(), self._sub, self._on_event)
        for prefix in topic_prefixes(strategy_id, kinds):
            self._sub.setsockopt(zmq.SUBSCRIBE, prefix)
        # returns once the events relay holds the subscription, as the blocking client's subscribe
        topic = hello_topic(uuid.uuid4().hex)
        greeted = self._greetings[topic] = self._attach().create_future()
        self._sub.setsockopt(zmq.SUBSCRIBE, topic)
        try:
            await asyncio.wait_for(greeted, self.timeout_s)
        except asyncio.TimeoutError:
            raise TransportError("no greeting from the events relay within " + str(self.timeout_s) + " s") from None
        finally:
            del self._greetings[topic]
            self._sub.setsockopt(zmq.UNSUBSCRIBE, topic)

    def _on_event(self, parts: list[bytes]) -> None:
        if not parts[0].startswith(HELLO_TOPIC):
            report = report_decoder.decode(parts[-1])
            if self.delivered.first(report):
                self._events.put_nowait(report)
            return
        greeted = self._greetings.get(parts[0])  # else another subscriber's greeting
        if greeted is not None and not greeted.done():
            greeted.set_result(None)

    async def next_event(self, timeout_s: float | None = None) -> ExecutionReport | None:
        if self._sub is None:
            raise RuntimeError("call subscribe() first")
        if not self._events.empty():
            return self._events.get_nowait()
        wait = self.timeout_s if timeout_s is None else timeout_s
        try:
            return await asyncio.wait_for(self._events.get(), wait)
        except asyncio.TimeoutError:
            return None

    async def events(self, timeout_s: float = 1.0) -> AsyncIterator[ExecutionReport]:
        while (ev := await self.next_event(timeout_s)) is not None:
            yield ev


def send_execution_signal(signal: Mapping[str, Any], *, endpoint: str, key_id: str, secret: str | bytes,
                          timeout_s: float = 2.0, fallback_redis_url: str | None = None) -> dict[str, Any]:
    """One signal, one verdict, as a function (opens and closes a client: for scripts, not hot loops)."""
    with ExecutionClient(endpoint, key_id, secret, timeout_s=timeout_s, fallback_redis_url=fallback_redis_url) as c:
        return c.send_execution_signal(signal)
