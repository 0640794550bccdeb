"""The adapter-side half of a venue whose I/O runs in a worker thread (Schwab over HTTP, IBKR over
the TWS socket): the adapter's loop never waits on the broker.

The worker sends every `ExecutionReport` it makes over an inproc PUSH socket to `socket` (a PULL
the adapter polls, so a report wakes the loop at once); `advance` hands them out and keeps the
book the failover calls answer from: each order's last state (an ended order stays ended; a late
fill still counts) and every fill, by client order id.
"""

from __future__ import annotations

import uuid
from typing import Iterable

import zmq

from node.messages import ExecKind, ExecutionReport, OrderSnapshot, report_decoder
from node.venue import DONE_KINDS, VenueBase

_FILL_KINDS = (ExecKind.FILL, ExecKind.PARTIAL_FILL)


class WorkerVenue(VenueBase):
    def __init__(self, name: str) -> None:
        self._name = name
        self.socket: zmq.Socket | None = None
        self.endpoint = ""
        self._book: dict[str, OrderSnapshot] = {}
        self._fills: list[ExecutionReport] = []
        self._fills_of: dict[str, list[ExecutionReport]] = {}

    def _bind(self, ctx: zmq.Context) -> str:
        """Bind the PULL the worker pushes to; returns its inproc endpoint."""
        self.endpoint = "inproc://" + self._name + "-" + uuid.uuid4().hex
        sock = ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.endpoint)
        self.socket = sock
        return self.endpoint

    def _unbind(self) -> None:
        if self.socket is not None:
            self.socket.close(0)
            self.socket = None

    def advance(self, now_ns: int) -> list[ExecutionReport]:
        out: list[ExecutionReport] = []
        sock = self.socket
        if sock is None:
            return out
        for _ in range(8192):
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            rep = report_decoder.decode(frame)
            self._apply(rep)
            out.append(rep)
        return out

    def snapshot(self) -> list[OrderSnapshot]:
        return list(self._book.values())

    def snapshot_of(self, client_order_ids: Iterable[str]) -> list[OrderSnapshot]:
        book = self._book
        return [book[c] for c in client_order_ids if c in book]

    def sent_ids(self) -> list[str]:
        return list(self._book)

    def fills(self) -> list[ExecutionReport]:
        return list(self._fills)

    def fills_of(self, client_order_ids: Iterable[str]) -> list[ExecutionReport]:
        return [f for c in client_order_ids for f in self._fills_of.get(c, ())]

    def _apply(self, rep: ExecutionReport) -> None:
        coid = rep.client_order_id
        if rep.last_qty > 0.0:
            self._fills.append(rep)
            self._fills_of.setdefault(coid, []).append(rep)
        prev = self._book.get(coid)
        if prev is not None and prev.kind in DONE_KINDS and rep.kind not in _FILL_KINDS:
            return
        self._book[coid] = OrderSnapshot(coid, rep.kind, rep.cum_qty, rep.leaves_qty)
