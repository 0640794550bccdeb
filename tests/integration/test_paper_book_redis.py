"""The paper account in the machine's Redis: a broker adapter restarted on the same key finds its
account (orders, fills, positions, cash), refuses a client order id it already took, and trades on
with new ids; a long log is compacted at start; an unreadable log refuses to start empty."""

from __future__ import annotations

import secrets
import time

import pytest
import redis
import zmq

from actors.broker import BrokerHost
from adapters.paper.journal import FIELD, open_paper_venue
from node.config import PaperVenueConfig
from node.errors import StoreError
from node.messages import ExecKind, OrderIntent, OrderType, Side, SubmitOrder, broker_event_decoder, encode


def intent(coid: str, qty: float = 5.0, kind: OrderType = OrderType.MARKET, **kw) -> OrderIntent:
    return OrderIntent(client_order_id=coid, signal_id="s", request_id="r-" + coid, strategy_id="st", symbol="AAPL",
                       side=Side.BUY, order_type=kind, quantity=qty, **kw)


class Adapter:
    """A broker adapter on a persisted paper venue and one engine's DEALER in front of it."""

    def __init__(self, redis_url: str, key: str) -> None:
        self.host = BrokerHost("p", "127.0.0.1", open_paper_venue(PaperVenueConfig(), redis_url, key))
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.host.start()["orders"])
        self.reports: list = []

    def send(self, it: OrderIntent) -> None:
        self.sock.send(encode(SubmitOrder(1, "default", it)))

    def wait(self, pred, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sock.poll(50):
                self.reports.append(broker_event_decoder.decode(self.sock.recv()))
            if pred():
                return
        raise AssertionError(repr(self.reports))

    def filled(self, coid: str) -> bool:
        return any(r.client_order_id == coid and r.kind is ExecKind.FILL for r in self.reports)

    def close(self) -> None:
        self.sock.close(0)
        self.host.stop()


@pytest.fixture()
def key(redis_url):
    k = "test-" + secrets.token_hex(4) + ".paper.p"
    yield k
    redis.Redis.from_url(redis_url).delete(k)


def test_a_restarted_adapter_finds_its_account(redis_url, key):
    a = Adapter(redis_url, key)
    try:
        a.send(intent("NAE-a-0", 250.0))  # walks three levels: partial fills
        a.send(intent("NAE-b-0", 10.0, OrderType.LIMIT, limit_price=1.0))  # rests
        a.wait(lambda: a.filled("NAE-a-0") and any(r.client_order_id == "NAE-b-0" for r in a.reports))
        before = (a.host.venue.positions(), [f.exec_id for f in a.host.venue.fills()], a.host.venue.cash(),
                  sorted(o.client_order_id for o in a.host.venue.order_book()))
    finally:
        a.close()
    b = Adapter(redis_url, key)  # a new adapter process would do the same: build the venue from the key
    try:
        venue = b.host.venue
        assert (venue.positions(), [f.exec_id for f in venue.fills()], venue.cash(),
                sorted(o.client_order_id for o in venue.order_book())) == before
        assert venue.status("NAE-b-0").kind is ExecKind.NEW  # still resting
        b.send(intent("NAE-a-0", 250.0))  # a re-drive of an order the account has: never a second order
        b.send(intent("NAE-c-0", 5.0))
        b.wait(lambda: b.filled("NAE-c-0"))
        assert b.host.stats().refused_duplicate == 1
        assert venue.positions()["AAPL"] == pytest.approx(255.0)
        assert len({f.exec_id for f in venue.fills()}) == len(venue.fills())  # no exec id reused
    finally:
        b.close()


def test_a_long_log_is_compacted_at_start(redis_url, key):
    a = Adapter(redis_url, key)
    try:
        for i in range(12):  # one at a time: each wake-up that hands reports out is one entry
            a.send(intent("NAE-%d-0" % i, 1.0))
            a.wait(lambda: a.filled("NAE-%d-0" % i))
        positions = a.host.venue.positions()
    finally:
        a.close()
    r = redis.Redis.from_url(redis_url)
    assert r.xlen(key) >= 2
    venue = open_paper_venue(PaperVenueConfig(), redis_url, key, compact_after=1)
    assert r.xlen(key) == 1 and venue.positions() == positions
    again = open_paper_venue(PaperVenueConfig(), redis_url, key)
    assert again.positions() == positions and len(again.fills()) == 12


def test_an_unreadable_log_refuses_to_start_empty(redis_url, key):
    redis.Redis.from_url(redis_url).xadd(key, {FIELD: b"\xc1not msgpack"})
    with pytest.raises(StoreError, match="unreadable"):
        open_paper_venue(PaperVenueConfig(), redis_url, key)


def test_redis_away_is_a_store_error():
    with pytest.raises(StoreError):
        open_paper_venue(PaperVenueConfig(), "redis://127.0.0.1:1/0", "x")


def test_an_append_across_a_redis_restart_fails_once_then_lands_on_a_fresh_connection(private_redis):
    """The log writes on its own connection: a restart of Redis between two appends fails the next
    append (the venue keeps the batch and writes it again), and the one after lands; what landed
    before the restart (AOF) and after is read back whole, once each."""
    from adapters.paper.journal import RedisBookLog
    from adapters.paper.records import OrderTaken

    url = "redis://127.0.0.1:%d/0" % private_redis.port
    log = RedisBookLog(url, "t.paper.p", timeout_s=1.0)
    first, second = [OrderTaken(intent("a"), "P-1", 5.0)], [OrderTaken(intent("b"), "P-2", 5.0)]
    try:
        log.append(first)
        time.sleep(1.2)  # appendfsync everysec: the first entry is on disk before the kill
        private_redis.stop()
        private_redis.start()
        with pytest.raises((redis.RedisError, OSError)):
            log.append(second)  # the dropped socket: refused, nothing half-read left behind
        log.append(second)
        records, entries = log.load()
    finally:
        log.close()
    assert entries == 2
    assert [r.venue_order_id for r in records] == ["P-1", "P-2"]
