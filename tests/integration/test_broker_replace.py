"""Replace through the broker adapter (ReplaceOrder over its ROUTER): the old order ends CANCELED
REPLACED, the new one lives and is sent once; a stale epoch cannot replace."""

from __future__ import annotations

import time

import msgspec
import zmq

from actors.broker import BrokerHost
from adapters.paper.venue import PaperVenue
from node.config import PaperVenueConfig
from node.messages import (ExecKind, OrderIntent, OrderType, ReplaceOrder, Side, SubmitOrder, broker_event_decoder,
                           encode)
from node.reasons import Reason


def test_replace_through_the_adapter_once_and_fenced():
    host = BrokerHost("p", "127.0.0.1", PaperVenue(PaperVenueConfig()))
    endpoint = host.start()["orders"]
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    reports = []

    def wait(pred, timeout_s=10.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sock.poll(50):
                reports.append(broker_event_decoder.decode(sock.recv()))
            if pred():
                return
        raise AssertionError(repr(reports))

    try:
        old = OrderIntent(client_order_id="NAE-rp-0", signal_id="s", request_id="r", strategy_id="t", symbol="AAPL",
                          side=Side.BUY, order_type=OrderType.LIMIT, quantity=5.0, limit_price=1.0)
        new = msgspec.structs.replace(old, client_order_id="NAE-rp-1", limit_price=2.0)
        sock.send(encode(SubmitOrder(2, "e", old)))
        wait(lambda: any(r.client_order_id == old.client_order_id for r in reports))
        sock.send(encode(ReplaceOrder(1, "e", old.client_order_id, msgspec.structs.replace(new, client_order_id="x"))))
        sock.send(encode(ReplaceOrder(2, "e", old.client_order_id, new)))
        sock.send(encode(ReplaceOrder(2, "e", old.client_order_id, new)))  # again: not sent twice
        wait(lambda: any(r.client_order_id == "x" for r in reports)
             and any(r.client_order_id == new.client_order_id and r.kind is ExecKind.NEW for r in reports)
             and any(r.client_order_id == old.client_order_id and r.kind is ExecKind.CANCELED for r in reports))
        by = lambda c: [r for r in reports if r.client_order_id == c]  # noqa: E731
        assert (by("x")[-1].kind, by("x")[-1].reason) == (ExecKind.REJECTED, Reason.STALE_EPOCH)
        assert by(old.client_order_id)[-1].reason == Reason.REPLACED
        time.sleep(0.3)
        assert [r.kind for r in by(new.client_order_id)] == [ExecKind.NEW]
        assert host.stats().refused_duplicate == 1
    finally:
        sock.close(0)
        host.stop()
