"""IBKR open orders after a restart (issue 13): a resting order sent by an adapter that died is,
for the next adapter on the same TWS, known (never sent again), listed open to the leader's
QueryOrders, and cancelable. The broker adapter host (`actors.broker.BrokerHost`, its ROUTER, its
gate) over the real IBKR venue and ib_async, against the TWS fake (tests/fakes/tws_fake.py), which
answers reqAllOpenOrders in TWS's framing (openOrder, orderStatus, openOrderEnd)."""

from __future__ import annotations

import secrets
import time

import pytest
import zmq

from actors.broker import BrokerHost
from adapters.brokers.ibkr.venue import IbkrVenue
from node.config import IbkrConfig
from node.messages import (
    CancelOrder,
    ExecKind,
    ExecutionReport,
    OrderIntent,
    OrdersReport,
    OrderType,
    QueryOrders,
    Side,
    SubmitOrder,
    broker_event_decoder,
    encode,
)
from tests.fakes.tws_fake import TwsFake

WAIT_S = 20.0


class Engine:
    """One engine's DEALER to the adapter: what it hears, kept in order."""

    def __init__(self, endpoint: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.heard: list = []

    def send(self, msg) -> None:
        self.sock.send(encode(msg))

    def wait(self, pred, timeout_s: float = WAIT_S, what: str = "") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sock.poll(50):
                self.heard.append(broker_event_decoder.decode(self.sock.recv()))
            if pred():
                return
        raise AssertionError("timed out waiting for " + what + "; heard: " + repr(self.heard[-10:]))

    def reports(self, coid: str) -> list[ExecutionReport]:
        return [m for m in self.heard if isinstance(m, ExecutionReport) and m.client_order_id == coid]

    def close(self) -> None:
        self.sock.close(0)


def config(tws: TwsFake) -> IbkrConfig:
    return IbkrConfig(port=tws.port, client_id=7, windows=[], reconnect_interval_ms=200, connect_timeout_ms=3_000,
                      ack_timeout_ms=2_000)


def resting(n: int) -> OrderIntent:
    return OrderIntent(client_order_id="NAE-" + secrets.token_hex(6) + "-" + str(n), signal_id="s", request_id="r",
                       strategy_id="alpha", symbol="AAPL", side=Side.BUY, order_type=OrderType.LIMIT, quantity=10.0,
                       limit_price=50.0)


@pytest.fixture()
def tws():
    f = TwsFake(prices={"AAPL": 101.0}).start()
    yield f
    f.stop()


def test_a_resting_order_of_a_dead_adapter_is_known_listed_open_and_cancelable_after_a_restart(tws):
    it = resting(1)
    coid = it.client_order_id
    first = BrokerHost("ibkr", "127.0.0.1", IbkrVenue(config(tws)))
    eng = Engine(first.start()["orders"])
    try:
        eng.send(SubmitOrder(1, "e1", it))
        eng.wait(lambda: ExecKind.NEW in [r.kind for r in eng.reports(coid)], what="the order's NEW")
    finally:
        eng.close()
        first.stop()  # the adapter is gone; the order rests at TWS
    assert tws.by_ref(coid)["status"] == "Submitted"

    second = BrokerHost("ibkr", "127.0.0.1", IbkrVenue(config(tws)))
    leader = Engine(second.start()["orders"])
    try:
        def listed() -> list:
            answers = [m for m in leader.heard if isinstance(m, OrdersReport)]
            return [o for o in (answers[-1].orders if answers else []) if o.client_order_id == coid]

        def answers() -> int:
            return sum(isinstance(m, OrdersReport) for m in leader.heard)

        deadline = time.monotonic() + WAIT_S
        while not listed():  # the new leader asks until the adapter has heard TWS's open orders
            assert time.monotonic() < deadline, "never listed: " + repr(leader.heard[-5:])
            asked = answers()
            leader.send(QueryOrders(2, "e2", take_over=True))
            leader.wait(lambda: answers() > asked, what="an OrdersReport")
        (snap,) = listed()
        assert (snap.kind, snap.cum_qty, snap.leaves_qty) == (ExecKind.NEW, 0.0, 10.0)
        assert second.gate.known(coid)
        assert second.venue.stats()["adopted"] == 1

        leader.send(SubmitOrder(2, "e2", it))  # a re-drive of it: the gate knows it, never sent again
        leader.wait(lambda: second.stats().refused_duplicate == 1, what="the re-drive refused as a duplicate")

        leader.send(CancelOrder(2, "e2", coid))
        leader.wait(lambda: ExecKind.CANCELED in [r.kind for r in leader.reports(coid)], what="the CANCELED")
        assert tws.by_ref(coid)["status"] == "Cancelled" and tws.cancels == 1
        assert [o["ref"] for o in tws.orders.values()] == [coid], "one order at TWS, never a second"
    finally:
        leader.close()
        second.stop()


def test_a_resting_order_filled_after_the_restart_reaches_the_new_adapter_once(tws):
    """Adopted, its statuses and executions arrive on the new connection (ib_async holds its Trade)."""
    it = resting(2)
    coid = it.client_order_id
    first = BrokerHost("ibkr", "127.0.0.1", IbkrVenue(config(tws)))
    eng = Engine(first.start()["orders"])
    try:
        eng.send(SubmitOrder(1, "e1", it))
        eng.wait(lambda: ExecKind.NEW in [r.kind for r in eng.reports(coid)], what="the order's NEW")
        tws.fill(tws.by_ref(coid)["perm_id"], 4, 49.5)  # partly filled before the adapter dies
        eng.wait(lambda: ExecKind.PARTIAL_FILL in [r.kind for r in eng.reports(coid)], what="the partial fill")
    finally:
        eng.close()
        first.stop()
    second = BrokerHost("ibkr", "127.0.0.1", IbkrVenue(config(tws)))
    leader = Engine(second.start()["orders"])
    try:
        leader.send(QueryOrders(2, "e2", take_over=True))  # the leader hears the group's orders from now on
        # connected: TWS's open orders asked (adopted) and the executions swept (the partial reported)
        leader.wait(lambda: second.venue.health(time.time_ns()).ok, what="the connect")
        assert second.venue.stats()["adopted"] == 1
        tws.fill(tws.by_ref(coid)["perm_id"], 6, 49.0)
        leader.wait(lambda: ExecKind.FILL in [r.kind for r in leader.reports(coid)], what="the fill")
        fills = [(r.last_qty, r.last_px) for r in second.venue.fills() if r.client_order_id == coid]
        assert fills == [(4.0, 49.5), (6.0, 49.0)], "the sweep's partial once, the live fill once"
        assert second.venue.snapshot_of([coid])[0].kind is ExecKind.FILL
        assert [o["ref"] for o in tws.orders.values()] == [coid]
    finally:
        leader.close()
        second.stop()
