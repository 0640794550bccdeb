"""The node side of the LEAN bridge: a ROUTER the LEAN algorithm (`NaeBridgeAlgorithm.cs`) connects to.

`LeanBridge` has the shape of a broker adapter's venue (`actors.broker.Venue`, like
`adapters.paper.remote.RemoteVenue`): `open(ctx)` binds its socket on the adapter's loop thread,
the adapter polls `socket`, `submit`/`cancel` turn node `OrderIntent`s into `PlaceOrder` /
`CancelOrder` commands, `advance` turns LEAN's order events into node `ExecutionReport`s (through
`book.LeanOrderBook`: kind mapping, fill dedupe, timeouts to UNKNOWN), `snapshot` asks LEAN for
every order it knows. So `BrokerHost("lean", host, LeanBridge(cfg))` puts LEAN behind the node's
broker gate (epoch fencing, each client order id sent once) with no other change.

Peer handling: the algorithm says `Hello` on every (re)connect; a new `session_id` is a LEAN
restart, answered with a `StatusQuery` whose `StatusReport` relinks LEAN's new order ids to our
client order ids. A submit with no connected peer (none yet, or its connection dropped: the
ROUTER is mandatory-routing, with ZeroMQ heartbeats to notice a dead TCP peer) never leaves the
node and is REJECTED VENUE_UNAVAILABLE; a submit that left and gets no answer is UNKNOWN after
`ack_timeout_ms`.
"""

from __future__ import annotations

import time
from typing import Callable

import zmq

from adapters.engines.lean import protocol as p
from adapters.engines.lean.book import LeanOrderBook
from adapters.engines.lean.config import LeanBridgeConfig
from adapters.engines.lean.parsing import DONE_STATUSES, place_command, snapshot_kind
from node.errors import BrokerError
from node.messages import ExecutionReport, OrderIntent, OrderSnapshot, Side
from node.reasons import Reason
from node.venue import VenueBase, VenueHealth

_MS = 1_000_000
_ZMQ_HEARTBEAT_MS = 1_000


class LeanBridge(VenueBase):
    def __init__(self, cfg: LeanBridgeConfig, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.cfg = cfg
        self._clock_ns = clock_ns
        self.book = LeanOrderBook(cfg.ack_timeout_ms * _MS, cfg.cancel_timeout_ms * _MS)
        self.socket: zmq.Socket | None = None
        self.endpoint = ""
        self._peer: bytes | None = None
        self.session_id = ""
        self._last_heard_ns = 0
        self._query_seq = 0
        self._queries: dict[int, bool] = {}  # query id -> asked because LEAN restarted
        self._last_status: p.StatusReport | None = None
        self._out: list[ExecutionReport] = []  # reports made outside advance(), handed out by it
        self._refused: set[bytes] = set()
        self.sessions = 0
        self.malformed = 0
        self.protocol_mismatch = 0
        self.commands_sent = 0
        self.not_sent = 0

    # ---------------------------------------------------------------- lifecycle (the adapter's loop thread)

    def open(self, ctx: zmq.Context) -> None:
        sock = ctx.socket(zmq.ROUTER)
        for opt, val in (
            (zmq.LINGER, 0),
            (zmq.ROUTER_MANDATORY, 1),
            (zmq.SNDHWM, 100_000),
            (zmq.RCVHWM, 100_000),
            (zmq.HEARTBEAT_IVL, _ZMQ_HEARTBEAT_MS),
            (zmq.HEARTBEAT_TIMEOUT, 3 * _ZMQ_HEARTBEAT_MS),
        ):
            sock.setsockopt(opt, val)
        base = "tcp://" + self.cfg.bind_host
        if self.cfg.port:
            self.endpoint = base + ":" + str(self.cfg.port)
            sock.bind(self.endpoint)
        else:
            self.endpoint = base + ":" + str(sock.bind_to_random_port(base))
        self.socket = sock

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(0)
            self.socket = None

    # ---------------------------------------------------------------- the venue interface

    def submit(self, intent: OrderIntent, now_ns: int) -> None:
        if not self._send(p.encode(place_command(intent))):
            self.not_sent += 1
            self._out.append(self.book.not_sent(intent, now_ns, "no LEAN algorithm connected"))
            return
        self.book.submitted(intent, now_ns)

    def cancel(self, client_order_id: str, now_ns: int) -> None:
        """Ask LEAN to cancel; with no peer nothing is sent and the order stays as it is."""
        t = self.book.orders.get(client_order_id)
        if t is None or t.done:
            return
        if self._send(p.encode(p.CancelOrder(client_order_id=client_order_id))):
            self.book.cancel_sent(client_order_id, now_ns)

    def advance(self, now_ns: int) -> list[ExecutionReport]:
        out, self._out = self._out, []
        sock = self.socket
        for _ in range(4096):
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._handle(parts, now_ns, out)
        expired = self.book.expire(now_ns)
        if expired:
            out.extend(expired)
        return out

    def next_due_ns(self) -> int | None:
        return self.book.next_due_ns()

    def snapshot(self) -> list[OrderSnapshot]:
        """Every order LEAN knows by client order id (a blocking round trip: waits up to
        `status_timeout_ms` for the algorithm to connect and answer), merged with the bridge's own
        view of orders LEAN does not list. Reports that arrive meanwhile go out on `advance`."""
        asked_after = self._query_seq
        if self._peer is not None:
            self._ask_status(restarted=False)
        deadline = time.monotonic() + self.cfg.status_timeout_ms / 1000
        sock = self.socket
        while time.monotonic() < deadline:
            if not sock.poll(50):
                continue
            now = self._clock_ns()
            while True:
                try:
                    parts = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._handle(parts, now, self._out)
            last = self._last_status
            if last is not None and last.query_id > asked_after:
                return self._merged(last)
        raise BrokerError(
            "no LEAN algorithm listed its orders at " + self.endpoint + " within "
            + str(self.cfg.status_timeout_ms) + " ms", Reason.VENUE_UNAVAILABLE, retriable=True,
        )

    def positions(self) -> dict[str, float]:
        pos: dict[str, float] = {}
        for f in self.book.fills:
            pos[f.symbol] = pos.get(f.symbol, 0.0) + (f.last_qty if f.side is Side.BUY else -f.last_qty)
        return pos

    def fills(self) -> list[ExecutionReport]:
        return list(self.book.fills)

    # ---------------------------------------------------------------- health

    def health(self, now_ns: int) -> VenueHealth:
        if self.peer_alive(now_ns):
            return VenueHealth(ok=True)
        return VenueHealth(ok=False, reason=Reason.NO_CONNECTION.value, detail="no LEAN algorithm heard from")

    def peer_alive(self, now_ns: int | None = None) -> bool:
        now = self._clock_ns() if now_ns is None else now_ns
        return self._peer is not None and now - self._last_heard_ns <= self.cfg.peer_silence_ms * _MS

    def stats(self) -> dict:
        b = self.book
        return {
            "endpoint": self.endpoint,
            "session_id": self.session_id,
            "sessions": self.sessions,
            "peer_alive": self.peer_alive(),
            "commands_sent": self.commands_sent,
            "not_sent": self.not_sent,
            "malformed": self.malformed,
            "protocol_mismatch": self.protocol_mismatch,
            "duplicate_events": b.duplicate_events,
            "duplicate_fills": b.duplicate_fills,
            "ignored_events": b.ignored_events,
            "orphan_events": b.orphan_events,
            "timeouts": b.timeouts,
        }

    # ---------------------------------------------------------------- internals

    def _send(self, frame: bytes) -> bool:
        peer = self._peer
        if peer is None or self.socket is None:
            return False
        try:
            self.socket.send_multipart((peer, frame), zmq.NOBLOCK)
        except zmq.ZMQError:  # EHOSTUNREACH: that connection is gone; EAGAIN: its queue is full
            return False
        self.commands_sent += 1
        return True

    def _ask_status(self, restarted: bool) -> None:
        self._query_seq += 1
        self._queries[self._query_seq] = restarted
        self._send(p.encode(p.StatusQuery(query_id=self._query_seq)))

    def _handle(self, parts: list[bytes], now_ns: int, out: list[ExecutionReport]) -> None:
        if len(parts) != 2:
            self.malformed += 1
            return
        ident, frame = parts
        try:
            msg = p.lean_decoder.decode(frame)
        except Exception:  # noqa: BLE001 - a bad frame from the peer is counted, never fatal
            self.malformed += 1
            return
        kind = type(msg)
        if kind is p.Hello and msg.protocol != p.PROTOCOL_VERSION:
            self._refused.add(ident)  # an algorithm speaking another protocol version gets no orders
        if ident in self._refused:
            self.protocol_mismatch += 1
            return
        self._peer = ident  # the newest connection of the algorithm is the one to answer
        self._last_heard_ns = now_ns
        if kind is p.OrderEvent:
            rep = self.book.on_event(msg, now_ns)
            if rep is not None:
                out.append(rep)
        elif kind is p.Heartbeat or kind is p.Hello:
            if msg.session_id != self.session_id:
                restarted = bool(self.session_id)
                self.session_id = msg.session_id
                self.sessions += 1
                self._ask_status(restarted)
        elif kind is p.StatusReport:
            restarted = self._queries.pop(msg.query_id, False)
            self._last_status = msg
            out.extend(self.book.on_status(msg, restarted, now_ns))

    def _merged(self, report: p.StatusReport) -> list[OrderSnapshot]:
        out: dict[str, OrderSnapshot] = {}
        for o in report.orders:
            kind = snapshot_kind(o.status, o.filled_quantity)
            leaves = 0.0 if o.status in DONE_STATUSES else max(abs(o.quantity) - o.filled_quantity, 0.0)
            out[o.client_order_id] = OrderSnapshot(o.client_order_id, kind, o.filled_quantity, leaves)
        for snap in self.book.snapshot():
            out.setdefault(snap.client_order_id, snap)
        return list(out.values())
