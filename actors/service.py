"""The host loop every data-plane actor runs: one thread, its own ZeroMQ sockets, poll, handle, repeat.

ZeroMQ sockets are not thread-safe, so each socket is created, used and closed on the loop thread
alone. Ray calls the actor's methods on other threads; those only flip flags, read counters, or
queue a control request the loop picks up (see `call_on_loop`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from typing import Any, Callable

import zmq

from node.gcwatch import settle_after_start, watch
from node.logs import RepeatLimiter, lifecycle, logger, mask

POLL_MS = 50


#: the environment variable that names the address to advertise for wildcard binds (one machine
#: behind NAT or in a container); `NodeRuntime` sets it for every worker from `advertise_host`
ADVERTISE_ENV = "NAE_ADVERTISE_HOST"
_WILDCARDS = frozenset({"0.0.0.0", "*", "::", "[::]"})


def is_wildcard(host: str) -> bool:
    """A bind on every interface: its advertised address depends on the machine (`advertised`)."""
    return host in _WILDCARDS


def advertised(host: str) -> str:
    """The address peers reach a socket bound on `host` at: `host` itself; for a wildcard bind, the
    advertise setting, else the address of the Ray node this process runs on (so each machine of a
    cluster advertises its own), never 0.0.0.0."""
    if host not in _WILDCARDS:
        return host
    override = os.environ.get(ADVERTISE_ENV, "")
    if override:
        return override
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - no Ray here: fall back to the host's own name
        pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def bind_random(sock: zmq.Socket, host: str) -> str:
    """Bind to host on a free port; returns the concrete endpoint peers connect to."""
    port = sock.bind_to_random_port("tcp://" + host)
    return "tcp://" + advertised(host) + ":" + str(port)


def bind_at(sock: zmq.Socket, host: str, port: int) -> str:
    """Bind to `port` (a restarted actor comes back on its old address, so peers reconnect by
    themselves), or to any free port when it is 0; returns the endpoint peers connect to."""
    if not port:
        return bind_random(sock, host)
    sock.bind("tcp://" + host + ":" + str(port))
    return "tcp://" + advertised(host) + ":" + str(port)


class Heartbeats:
    """An actor's heartbeats on a thread of their own: a big batch on the loop thread does not look
    like death, but a loop that has not turned for `stuck_ms` (or an `alive()` that says no) stops
    the beats, and the supervisor fails the actor over. The host exposes `name`, `epoch`, `role`,
    `loop_ticks` and `_running`."""

    def __init__(self, host: "LoopService", endpoint: str, interval_ms: int, alive=None, stuck_ms: int = 500) -> None:
        self._host = host
        self._endpoint = endpoint
        self._interval_s = interval_ms / 1000
        self._alive = alive or (lambda: True)
        self._stuck_s = stuck_ms / 1000
        self.now = threading.Event()  # set: beat at once (a role or epoch change)
        self.seq = 0

    def start(self) -> None:
        threading.Thread(target=self._run, name=self._host.name + "-heartbeat", daemon=True).start()

    def _run(self) -> None:
        from node.messages import Heartbeat, encode

        host = self._host
        sock = zmq.Context.instance().socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100)
        sock.connect(self._endpoint)
        seen_ticks, seen_at = -1, time.monotonic()
        try:
            while host._running.is_set():
                now = time.monotonic()
                if host.loop_ticks != seen_ticks:
                    seen_ticks, seen_at = host.loop_ticks, now
                if now - seen_at < self._stuck_s and self._alive():
                    self.seq += 1
                    beat = Heartbeat(host.engine_name, host.epoch, self.seq, time.time_ns(), host.role)
                    try:
                        sock.send(encode(beat), zmq.NOBLOCK)
                    except zmq.Again:
                        pass
                self.now.wait(self._interval_s)
                self.now.clear()
        finally:
            sock.close(0)


def followed_reports(sock: zmq.Socket, limit: int = 4096):
    """The execution reports waiting on a SUB socket of the events relay ([topic, payload] frames),
    decoded, at most `limit` of them (a wake-up never starves the rest of the loop)."""
    from node.messages import report_decoder

    # frame by frame, not `recv_multipart` (~9 -> ~5 us CPU a message here: bench.frames_report); a
    # message is whole in the socket once its first frame is, so the payload is there with the topic
    recv, more, decode = sock.recv, sock.getsockopt, report_decoder.decode
    for _ in range(limit):
        try:
            recv(zmq.NOBLOCK)  # the topic
        except zmq.Again:
            return
        if not more(zmq.RCVMORE):
            raise ValueError("an events message of one frame (expected topic and payload)")
        payload = recv(zmq.NOBLOCK)
        if more(zmq.RCVMORE):
            while more(zmq.RCVMORE):  # drained: the next message starts clean
                recv(zmq.NOBLOCK)
            raise ValueError("an events message of more than two frames (expected topic and payload)")
        yield decode(payload)


def tune(sock: zmq.Socket, hwm: int = 1_000_000) -> zmq.Socket:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    return sock


class LoopService:
    """Base for a service that owns a poll loop on its own thread.

    Subclasses implement `_open(ctx) -> dict[str, str]` (create and bind sockets; return endpoints),
    `_poll_timeout_ms()`, `_on_wake(events)` and `_close()`.
    """

    name = "service"
    #: after the loop opened: freeze the start-up heap and set the young generation's threshold
    #: (node.gcwatch); subclasses take both from `[tuning]`
    gc_freeze = False
    gc_threshold0 = 0

    def __init__(self) -> None:
        self._ctx = zmq.Context.instance()
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self._ready = threading.Event()
        self._endpoints: dict[str, str] = {}
        self._error: BaseException | None = None
        self._calls: deque[tuple[Callable[[], Any], list]] = deque()
        # a call wakes the loop at once (a promotion must not wait out a poll timeout)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.poller = zmq.Poller()
        self.loop_errors = 0
        self.last_error = ""  # the newest exception caught at the loop boundary: "Type: message"
        self._error_lines = RepeatLimiter(10.0)
        self.loop_ticks = 0  # wake-ups so far: heartbeats stop when it stops moving
        self.gc = watch()  # this process's collections and their pauses (node.gcwatch)

    # ---------------------------------------------------------------- lifecycle (any thread)

    #: how long `start` waits for the loop to open its sockets (a service with a slow child raises it)
    start_timeout_s: float = 10.0

    def start(self, timeout_s: float | None = None) -> dict[str, str]:
        if timeout_s is None:
            timeout_s = self.start_timeout_s
        if self._thread is not None:
            return dict(self._endpoints)
        self._running.set()
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(self.name + " did not start within " + str(timeout_s) + " s")
        if self._error is not None:
            logger(self.name).error("start failed: %s: %s", type(self._error).__name__, self._error)
            raise self._error
        lifecycle(logger(self.name), "start", **self._endpoints)
        return dict(self._endpoints)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
            lifecycle(logger(self.name), "stop", loop_errors=self.loop_errors)

    @property
    def endpoints(self) -> dict[str, str]:
        return dict(self._endpoints)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def call_on_loop(self, fn: Callable[[], Any], timeout_s: float = 5.0) -> Any:
        """Run fn on the loop thread (for socket changes) and return its result."""
        box: list = []
        done = threading.Event()
        self._calls.append((fn, [box, done]))
        try:
            self._wake_w.send(b"!")
        except OSError:  # full: the loop is waking anyway
            pass
        if not done.wait(timeout_s):
            raise TimeoutError(self.name + ": loop did not run the call in time")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    # ---------------------------------------------------------------- the loop (its own thread)

    def _main(self) -> None:
        if self.gc_freeze:  # the start-up heap (Ray, numba, imports), before any heartbeat thread runs
            settle_after_start(self.gc_threshold0)
        try:
            self._endpoints = self._open(self._ctx)
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
            return
        if self.gc_freeze:  # and what opening built (small: the rest is frozen), before the first wake-up
            settle_after_start(self.gc_threshold0)
        self._ready.set()
        wake = self._wake_r.fileno()
        self.poller.register(wake, zmq.POLLIN)
        poll = self.poller.poll
        try:
            while self._running.is_set():
                while self._calls:
                    fn, (box, done) = self._calls.popleft()
                    try:
                        box.append((True, fn()))
                    except Exception as exc:  # noqa: BLE001 - handed to the caller
                        box.append((False, exc))
                    done.set()
                events = dict(poll(self._poll_timeout_ms()))
                if events.pop(wake, None) is not None:
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                    if self._calls:
                        continue  # run the call first
                self.loop_ticks += 1
                try:
                    self._on_wake(events)
                except Exception as exc:  # noqa: BLE001 - loop boundary: count, log, carry on
                    self.loop_errors += 1
                    self._loop_error(exc)
                    time.sleep(0.001)
                pause_ns = self._pause_ns()
                if pause_ns > 0:  # a follower lets its work gather: fewer, larger wake-ups
                    time.sleep(pause_ns / 1e9)
        finally:
            self._close()

    def _loop_error(self, exc: Exception) -> None:
        """Keep the newest one for `stats()`; log it with its traceback, once per 10 s per type."""
        self.last_error = mask(type(exc).__name__ + ": " + (str(exc).splitlines() or [""])[0][:300])
        suppressed = self._error_lines.allow(type(exc))
        if suppressed is not None:
            logger(self.name).error("loop error (%d errors so far, %d like it not logged): %s",
                                    self.loop_errors, suppressed, self.last_error, exc_info=exc)

    def _open(self, ctx: zmq.Context) -> dict[str, str]:
        raise NotImplementedError

    def _poll_timeout_ms(self) -> int:
        return POLL_MS

    def _pause_ns(self) -> int:
        """How long the loop sleeps after a wake-up before it polls again (0: it polls at once)."""
        return 0

    def _on_wake(self, events: dict) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        pass
