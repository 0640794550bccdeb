"""Exact per-strategy topics through the real events relay and the node's client (issue 10 item 7):
a subscriber of `optimus.momentum` never receives `optimus.momentum/evil`'s reports."""

from __future__ import annotations

import time

import zmq

from actors.events_relay import EventsRelay
from node.client import ExecutionClient
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
