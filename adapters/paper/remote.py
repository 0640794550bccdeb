"""A paper venue in another process: the broker adapter's view of a venue it does not own.

Real brokers outlive their adapters; so can the paper exchange (`python -m actors.exchange`). This
client speaks the node's own broker protocol to it (SubmitOrder / CancelOrder / QueryOrders in,
ExecutionReport / OrdersReport out) over one DEALER, created on the adapter's loop thread (`open`)
and polled by it (`socket`). After an adapter restart, `snapshot()` tells the adapter's gate which
client order ids the venue already has, so nothing is sent twice.
"""

from __future__ import annotations

import time

import zmq

from node.errors import BrokerError
from node.messages import (
    CancelOrder,
    ExecutionReport,
    OrderIntent,
    OrderSnapshot,
    OrdersReport,
    QueryOrders,
    SubmitOrder,
    broker_event_decoder,
    encode,
)
from node.reasons import Reason
from node.venue import VenueBase, VenueHealth

_ADAPTER = "adapter"


class RemoteVenue(VenueBase):
    def __init__(self, endpoint: str, query_timeout_s: float = 5.0) -> None:
        self.endpoint = endpoint
        self._timeout_s = query_timeout_s
        self.socket: zmq.Socket | None = None
        self._fills: list[ExecutionReport] = []
        self._held: list[bytes] = []  # reports that arrived during a snapshot round trip
        self._venue_fills: list[ExecutionReport] | None = None

    def open(self, ctx: zmq.Context) -> None:
        sock = ctx.socket(zmq.DEALER)
        for opt, val in ((zmq.LINGER, 0), (zmq.SNDHWM, 1_000_000), (zmq.RCVHWM, 1_000_000)):
            sock.setsockopt(opt, val)
        sock.connect(self.endpoint)
        self.socket = sock

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(0)

    def submit(self, intent: OrderIntent, now_ns: int) -> None:
        self.socket.send(encode(SubmitOrder(0, _ADAPTER, intent)))

    def cancel(self, client_order_id: str, now_ns: int) -> None:
        self.socket.send(encode(CancelOrder(0, _ADAPTER, client_order_id)))

    def advance(self, now_ns: int) -> list[ExecutionReport]:
        out: list[ExecutionReport] = []
        frames, self._held = self._held, []
        recv = self.socket.recv
        for _ in range(8192):
            try:
                frames.append(recv(zmq.NOBLOCK))
            except zmq.Again:
                break
        for frame in frames:
            msg = broker_event_decoder.decode(frame)
            if type(msg) is ExecutionReport:
                out.append(msg)
                if msg.last_qty > 0.0:
                    self._fills.append(msg)
        return out

    def next_due_ns(self) -> int | None:
        return None

    def sent_ids(self) -> list[str]:
        """The ids the exchange has, asked without taking over their reports (an adapter starting
        beside another one in front of the same exchange must not steal the other's reports)."""
        return [s.client_order_id for s in self.snapshot(take_over=False)]

    def snapshot(self, take_over: bool = True) -> list[OrderSnapshot]:
        """Every order the venue has (a blocking round trip; reports that arrive meanwhile are
        kept for the next `advance`). The exchange sends this adapter the reports from now on."""
        self.socket.send(encode(QueryOrders(0, _ADAPTER, take_over=take_over)))
        deadline = time.monotonic() + self._timeout_s
        while time.monotonic() < deadline:
            if not self.socket.poll(100):
                continue
            frame = self.socket.recv()
            msg = broker_event_decoder.decode(frame)
            if type(msg) is OrdersReport:
                self._venue_fills = msg.fills
                return msg.orders
            self._held.append(frame)
        raise BrokerError("the paper exchange at " + self.endpoint + " did not list its orders", Reason.VENUE_UNAVAILABLE, retriable=True)

    def positions(self) -> dict[str, float]:
        pos: dict[str, float] = {}
        for f in self._fills:
            pos[f.symbol] = pos.get(f.symbol, 0.0) + (f.last_qty if f.side == "BUY" else -f.last_qty)
        return pos

    def fills(self) -> list[ExecutionReport]:
        """The venue's fills as of the last `snapshot()` (what a sweep needs), else what passed here."""
        return list(self._venue_fills if self._venue_fills is not None else self._fills)

    def health(self, now_ns: int) -> VenueHealth:
        if self.socket is None:
            return VenueHealth(ok=False, reason=Reason.NO_CONNECTION.value, detail="not opened")
        return VenueHealth(ok=True)
