"""The events relay: one stable endpoint for execution reports, whichever engine is active.

Engines connect their PUB to the relay's XSUB side; clients subscribe to its XPUB side. The relay
is `zmq.proxy_steerable` on its own thread (C code, no GIL held while it forwards), so a failover
from one engine to another never changes the address a subscriber uses, and subscriptions flow
upstream so topic filtering still happens at the engine.
"""

from __future__ import annotations

import threading

import zmq

from actors.service import bind_at


class EventsRelay:
    def __init__(self, bind_host: str, events_port: int = 0, publish_port: int = 0) -> None:
        self._host = bind_host
        self._events_port = events_port  # the subscribers' side; 0 = any free port
        self._publish_port = publish_port  # the engines' side; 0 = any free port
        self._ctx = zmq.Context.instance()
        self._thread: threading.Thread | None = None
        self._control_endpoint = "inproc://events-relay-" + str(id(self))
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
        return dict(self.endpoints)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._control.send(b"TERMINATE")
        self._thread.join(5)
        self._control.close(0)
        self._thread = None
