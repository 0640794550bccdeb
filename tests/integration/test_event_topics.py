"""Exact per-strategy topics through the real events relay and the node's client (issue 10 item 7):
a subscriber of `optimus.momentum` never receives `optimus.momentum/evil`'s reports."""

from __future__ import annotations

import asyncio
import time

import zmq

from actors.events_relay import EventsRelay
from node.client import AsyncExecutionClient, ExecutionClient
from node.messages import ExecKind, ExecutionReport, encode, event_topic


def report(strategy_id: str, n: int) -> ExecutionReport:
    return ExecutionReport(kind=ExecKind.FILL, client_order_id=strategy_id + "-" + str(n), strategy_id=strategy_id,
                           last_qty=1.0, last_px=10.0, ts_ns=n)


def test_a_subscriber_gets_only_its_own_strategy():
    relay = EventsRelay("127.0.0.1")
    endpoints = relay.start()
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(endpoints["publish"])
    client = ExecutionClient("tcp://127.0.0.1:1", "k", b"s", events_endpoint=endpoints["events"])
    try:
        client.subscribe("optimus.momentum")
        got: list[ExecutionReport] = []
        deadline = time.monotonic() + 20.0
        n = 0
        while not any(r.strategy_id == "optimus.momentum" for r in got):  # until the subscription is live
            assert time.monotonic() < deadline, "no report reached the subscriber"
            for sid in ("optimus.momentum/evil", "optimus.momentum/", "optimus.momentum2", "optimus.momentum"):
                rep = report(sid, n)
                pub.send_multipart((event_topic(rep.kind, rep.strategy_id), encode(rep)))
            n += 1
            ev = client.next_event(0.05)
            while ev is not None:
                got.append(ev)
                ev = client.next_event(0.05)
        assert {r.strategy_id for r in got} == {"optimus.momentum"}
    finally:
        client.close()
        pub.close(0)
        relay.stop()


def test_a_report_published_right_after_subscribe_returns_is_received():
    """subscribe() returns only once the relay holds the subscription: the one report published at
    once is not lost (before the relay's greeting, it returned at once and this report was lost)."""
    relay = EventsRelay("127.0.0.1")
    endpoints = relay.start()
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)  # in this process: the subscription reaches it as it reaches the relay
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(relay.inproc_publish)
    client = ExecutionClient("tcp://127.0.0.1:1", "k", b"s", timeout_s=10.0, events_endpoint=endpoints["events"])
    other = ExecutionClient("tcp://127.0.0.1:1", "k", b"s", timeout_s=10.0, events_endpoint=endpoints["events"])
    try:
        other.subscribe()  # every strategy: it sees the greeting below and must not take it for a report
        client.subscribe("s1")
        rep = report("s1", 1)
        pub.send_multipart((event_topic(rep.kind, rep.strategy_id), encode(rep)))
        assert client.next_event(5.0) == rep
        assert other.next_event(5.0) == rep
        assert client.next_event(0.2) is None and other.next_event(0.2) is None
    finally:
        client.close()
        other.close()
        pub.close(0)
        relay.stop()


def test_the_async_client_s_subscribe_returns_once_the_relay_holds_it():
    relay = EventsRelay("127.0.0.1")
    endpoints = relay.start()
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(relay.inproc_publish)

    async def scenario() -> ExecutionReport | None:
        async with AsyncExecutionClient("tcp://127.0.0.1:1", "k", b"s", timeout_s=10.0,
                                        events_endpoint=endpoints["events"]) as client:
            await client.subscribe("s1")
            rep = report("s1", 2)
            pub.send_multipart((event_topic(rep.kind, rep.strategy_id), encode(rep)))
            return await client.next_event(5.0)

    try:
        assert asyncio.run(scenario()) == report("s1", 2)
    finally:
        pub.close(0)
        relay.stop()


def test_relays_started_one_after_another_each_bind_their_own_names():
    """A relay stopped and freed hands its `id()` to the next one at once, while ZeroMQ frees an inproc
    name only once its reaper has closed the socket: names made from the id collided ("Address
    already in use", a clean-clone CI run failed on it). Fails within a few rounds with those names."""
    for _ in range(50):
        relay = EventsRelay("127.0.0.1")
        relay.start()
        relay.stop()
        del relay
