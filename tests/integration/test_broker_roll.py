"""The broker adapter's per-order maps are bounded by the daily roll (node.daily_roll): finished
orders are forgotten at the second roll after they finished, a resting order is kept, and a
recovery's query still finds a forgotten order in the venue's book (adopted, never sent again).
Also: an asked order the gate took is answered as taken (`OrdersReport.sent`)."""

from __future__ import annotations

import threading
import time

import zmq

from actors.broker import BrokerHost
from adapters.paper.venue import PaperVenue
from node.config import PaperVenueConfig
from node.messages import (ExecKind, OrderIntent, OrdersReport, OrderType, QueryOrders, Side, SubmitOrder,
                           broker_event_decoder, encode)
from node.recovery import plan_recovery


class _RollOnDemand:
    """The roll's clock, turned by the test (the real one waits for 22:00 UTC)."""

    def __init__(self) -> None:
        self.pending = threading.Semaphore(0)
        self.rolls = 0

    def due(self, now_ns: int) -> bool:
        if self.pending.acquire(blocking=False):
            self.rolls += 1
            return True
        return False


def _intent(coid: str, limit: float | None = None) -> OrderIntent:
    return OrderIntent(client_order_id=coid, signal_id="s" + coid, request_id="r" + coid, strategy_id="t",
                       symbol="AAPL", side=Side.BUY, order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                       quantity=5.0, limit_price=limit)


def test_finished_orders_leave_the_maps_at_the_second_roll_open_ones_stay() -> None:
    host = BrokerHost("p", "127.0.0.1", PaperVenue(PaperVenueConfig()))
    roll = _RollOnDemand()
    host._roll = roll  # type: ignore[assignment]
    endpoint = host.start()["orders"]
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    got: list = []

    def wait(pred, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sock.poll(50):
                got.append(broker_event_decoder.decode(sock.recv()))
            if pred():
                return
        raise AssertionError(repr(got[-5:]))

    def turn(n_rolls: int) -> None:
        target = roll.rolls + n_rolls
        for _ in range(n_rolls):
            roll.pending.release()
        wait(lambda: roll.rolls >= target)

    try:
        done = ["NAE-d%d-0" % i for i in range(20)]
        for coid in done:
            sock.send(encode(SubmitOrder(1, "e", _intent(coid))))
        sock.send(encode(SubmitOrder(1, "e", _intent("NAE-rest-0", limit=1.0))))  # far below the market: rests
        filled = lambda: {r.client_order_id for r in got if getattr(r, "kind", None) is ExecKind.FILL}  # noqa: E731
        wait(lambda: set(done) <= filled() and any(getattr(r, "client_order_id", "") == "NAE-rest-0" for r in got))
        assert host.stats().orders_tracked == 21

        turn(1)  # the first roll after they finished: kept (a day at least)
        assert host.stats().orders_tracked == 21 and host.gate.known(done[0])
        turn(1)
        stats = host.stats()
        assert stats.orders_tracked == 1 and stats.forgotten == 20
        assert host.gate.known("NAE-rest-0") and not any(host.gate.known(c) for c in done)

        # a recovery asking about a forgotten order: the venue's book still lists it, so it is adopted
        sock.send(encode(QueryOrders(2, "e2", time.time_ns(), [done[0], "NAE-new-0"], query_id=41)))
        wait(lambda: any(type(m) is OrdersReport for m in got))
        answer = next(m for m in got if type(m) is OrdersReport)
        assert answer.query_id == 41  # echoed: the asker matches the answer to its query
        plan = plan_recovery([_intent(done[0]), _intent("NAE-new-0")], answer)
        assert [s.client_order_id for s in plan.adopt] == [done[0]]
        assert [i.client_order_id for i in plan.redrive] == ["NAE-new-0"]
    finally:
        sock.close(0)
        host.stop()
