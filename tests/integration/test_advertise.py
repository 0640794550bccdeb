"""The events feed on a fixed port (a deployment publishes it), and endpoints that carry the advertised
address of a wildcard bind, never 0.0.0.0."""

from __future__ import annotations

import socket

import zmq

from actors.events_relay import EventsRelay
from actors.service import ADVERTISE_ENV, bind_at, bind_random


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_events_feed_binds_the_configured_port_and_relays():
    port = _free_port()
    relay = EventsRelay("127.0.0.1", port)
    endpoints = relay.start()
    ctx = zmq.Context.instance()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    try:
        assert endpoints["events"] == "tcp://127.0.0.1:" + str(port)
        sub.setsockopt(zmq.SUBSCRIBE, b"FILL/")
        sub.connect("tcp://127.0.0.1:" + str(port))
        pub.connect(endpoints["publish"])
        for _ in range(100):  # until the subscription has travelled upstream
            pub.send_multipart([b"FILL/s/", b"x"])
            if sub.poll(50):
                assert sub.recv_multipart() == [b"FILL/s/", b"x"]
                break
        else:
            raise AssertionError("nothing relayed")
    finally:
        pub.close(0)
        sub.close(0)
        relay.stop()


def test_wildcard_binds_carry_the_advertised_address(monkeypatch):
    monkeypatch.setenv(ADVERTISE_ENV, "127.0.0.1")
    ctx = zmq.Context.instance()
    a, b = ctx.socket(zmq.PULL), ctx.socket(zmq.PULL)
    try:
        assert bind_random(a, "0.0.0.0").startswith("tcp://127.0.0.1:")
        port = _free_port()
        assert bind_at(b, "0.0.0.0", port) == "tcp://127.0.0.1:" + str(port)
    finally:
        a.close(0)
        b.close(0)
