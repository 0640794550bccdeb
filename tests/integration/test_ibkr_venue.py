"""The IBKR venue against the local TWS fake (tests/fakes/tws_fake.py): real ib_async over a real
socket speaking the TWS API framing. Every fault the issue names for IBKR has a case here."""

from __future__ import annotations

import datetime as dt
import secrets
import time

import msgspec
import pytest
import zmq

from adapters.brokers.ibkr import parsing
from adapters.brokers.ibkr.venue import IbkrVenue
from node.config import IbkrConfig, MaintenanceWindow
from node.messages import ExecKind, OrderIntent, OrderType, Side
from node.reasons import Reason
from tests.fakes.tws_fake import TwsFake

WAIT_S = 20.0
FINAL = {ExecKind.FILL, ExecKind.CANCELED, ExecKind.REJECTED}


class Driver:
    def __init__(self, venue: IbkrVenue) -> None:
        self.venue = venue
        self.ctx = zmq.Context()
        venue.open(self.ctx)
        self.reports = []

    def pump(self) -> None:
        if self.venue.socket.poll(50):
            self.reports.extend(self.venue.advance(time.time_ns()))

    def wait_for(self, done, timeout_s: float = WAIT_S):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.pump()
            if done():
                return
        raise AssertionError("timed out; reports: " + repr([(r.client_order_id, r.kind, r.reason) for r in self.reports]))

    def kinds(self, coid: str) -> list[ExecKind]:
        return [r.kind for r in self.reports if r.client_order_id == coid]

    def connected(self) -> bool:
        return self.venue.health(time.time_ns()).ok

    def close(self) -> None:
        self.venue.close()
        self.ctx.term()


def no_windows(**changes) -> IbkrConfig:
    cfg = IbkrConfig(port=0, client_id=7, windows=[], reconnect_interval_ms=200, connect_timeout_ms=3_000,
                     ack_timeout_ms=2_000)
    return msgspec.structs.replace(cfg, **changes)


@pytest.fixture()
def tws():
    f = TwsFake(prices={"AAPL": 101.0}).start()
    yield f
    f.stop()


@pytest.fixture()
def drive(tws):
    made = []

    def start(**changes) -> Driver:
        d = Driver(IbkrVenue(no_windows(port=tws.port, **changes)))
        made.append(d)
        d.wait_for(d.connected, 15)
        return d

    yield start
    for d in made:
        d.close()


def intent(n: int, otype: OrderType = OrderType.MARKET, qty: float = 10.0, symbol: str = "AAPL",
           limit: float | None = None, side: Side = Side.BUY) -> OrderIntent:
    return OrderIntent(client_order_id="NAE-" + secrets.token_hex(6) + "-" + str(n), signal_id="s", request_id="r",
                       strategy_id="alpha", symbol=symbol, side=side, order_type=otype, quantity=qty, limit_price=limit)


def test_market_order_partial_fills_keyed_by_perm_id_with_commissions(tws, drive):
    tws.fill_legs = 2
    d = drive()
    it = intent(1)
    d.venue.submit(it, time.time_ns())
    d.wait_for(lambda: ExecKind.FILL in d.kinds(it.client_order_id))
    assert d.kinds(it.client_order_id) == [ExecKind.NEW, ExecKind.PARTIAL_FILL, ExecKind.FILL]
    perm = tws.by_ref(it.client_order_id)["perm_id"]
    assert {r.venue_order_id for r in d.reports} == {str(perm)}
    fills = [r for r in d.reports if r.last_qty]
    assert sum(f.last_qty for f in fills) == 10 and fills[-1].avg_px == 101.0
    d.wait_for(lambda: len(d.venue.commissions()) == 2, 5)
    assert set(d.venue.commissions()) == {f.exec_id for f in fills}


def test_reject_has_a_reason_and_cancel_of_a_resting_order(tws, drive):
    tws.reject_symbols.add("BAD")
    d = drive()
    bad, rest = intent(1, symbol="BAD"), intent(2, OrderType.LIMIT, limit=50.0)
    d.venue.submit(bad, time.time_ns())
    d.venue.submit(rest, time.time_ns())
    d.wait_for(lambda: ExecKind.REJECTED in d.kinds(bad.client_order_id) and ExecKind.NEW in d.kinds(rest.client_order_id))
    assert [r.reason for r in d.reports if r.client_order_id == bad.client_order_id][-1] == Reason.VENUE_REJECT
    d.venue.cancel(rest.client_order_id, time.time_ns())
    d.wait_for(lambda: ExecKind.CANCELED in d.kinds(rest.client_order_id))


def test_correction_is_not_counted_twice(tws, drive):
    tws.correct_next_fill = True
    d = drive()
    it = intent(1)
    d.venue.submit(it, time.time_ns())
    d.wait_for(lambda: ExecKind.FILL in d.kinds(it.client_order_id))
    time.sleep(0.3)
    d.pump()
    assert sum(r.last_qty for r in d.reports if r.client_order_id == it.client_order_id) == 10
    assert d.venue.session.corrections == 1
    assert d.venue.positions() == {"AAPL": 10.0}


def test_drop_mid_order_is_unknown_then_the_reconnect_sweep_resolves_it(tws, drive):
    d = drive()
    tws.drop_on_next_place = True
    it = intent(1)
    d.venue.submit(it, time.time_ns())
    d.wait_for(lambda: ExecKind.FILL in d.kinds(it.client_order_id))
    kinds = d.kinds(it.client_order_id)
    assert kinds[0] is ExecKind.UNKNOWN and kinds[-1] is ExecKind.FILL
    assert sum(r.last_qty for r in d.reports if r.client_order_id == it.client_order_id) == 10
    d.wait_for(lambda: d.venue.session.swept_fills == 1, 5)  # counted just after the report left
    assert tws.connections >= 2
    assert len([o for o in tws.orders.values() if o["ref"] == it.client_order_id]) == 1  # never sent twice


def test_fills_while_away_arrive_once_through_the_sweep(tws, drive):
    d = drive()
    it = intent(1, OrderType.LIMIT, limit=99.0)
    d.venue.submit(it, time.time_ns())
    d.wait_for(lambda: ExecKind.NEW in d.kinds(it.client_order_id))
    tws.drop_connections()
    d.wait_for(lambda: not d.connected(), 5)
    tws.fill(tws.by_ref(it.client_order_id)["perm_id"], 10, 98.5)  # filled while the line was down
    d.wait_for(lambda: ExecKind.FILL in d.kinds(it.client_order_id))
    d.wait_for(d.connected, 10)
    time.sleep(0.5)
    d.pump()
    assert [r.last_px for r in d.reports if r.last_qty] == [98.5]


def test_before_the_first_sweep_nothing_is_sent_then_unknown_then_sent(tws):
    tws.refuse_connections = True  # the gateway is down when the adapter starts
    d = Driver(IbkrVenue(no_windows(port=tws.port, ack_timeout_ms=500)))
    try:
        it = intent(1)
        d.venue.submit(it, time.time_ns())
        d.wait_for(lambda: ExecKind.UNKNOWN in d.kinds(it.client_order_id))  # TWS not asked: it may have it
        assert tws.orders == {}
        tws.refuse_connections = False
        d.wait_for(lambda: ExecKind.FILL in d.kinds(it.client_order_id))
        assert len(tws.orders) == 1
    finally:
        d.close()


def test_after_a_restart_an_order_the_predecessor_filled_is_adopted_never_sent_again(tws, drive):
    d1 = drive()
    it = intent(1)
    d1.venue.submit(it, time.time_ns())
    d1.wait_for(lambda: ExecKind.FILL in d1.kinds(it.client_order_id))
    d1.close()
    tws.refuse_connections = True  # the re-drive lands before the restarted adapter's first sweep
    d2 = Driver(IbkrVenue(no_windows(port=tws.port)))  # a restarted adapter, re-driven at once
    try:
        d2.venue.submit(it, time.time_ns())  # before its first sweep: held
        tws.refuse_connections = False
        d2.wait_for(lambda: ExecKind.FILL in d2.kinds(it.client_order_id))
        time.sleep(0.5)
        d2.pump()
        assert d2.kinds(it.client_order_id) == [ExecKind.NEW, ExecKind.FILL]  # the sweep adopted it
        assert len([o for o in tws.orders.values() if o["ref"] == it.client_order_id]) == 1
        late = intent(2)  # after the sweep, a ref TWS executed for someone else is refused
        tws.executions.append(dict(tws.executions[-1], exec_id="0000e999.00000001.01.01", ref=late.client_order_id))
        connects = d2.venue.session.connects
        tws.drop_connections()  # the reconnect's sweep sees it
        d2.wait_for(lambda: d2.venue.session.connects > connects and d2.connected(), 10)
        d2.venue.submit(late, time.time_ns())
        d2.wait_for(lambda: ExecKind.REJECTED in d2.kinds(late.client_order_id))
        assert d2.reports[-1].reason == Reason.DUPLICATE_CLIENT_ORDER_ID
    finally:
        d2.close()


def test_after_a_restart_a_resting_order_redriven_before_the_first_sweep_is_adopted_never_sent_again(tws, drive):
    d1 = drive()
    it = intent(1, OrderType.LIMIT, limit=50.0)
    d1.venue.submit(it, time.time_ns())
    d1.wait_for(lambda: ExecKind.NEW in d1.kinds(it.client_order_id))
    d1.close()
    tws.refuse_connections = True  # the re-drive lands before the restarted adapter's first sweep
    d2 = Driver(IbkrVenue(no_windows(port=tws.port)))  # a restarted adapter, re-driven at once
    try:
        d2.venue.submit(it, time.time_ns())  # before its first sweep: held until TWS was asked
        tws.refuse_connections = False
        d2.wait_for(lambda: ExecKind.NEW in d2.kinds(it.client_order_id) and d2.connected())
        assert d2.venue.stats()["adopted"] == 0  # it was the re-drive's own order: found, not new
        d2.venue.cancel(it.client_order_id, time.time_ns())
        d2.wait_for(lambda: ExecKind.CANCELED in d2.kinds(it.client_order_id))
        assert d2.kinds(it.client_order_id) == [ExecKind.NEW, ExecKind.CANCELED]
        assert [o["ref"] for o in tws.orders.values()] == [it.client_order_id] and tws.cancels == 1
    finally:
        d2.close()


def test_a_resting_order_is_bound_again_after_a_reconnect_so_its_cancel_is_reported(tws, drive):
    """ib_async forgets its Trades on a disconnect: without the open orders asked again, TWS's
    Cancelled status after a reconnect names no order it knows and the cancel is never reported."""
    d = drive()
    it = intent(1, OrderType.LIMIT, limit=50.0)
    d.venue.submit(it, time.time_ns())
    d.wait_for(lambda: ExecKind.NEW in d.kinds(it.client_order_id))
    connects = d.venue.session.connects
    tws.drop_connections()
    d.wait_for(lambda: d.venue.session.connects > connects and d.connected())
    d.venue.cancel(it.client_order_id, time.time_ns())
    d.wait_for(lambda: ExecKind.CANCELED in d.kinds(it.client_order_id))
    assert d.kinds(it.client_order_id) == [ExecKind.NEW, ExecKind.CANCELED] and tws.cancels == 1
    assert d.venue.stats()["adopted"] == 0


def test_an_open_order_of_another_client_id_is_known_but_its_cancel_is_not_sent(tws, drive):
    """TWS names orders per client id: a cancel by id from this client could hit another order."""
    d1 = drive(client_id=8)
    it = intent(1, OrderType.LIMIT, limit=50.0)
    d1.venue.submit(it, time.time_ns())
    d1.wait_for(lambda: ExecKind.NEW in d1.kinds(it.client_order_id))
    d1.close()
    d2 = drive()  # client id 7
    d2.wait_for(lambda: ExecKind.NEW in d2.kinds(it.client_order_id))  # listed by reqAllOpenOrders: adopted
    assert d2.venue.stats()["adopted"] == 1
    d2.venue.cancel(it.client_order_id, time.time_ns())
    d2.wait_for(lambda: d2.venue.stats()["cancel_foreign"] == 1)
    d2.venue.submit(it, time.time_ns())  # known: never sent again
    connects = d2.venue.session.connects
    tws.drop_connections()  # a round trip through TWS after both commands: the reconnect's requests
    d2.wait_for(lambda: d2.venue.session.connects > connects and d2.connected())
    assert tws.by_ref(it.client_order_id)["status"] == "Submitted" and tws.cancels == 0
    assert not [f for f in tws.received if f[0] == "4"], "no cancelOrder reached TWS"
    assert [o["ref"] for o in tws.orders.values()] == [it.client_order_id]
    assert d2.kinds(it.client_order_id) == [ExecKind.NEW]  # re-bound at the reconnect: no second NEW, no send


def test_not_connected_after_the_first_sweep_refuses_with_a_reason(tws, drive):
    d = drive(reconnect_interval_ms=60_000)
    tws.refuse_connections = True
    tws.drop_connections()
    d.wait_for(lambda: not d.connected(), 5)
    it = intent(1)
    d.venue.submit(it, time.time_ns())
    d.wait_for(lambda: ExecKind.REJECTED in d.kinds(it.client_order_id))
    assert d.reports[-1].reason == Reason.NO_CONNECTION and tws.orders == {}


def window_now(minutes_ago: int = 1, duration: int = 10) -> MaintenanceWindow:
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=minutes_ago)
    return MaintenanceWindow(start_hhmm=start.strftime("%H:%M"), duration_min=duration, tz="UTC")


def test_maintenance_window_refuses_with_a_reason(tws, drive):
    d = Driver(IbkrVenue(no_windows(port=tws.port, windows=[window_now()])))
    try:
        d.wait_for(lambda: d.venue.session is not None and d.venue.session.connected, 15)
        assert d.venue.health(time.time_ns()).reason == Reason.BROKER_MAINTENANCE
        it = intent(1)
        d.venue.submit(it, time.time_ns())
        d.wait_for(lambda: ExecKind.REJECTED in d.kinds(it.client_order_id))
        assert d.reports[-1].reason == Reason.BROKER_MAINTENANCE and tws.orders == {}
    finally:
        d.close()


@pytest.mark.parametrize("now,inside", [
    ("2026-03-02T04:50:00+00:00", True),   # 23:50 New York (EST): in the 23:45 + 60 min reset
    ("2026-03-02T05:40:00+00:00", True),   # 00:40 New York: still in, past midnight
    ("2026-03-02T05:50:00+00:00", False),  # 00:50: over
    ("2026-03-02T15:00:00+00:00", False),
])
def test_window_math(now, inside):
    w = [MaintenanceWindow(start_hhmm="23:45", duration_min=60)]
    assert (parsing.in_window(dt.datetime.fromisoformat(now), w) is not None) is inside


@pytest.mark.parametrize("exec_id,stem", [("0000e001.000aae61.01.01", "0000e001.000aae61.01"),
                                          ("0000e001.000aae61.01.02", "0000e001.000aae61.01"), ("X", "X")])
def test_exec_key(exec_id, stem):
    assert parsing.exec_key(exec_id) == stem
