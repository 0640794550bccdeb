"""A broker that fills at once, for an engine under test or bench: a ZeroMQ ROUTER on a thread of its
own speaking the node's broker protocol (SubmitOrder -> NEW then FILL with a unique exec_id;
QueryOrders -> the orders it filled). It can hold an order unanswered (`silent`) and answer it later
(`release`), and never fills one client order id twice.

Used by tests/integration/test_nautilus_engine.py and, loaded by path, bench/nautilus_report.py."""

from __future__ import annotations

import threading
import time

import zmq

from node.messages import (
    ExecKind,
    ExecutionReport,
    OrderSnapshot,
    OrdersReport,
    QueryOrders,
    SubmitOrder,
    broker_command_decoder,
    encode,
)


class InstantBroker:
    """A ROUTER that fills every order at once at its limit/stop price (or 100.0); stamps when each
    SubmitOrder arrived (`submit_ns`, `perf_counter_ns`). Answers QueryOrders with what it filled."""

    def __init__(self) -> None:
        self._ctx = zmq.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.SNDHWM, 1_000_000)  # a ROUTER drops, silently, beyond its HWM
        self.endpoint = "tcp://127.0.0.1:" + str(self._router.bind_to_random_port("tcp://127.0.0.1"))
        self.submits: list[SubmitOrder] = []
        self.submit_ns: dict[str, int] = {}
        self.queries = 0
        self.asked: list[QueryOrders] = []  # every query, in arrival order
        self.filled: dict[str, float] = {}
        self.fills: dict[str, ExecutionReport] = {}  # the FILL it reported, by client order id (listed in query answers)
        self.silent: set[str] = set()  # client order ids it takes but does not answer (yet)
        self.release: list[str] = []  # silent ids to answer now (appended by the test thread)
        self._held: dict[str, tuple[bytes, object]] = {}
        self._n = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="instant-broker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        r = self._router
        while not self._stop.is_set():
            while self.release:
                coid = self.release.pop()
                ident, it = self._held.pop(coid)
                self.silent.discard(coid)
                self._fill(ident, it)
            if not r.poll(20):
                continue
            ident, frame = r.recv_multipart()
            now = time.perf_counter_ns()
            cmd = broker_command_decoder.decode(frame)
            if type(cmd) is QueryOrders:
                self.queries += 1
                self.asked.append(cmd)
                named = set(cmd.client_order_ids) if cmd.since_ns > 0 else None  # since_ns 0: the whole book
                snaps = [OrderSnapshot(c, ExecKind.FILL, q, 0.0) for c, q in self.filled.items() if named is None or c in named]
                fills = [self.fills[s.client_order_id] for s in snaps if s.client_order_id in self.fills]
                r.send_multipart((ident, encode(OrdersReport(snaps, fills, query_id=cmd.query_id))))
                continue
            if type(cmd) is not SubmitOrder:
                continue
            it = cmd.intent
            self.submits.append(cmd)
            self.submit_ns.setdefault(it.client_order_id, now)
            if it.client_order_id in self.filled:
                continue  # the broker never fills one client order id twice
            if it.client_order_id in self.silent:
                self._held[it.client_order_id] = (ident, it)
                continue
            self._fill(ident, it)

    def _fill(self, ident: bytes, it) -> None:  # noqa: ANN001 - an OrderIntent
        r = self._router
        self._n += 1
        vid = "V" + str(self._n)
        px = it.limit_price or it.stop_price or 100.0
        r.send_multipart(
            (ident, encode(ExecutionReport(kind=ExecKind.NEW, client_order_id=it.client_order_id, venue_order_id=vid,
                                           symbol=it.symbol, side=it.side, leaves_qty=it.quantity)))
        )
        fill = ExecutionReport(kind=ExecKind.FILL, client_order_id=it.client_order_id, venue_order_id=vid,
                               exec_id="X" + str(self._n), symbol=it.symbol, side=it.side,
                               last_qty=it.quantity, last_px=px, cum_qty=it.quantity, avg_px=px)
        r.send_multipart((ident, encode(fill)))
        self.filled[it.client_order_id] = it.quantity
        self.fills[it.client_order_id] = fill

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._router.close(0)
        self._ctx.term()
