"""The events relay: one stable endpoint for execution reports, whichever engine is active.

Engines connect their PUB to the relay's XSUB side; clients subscribe to its XPUB side. The relay
is `zmq.proxy_steerable` on its own thread (C code, no GIL held while it forwards), so a failover
from one engine to another never changes the address a subscriber uses, and subscriptions flow
upstream so topic filtering still happens at the engine.

A subscription is silent in ZeroMQ, so the relay greets: its greeter (an XPUB on the engines' side,
on a thread of its own) receives every subscription the relay forwards, and answers one on
`HELLO_TOPIC + <nonce>` with one empty message on that topic. A client subscribes its prefixes and
then its hello topic, and returns from `subscribe()` when the greeting arrives: by then the relay
holds its prefixes (one pipe, in order) and has passed them on to the engine before the greeting, so
the fills of the signals it sends next are not lost. Only subscription changes wake the greeter;
the reports themselves never pass through Python.
"""

from __future__ import annotations

import threading
import uuid

import zmq

from actors.service import bind_at
from nae_client.wire import HELLO_TOPIC

_SUBSCRIBE_HELLO = b"\x01" + HELLO_TOPIC


class EventsRelay:
    def __init__(self, bind_host: str, events_port: int = 0, publish_port: int = 0) -> None:
        self._host = bind_host
        self._events_port = events_port  # the subscribers' side; 0 = any free port
        self._publish_port = publish_port  # the engines' side; 0 = any free port
        self._ctx = zmq.Context.instance()
        self._thread: threading.Thread | None = None
        # names of its own, not `id(self)`: ZeroMQ frees an inproc name only once its reaper has closed
        # the socket, after `close` returns, and a relay stopped and freed a moment before handed its id
        # to the next one, whose bind failed "Address already in use" (a clean-clone CI run, 2026-12-01)
        n = uuid.uuid4().hex
        self._control_endpoint = "inproc://events-relay-" + n
        self.inproc_publish = "inproc://events-relay-publish-" + n  # the engines' side, in-process
        self._greeter_stop = "inproc://events-relay-greeter-" + n
        self._greeter: threading.Thread | None = None
        self.endpoints: dict[str, str] = {}

    def start(self) -> dict[str, str]:
        if self._thread is not None:
            return dict(self.endpoints)
        xsub = self._ctx.socket(zmq.XSUB)
        xpub = self._ctx.socket(zmq.XPUB)
        for s in (xsub, xpub):
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 1_000_000)
            s.setsockopt(zmq.RCVHWM, 1_000_000)
        self.endpoints = {"publish": bind_at(xsub, self._host, self._publish_port),
                          "events": bind_at(xpub, self._host, self._events_port)}
        xsub.bind(self.inproc_publish)
        stop = self._ctx.socket(zmq.PAIR)
        stop.bind(self._greeter_stop)
        self._stop_greeter = self._ctx.socket(zmq.PAIR)
        self._stop_greeter.connect(self._greeter_stop)
        control = self._ctx.socket(zmq.PAIR)
        control.bind(self._control_endpoint)
        self._control = self._ctx.socket(zmq.PAIR)
        self._control.connect(self._control_endpoint)

        def run() -> None:
            try:
                zmq.proxy_steerable(xsub, xpub, None, control)
            finally:
                for s in (xsub, xpub, control):
                    s.close(0)

        self._thread = threading.Thread(target=run, name="events-relay", daemon=True)
        self._thread.start()
        self._greeter = threading.Thread(target=self._greet, args=(stop,), name="events-relay-greeter", daemon=True)
        self._greeter.start()
        return dict(self.endpoints)

    def _greet(self, stop: zmq.Socket) -> None:
        """Answer each hello subscription with one message on its topic (see the module's doc)."""
        greeter = self._ctx.socket(zmq.XPUB)
        greeter.setsockopt(zmq.LINGER, 0)
        greeter.connect(self.inproc_publish)
        poller = zmq.Poller()
        poller.register(greeter, zmq.POLLIN)
        poller.register(stop, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if stop in ready:
                    return
                sub = greeter.recv()
                if sub.startswith(_SUBSCRIBE_HELLO):
                    greeter.send_multipart((sub[1:], b""))
        finally:
            greeter.close(0)
            stop.close(0)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._control.send(b"TERMINATE")
        self._thread.join(5)
        self._control.close(0)
        self._thread = None
        if self._greeter is not None:
            self._stop_greeter.send(b"")
            self._greeter.join(5)
            self._stop_greeter.close(0)
            self._greeter = None
