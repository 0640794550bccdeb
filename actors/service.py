"""The host loop every data-plane actor runs: one thread, its own ZeroMQ sockets, poll, handle, repeat.

ZeroMQ sockets are not thread-safe, so each socket is created, used and closed on the loop thread
alone. Ray calls the actor's methods on other threads; those only flip flags, read counters, or
queue a control request the loop picks up (see `call_on_loop`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

import zmq

POLL_MS = 50


def bind_random(sock: zmq.Socket, host: str) -> str:
    """Bind to host on a free port; returns the concrete endpoint peers connect to."""
    port = sock.bind_to_random_port("tcp://" + host)
    return "tcp://" + host + ":" + str(port)


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

    def __init__(self) -> None:
        self._ctx = zmq.Context.instance()
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self._ready = threading.Event()
        self._endpoints: dict[str, str] = {}
        self._error: BaseException | None = None
        self._calls: deque[tuple[Callable[[], Any], list]] = deque()
        self.poller = zmq.Poller()
        self.loop_errors = 0

    # ---------------------------------------------------------------- lifecycle (any thread)

    def start(self, timeout_s: float = 10.0) -> dict[str, str]:
        if self._thread is not None:
            return dict(self._endpoints)
        self._running.set()
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(self.name + " did not start within " + str(timeout_s) + " s")
        if self._error is not None:
            raise self._error
        return dict(self._endpoints)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

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
        if not done.wait(timeout_s):
            raise TimeoutError(self.name + ": loop did not run the call in time")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    # ---------------------------------------------------------------- the loop (its own thread)

    def _main(self) -> None:
        try:
            self._endpoints = self._open(self._ctx)
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
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
                try:
                    self._on_wake(events)
                except Exception:  # noqa: BLE001 - loop boundary: count and carry on
                    self.loop_errors += 1
                    time.sleep(0.001)
        finally:
            self._close()

    def _open(self, ctx: zmq.Context) -> dict[str, str]:
        raise NotImplementedError

    def _poll_timeout_ms(self) -> int:
        return POLL_MS

    def _on_wake(self, events: dict) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        pass
