"""The client hands each fill to its caller once (by exec id), whatever the node publishes twice.

The node's own events relay (actors.events_relay, which also greets each subscription) carries the
reports a PUB socket publishes, as an engine's does: after a failover a new leader may publish a
fill the old one published already (bench.dup_report measured it: no order and no execution twice at
the venue, thousands of fill reports twice at the client). Both clients drop the repeat and count it;
reports without an exec id (state reports) always pass.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import zmq

from actors.events_relay import EventsRelay
from nae_client import AsyncExecutionClient, ExecutionClient
from nae_client.delivered import Delivered
from nae_client.wire import ExecKind, ExecutionReport, encode, event_topic


def _rep(kind: ExecKind, exec_id: str = "", reason: str = "") -> ExecutionReport:
    return ExecutionReport(kind=kind, client_order_id="NAE-s-0", exec_id=exec_id, last_qty=1.0 if exec_id else 0.0,
                           cum_qty=1.0, reason=reason, strategy_id="s1", request_id="r1")


SEQUENCE = [_rep(ExecKind.FILL, "E1"), _rep(ExecKind.FILL, "E1"), _rep(ExecKind.PARTIAL_FILL, "E2"),
            _rep(ExecKind.FILL, "E2"), _rep(ExecKind.FILL, reason="RECOVERED"), _rep(ExecKind.FILL, "E3")]
EXPECTED = [("E1", ExecKind.FILL), ("E2", ExecKind.PARTIAL_FILL), ("", ExecKind.FILL), ("E3", ExecKind.FILL)]


_RELAYS: list[EventsRelay] = []


def _publisher() -> tuple[zmq.Socket, str]:
    """An engine's PUB connected to a started events relay, and the relay's subscribers' endpoint."""
    relay = EventsRelay("127.0.0.1")
    endpoints = relay.start()
    _RELAYS.append(relay)
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(endpoints["publish"])
    return pub, endpoints["events"]


@pytest.fixture(autouse=True)
def _stop_relays():
    yield
    while _RELAYS:
        _RELAYS.pop().stop()


def _send(pub: zmq.Socket, rep: ExecutionReport) -> None:
    pub.send_multipart((event_topic(rep.kind, rep.strategy_id), encode(rep)))


def test_the_memory_passes_each_exec_id_once_and_every_report_without_one():
    d = Delivered(remember=2)
    assert [d.first(r) for r in SEQUENCE] == [True, False, True, False, True, True]
    assert d.repeats == 2
    assert d.first(_rep(ExecKind.FILL, "E1"))  # forgotten (bounded): E2, E3 are the two remembered


def test_the_blocking_client_delivers_a_repeated_fill_once():
    pub, endpoint = _publisher()
    with ExecutionClient("tcp://127.0.0.1:1", "k", "s" * 64, events_endpoint=endpoint) as client:
        client.subscribe("s1")
        deadline = time.monotonic() + 10
        while client.next_event(0.05) is None:  # the subscription reaches the publisher (a NEW: no exec id)
            assert time.monotonic() < deadline
            _send(pub, _rep(ExecKind.NEW))
        while client.next_event(0.2) is not None:
            pass
        for rep in SEQUENCE:
            _send(pub, rep)
        got = [(r.exec_id, r.kind) for r in client.events(timeout_s=1.0)]
    pub.close(0)
    assert got == EXPECTED
    assert client.delivered.repeats == 2


def test_the_asyncio_client_delivers_a_repeated_fill_once():
    async def run() -> tuple[list, int]:
        pub, endpoint = _publisher()
        client = AsyncExecutionClient("tcp://127.0.0.1:1", "k", "s" * 64, events_endpoint=endpoint)
        try:
            await client.subscribe("s1")
            deadline = time.monotonic() + 10
            while await client.next_event(0.05) is None:
                assert time.monotonic() < deadline
                _send(pub, _rep(ExecKind.NEW))
            while await client.next_event(0.2) is not None:
                pass
            for rep in SEQUENCE:
                _send(pub, rep)
            return [(r.exec_id, r.kind) async for r in client.events(timeout_s=1.0)], client.delivered.repeats
        finally:
            await client.close()
            pub.close(0)

    got, repeats = asyncio.run(run())
    assert got == EXPECTED
    assert repeats == 2
