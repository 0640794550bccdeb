"""The LEAN bridge behind the node's broker adapter, against the fake LEAN peer, over real ZeroMQ.

An engine-side DEALER sends `SubmitOrder`s to a `BrokerHost` whose venue is `LeanBridge`; the
fake algorithm (same protocol structs as `NaeBridgeAlgorithm.cs`) plays LEAN's order events back.
"""

from __future__ import annotations

import socket
import time

import pytest
import zmq

from actors.broker import BrokerHost
from adapters.engines.lean import LeanBridge, LeanBridgeConfig
from adapters.engines.lean import protocol as p
from adapters.engines.lean.fake_lean import FakeBrokerage, FakeLean, FakeLeanBehaviour, FakeObjectStore
from node.errors import BrokerError
from node.messages import (
    CancelOrder,
    ExecKind,
    ExecutionReport,
    OrderIntent,
    OrderType,
    Side,
    SubmitOrder,
    broker_event_decoder,
    encode,
)
from node.reasons import Reason

WAIT_S = 10.0  # an upper bound on waiting, never an assertion about speed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def intent(n: int, symbol: str = "AAPL", side: Side = Side.BUY, otype: OrderType = OrderType.MARKET,
           qty: float = 10.0, limit: float | None = None) -> OrderIntent:
    return OrderIntent(client_order_id="NAE-lean%04d-0" % n, signal_id="s%d" % n, request_id="r%d" % n,
                       strategy_id="lean-test", symbol=symbol, side=side, order_type=otype, quantity=qty,
                       limit_price=limit)


class Engine:
    """Stands in for the engine host: a DEALER to the broker adapter, collecting reports."""

    def __init__(self, endpoint: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.reports: list[ExecutionReport] = []

    def submit(self, it: OrderIntent, epoch: int = 1) -> None:
        self.sock.send(encode(SubmitOrder(epoch, "native", it)))

    def cancel(self, coid: str, epoch: int = 1) -> None:
        self.sock.send(encode(CancelOrder(epoch, "native", coid)))

    def wait_for(self, done, timeout_s: float = WAIT_S) -> list[ExecutionReport]:
        deadline = time.monotonic() + timeout_s
        while not done(self.reports) and time.monotonic() < deadline:
            if self.sock.poll(50):
                msg = broker_event_decoder.decode(self.sock.recv())
                if type(msg) is ExecutionReport:
                    self.reports.append(msg)
        return self.reports

    def drain(self, quiet_s: float = 0.3) -> None:
        while self.sock.poll(int(quiet_s * 1000)):
            msg = broker_event_decoder.decode(self.sock.recv())
            if type(msg) is ExecutionReport:
                self.reports.append(msg)

    def kinds(self, coid: str) -> list[ExecKind]:
        return [r.kind for r in self.reports if r.client_order_id == coid]

    def close(self) -> None:
        self.sock.close(0)


def final(coids):
    done = {ExecKind.FILL, ExecKind.REJECTED, ExecKind.CANCELED, ExecKind.UNKNOWN}
    coids = list(coids)
    return lambda reps: set(coids) <= {r.client_order_id for r in reps if r.kind in done}


@pytest.fixture
def node_side():
    """Start (fake LEAN, adapter) pairs; everything started is stopped at the end."""
    started: list = []

    def start(behaviour: FakeLeanBehaviour | None = None, brokerage=None, store=None, **cfg):
        port = free_port()
        fake = FakeLean("tcp://127.0.0.1:%d" % port, brokerage, store, behaviour).start()
        bridge = LeanBridge(LeanBridgeConfig(port=port, status_timeout_ms=5_000, **cfg))
        host = BrokerHost("lean", "127.0.0.1", bridge)
        endpoints = host.start()  # the adapter asks LEAN for its orders before it takes any
        engine = Engine(endpoints["orders"])
        started.extend([fake, host, engine])
        return fake, bridge, host, engine

    yield start
    for thing in reversed(started):
        (thing.close if isinstance(thing, Engine) else thing.stop)()


def test_orders_all_filled_with_partial_fills(node_side):
    fake, bridge, host, engine = node_side(FakeLeanBehaviour(partial_fills=True, prices={"MSFT": 420.0}))
    its = [intent(i, symbol="MSFT" if i % 2 else "AAPL", side=Side.SELL if i % 3 == 0 else Side.BUY) for i in range(20)]
    for it in its:
        engine.submit(it)
    engine.wait_for(final(it.client_order_id for it in its))
    for it in its:
        assert engine.kinds(it.client_order_id) == [ExecKind.NEW, ExecKind.PARTIAL_FILL, ExecKind.FILL]
        fill = [r for r in engine.reports if r.client_order_id == it.client_order_id][-1]
        assert fill.cum_qty == 10.0 and fill.leaves_qty == 0.0 and fill.side == it.side
        assert fill.avg_px == (420.0 if it.symbol == "MSFT" else 100.0)
    # what LEAN got: the tag is the client order id, LEAN's signed quantity, LEAN's order type
    places = [c for c in fake.received if type(c) is p.PlaceOrder]
    assert [c.client_order_id for c in places] == [it.client_order_id for it in its]
    assert all(c.order_type == p.MARKET and c.quantity == (-10.0 if it.side is Side.SELL else 10.0)
               for c, it in zip(places, its))
    expected: dict[str, float] = {}
    for it in its:
        expected[it.symbol] = expected.get(it.symbol, 0.0) + (10.0 if it.side is Side.BUY else -10.0)
    assert host.call_on_loop(bridge.positions) == expected


def test_duplicate_filled_events_are_deduped(node_side):
    fake, bridge, host, engine = node_side(FakeLeanBehaviour(duplicate_fill=True))
    its = [intent(i) for i in range(5)]
    for it in its:
        engine.submit(it)
    engine.wait_for(final(it.client_order_id for it in its))
    deadline = time.monotonic() + WAIT_S
    while host.call_on_loop(bridge.stats)["duplicate_fills"] < len(its) and time.monotonic() < deadline:
        time.sleep(0.02)
    engine.drain()
    assert sum(1 for c in fake.received if type(c) is p.PlaceOrder) == len(its)
    assert host.call_on_loop(bridge.stats)["duplicate_fills"] == len(its)  # LEAN sent each Filled twice
    for it in its:
        assert engine.kinds(it.client_order_id) == [ExecKind.NEW, ExecKind.FILL]  # the node saw it once
    assert host.call_on_loop(bridge.positions) == {"AAPL": 50.0}


def test_invalid_is_rejected_with_leans_message(node_side):
    msg = "Brokerage failed to place order: symbol ZZZZ is not tradable"
    fake, bridge, host, engine = node_side(FakeLeanBehaviour(invalid={"ZZZZ": msg}))
    bad, good = intent(1, symbol="ZZZZ"), intent(2)
    engine.submit(bad)
    engine.submit(good)
    engine.wait_for(final([bad.client_order_id, good.client_order_id]))
    (rej,) = [r for r in engine.reports if r.client_order_id == bad.client_order_id]
    assert rej.kind is ExecKind.REJECTED and rej.reason == "VENUE_REJECT: " + msg
    assert engine.kinds(good.client_order_id)[-1] is ExecKind.FILL


def test_silent_peer_goes_unknown_after_the_timeout_never_rejected(node_side):
    fake, bridge, host, engine = node_side(ack_timeout_ms=300)
    fake.hang()
    it = intent(1)
    engine.submit(it)
    engine.wait_for(final([it.client_order_id]))
    (rep,) = [r for r in engine.reports if r.client_order_id == it.client_order_id]
    assert rep.kind is ExecKind.UNKNOWN and rep.reason == "TIMEOUT"
    assert [type(c) for c in fake.received if type(c) is p.PlaceOrder] == [p.PlaceOrder]  # it did reach LEAN


def test_restart_of_lean_restores_open_orders_by_tag(node_side):
    brokerage, store = FakeBrokerage(), FakeObjectStore()
    fake, bridge, host, engine = node_side(brokerage=brokerage, store=store)
    rest_a = intent(1, otype=OrderType.LIMIT, limit=95.0)
    rest_b = intent(2, otype=OrderType.LIMIT, limit=94.0)
    done = intent(3)
    for it in (rest_a, rest_b, done):
        engine.submit(it)
    engine.wait_for(lambda reps: engine.kinds(done.client_order_id)[-1:] == [ExecKind.FILL]
                    and len([r for r in reps if r.kind is ExecKind.NEW]) == 3)
    first_session = fake.session_id

    fake.stop()  # LEAN dies; the broker keeps the two resting orders
    fake2 = FakeLean(fake.endpoint, brokerage, store).start()
    try:
        deadline = time.monotonic() + WAIT_S
        while host.call_on_loop(bridge.stats)["session_id"] != fake2.session_id and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake2.session_id != first_session
        # LEAN reloaded the resting orders under new ids, and the algorithm put the tags back
        assert sorted(o.coid for o in fake2.orders.values()) == sorted([rest_a.client_order_id, rest_b.client_order_id])
        deadline = time.monotonic() + WAIT_S
        while not any(type(c) is p.StatusQuery for c in fake2.received) and time.monotonic() < deadline:
            time.sleep(0.02)
        fake2.fill_resting(rest_a.client_order_id, 95.0)
        engine.cancel(rest_b.client_order_id)
        engine.wait_for(final([rest_a.client_order_id, rest_b.client_order_id]))
        assert engine.kinds(rest_a.client_order_id) == [ExecKind.NEW, ExecKind.FILL]
        assert engine.kinds(rest_b.client_order_id) == [ExecKind.NEW, ExecKind.CANCELED]
        fill = [r for r in engine.reports if r.client_order_id == rest_a.client_order_id][-1]
        assert fill.exec_id.startswith(fake2.session_id) and fill.last_px == 95.0
        # the status LEAN now gives lists every client order id it ever got, none re-sent
        snaps = {s.client_order_id: s.kind for s in host.orders()}
        assert snaps == {rest_a.client_order_id: ExecKind.FILL, rest_b.client_order_id: ExecKind.CANCELED,
                         done.client_order_id: ExecKind.UNKNOWN}
        engine.submit(done)  # a re-drive of an id LEAN had: the gate refuses it, LEAN never sees it twice
        engine.drain()
        assert [c.client_order_id for c in fake.received + fake2.received if type(c) is p.PlaceOrder].count(
            done.client_order_id) == 1
    finally:
        fake2.stop()


def test_no_peer_means_not_sent_rejected_venue_unavailable():
    bridge = LeanBridge(LeanBridgeConfig(port=0))
    bridge.open(zmq.Context.instance())
    try:
        bridge.submit(intent(1), time.time_ns())
        (rep,) = bridge.advance(time.time_ns())
        assert rep.kind is ExecKind.REJECTED and rep.reason.startswith("VENUE_UNAVAILABLE")
    finally:
        bridge.close()


def test_adapter_does_not_start_blind_when_lean_never_lists_its_orders():
    port = free_port()
    fake = FakeLean("tcp://127.0.0.1:%d" % port, behaviour=FakeLeanBehaviour(silent=True)).start()
    bridge = LeanBridge(LeanBridgeConfig(port=port, status_timeout_ms=500))
    bridge.open(zmq.Context.instance())
    try:
        with pytest.raises(BrokerError) as err:
            bridge.snapshot()
        assert err.value.reason is Reason.VENUE_UNAVAILABLE and err.value.retriable
    finally:
        bridge.close()
        fake.stop()
