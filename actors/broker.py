"""The broker adapter host: a ROUTER the engines talk to, the broker gate, and one venue.

Commands (SubmitOrder, CancelOrder, QueryOrders) come from engines over DEALER sockets, each
carrying its engine group and that group's epoch (fenced per group, see `BrokerGate`). Every report
about an order goes back to the engine identity that submitted it, or, once a new leader of the
order's group has asked (QueryOrders), to that leader. A Heartbeat gets a Heartbeat back: that is
how the supervisor knows the adapter lives.

Its per-order maps (who hears an order, its last activity, the gate's sent ids) are bounded by the
daily roll (`node.daily_roll`): at `daily_roll_hour_utc` the orders that finished before the
previous roll are forgotten; open orders are kept whatever their age. A recovery's QueryOrders is
answered from the venue's book, which keeps its own account, so a forgotten order is still adopted,
never sent again.
"""

from __future__ import annotations

import time
from typing import Callable

import msgspec
import zmq

from actors.service import LoopService, bind_at, tune
from adapters.broker_gate import Admit, BrokerGate
from node.messages import (
    CancelOrder,
    ExecKind,
    ExecutionReport,
    Heartbeat,
    OrderIntent,
    OrderSnapshot,
    OrdersReport,
    QueryOrders,
    ReplaceOrder,
    SubmitOrder,
    broker_command_decoder,
    encode,
)
from node.daily_roll import DailyRoll, Finished
from node.logs import RepeatLimiter, logger
from node.reasons import Reason
from node.reconcile import BrokerBook, Order, fill_of_report
from node.stats import BrokerStats
from node.venue import DONE_KINDS, Venue


_log = logger("broker")
_ORDER_SLACK_NS = 1_000_000_000  # report times (venue due times) may step back a little: scan this far past


class BrokerHost(LoopService):
    def __init__(
        self, name: str, bind_host: str, venue: Venue, clock_ns: Callable[[], int] = time.time_ns, port: int = 0,
        groups: frozenset[str] | None = None, roll_hour_utc: int = 22,
    ) -> None:
        super().__init__()
        #: the engine groups that may command it (None: any, as the paper exchange takes adapters);
        #: a command from another group could dodge its group's fence, so it is refused
        self._groups = groups
        self.refused_group = 0
        self.stale_from: dict[str, int] = {}  # engine -> its commands refused under a fenced epoch
        self.last_stale = ""  # the newest command refused under a fenced epoch ("" none)
        self._stale_lines = RepeatLimiter(10.0)
        self._port = port
        self.name = "broker:" + name
        self._bind_host = bind_host
        self.venue = venue
        self.gate = BrokerGate()
        self._clock_ns = clock_ns
        # who hears an order's reports: its submitter, unless a leader of its group took the group's
        # reports over (QueryOrders) after it was sent; resolved per report in O(1), so a take-over
        # costs the same however many orders the day has seen
        self._owner: dict[str, tuple[bytes, str, int]] = {}  # client_order_id -> (submitter, group, take-over no.)
        self._takeover: dict[str, tuple[bytes, int]] = {}  # group -> (its newest leader's identity, take-over no.)
        self._takeovers = 0
        self._leader: bytes = b""  # the last engine that sent or asked (reports of unknown orders)
        self.submitted = 0
        self.reports = 0
        self.malformed = 0
        self.first_submit_ns: dict[str, dict[int, int]] = {}  # group -> epoch -> wall time of its first order
        self._active_ns: dict[str, int] = {}  # client order id -> last submit or report, oldest first
        self._link_ok = False  # the venue's health at the last `link_generation` call
        self._link_ups = 0
        self._roll = DailyRoll(roll_hour_utc, clock_ns())
        self._finished = Finished()  # orders whose last report ended them (forgotten at the second roll)
        self.forgotten = 0  # finished orders dropped from the per-order maps by the daily rolls

    def _open(self, ctx: zmq.Context) -> dict[str, str]:
        self._router = tune(ctx.socket(zmq.ROUTER))
        endpoint = bind_at(self._router, self._bind_host, self._port)
        self.poller.register(self._router, zmq.POLLIN)
        opener = getattr(self.venue, "open", None)
        if opener is not None:  # a venue in another process: poll its socket, learn what it has
            opener(ctx)
            self.poller.register(self.venue.socket, zmq.POLLIN)
            sent_ids = getattr(self.venue, "sent_ids", None)  # a look that takes nothing over
            self.gate.load_sent(sent_ids() if sent_ids else [s.client_order_id for s in self.venue.snapshot()])
        else:  # an in-process venue that kept its account (the paper venue, restored from its book log)
            self.gate.load_sent(self.venue.sent_ids())
        return {"orders": endpoint}

    def _close(self) -> None:
        self._router.close(0)
        closer = getattr(self.venue, "close", None)
        if closer is not None:
            closer()

    def _poll_timeout_ms(self) -> int:
        due = self.venue.next_due_ns()
        if due is None:
            return 50
        wait_ms = (due - self._clock_ns()) // 1_000_000
        return 0 if wait_ms <= 0 else min(int(wait_ms), 50)

    def _on_wake(self, events: dict) -> None:
        now = self._clock_ns()
        if events:
            recv = self._router.recv_multipart
            for _ in range(4096):
                try:
                    ident, frame = recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                except ValueError:
                    self.malformed += 1
                    continue
                self._handle(ident, frame, now)
        self._deliver(self.venue.advance(self._clock_ns()))
        if self._roll.due(now):
            self._forget(self._finished.roll())

    def _forget(self, client_order_ids: list[str]) -> None:
        """The daily roll: drop finished orders from every per-order map (see the module doc)."""
        owner, active = self._owner, self._active_ns
        for coid in client_order_ids:
            owner.pop(coid, None)
            active.pop(coid, None)
        self.gate.forget(client_order_ids)
        self.forgotten += len(client_order_ids)

    def _handle(self, ident: bytes, frame: bytes, now: int) -> None:
        try:
            cmd = broker_command_decoder.decode(frame)
        except Exception:  # noqa: BLE001 - a bad frame from a peer is counted, never fatal
            self.malformed += 1
            return
        kind = type(cmd)
        if self._groups is not None and kind is not Heartbeat and cmd.group not in self._groups:
            self.refused_group += 1
            if kind is SubmitOrder:
                self._reply(ident, _refusal(cmd.intent, Reason.UNKNOWN_GROUP, now))
            return
        if kind is SubmitOrder:
            coid = cmd.intent.client_order_id
            verdict = self.gate.admit_submit(cmd.epoch, coid, cmd.group)
            if verdict is Admit.SEND:
                self._touch(coid, now)
                firsts = self.first_submit_ns.setdefault(cmd.group, {})
                if cmd.epoch not in firsts:
                    firsts[cmd.epoch] = time.time_ns()
                self._owner[coid] = (ident, cmd.group, self._takeovers)
                self._leader = ident
                self.submitted += 1
                self.venue.submit(cmd.intent, now)
            elif verdict is Admit.STALE_EPOCH:
                self._stale(cmd, "submit")
                self._reply(ident, _refusal(cmd.intent, Reason.STALE_EPOCH, now))
            else:
                self._owner[coid] = (ident, cmd.group, self._takeovers)  # the newest asker hears from now on
        elif kind is CancelOrder:
            if self.gate.fence(cmd.epoch, cmd.group):
                self.venue.cancel(cmd.client_order_id, now)
            else:
                self._stale(cmd, "cancel")
        elif kind is ReplaceOrder:
            coid = cmd.intent.client_order_id  # the replacement is an order like any other: sent once
            verdict = self.gate.admit_submit(cmd.epoch, coid, cmd.group)
            if verdict is Admit.SEND:
                self._touch(coid, now)
                self._owner[coid] = (ident, cmd.group, self._takeovers)
                self.submitted += 1
                self.venue.replace(cmd.client_order_id, cmd.intent, now)
            elif verdict is Admit.STALE_EPOCH:
                self._stale(cmd, "replace")
                self._reply(ident, _refusal(cmd.intent, Reason.STALE_EPOCH, now))
        elif kind is QueryOrders:
            # a look (take_over False: a standby catching up, a settle) changes nothing, so it is
            # answered whatever its epoch; a new leader's query is fenced and raises the floor
            if not cmd.take_over or self.gate.fence(cmd.epoch, cmd.group):
                if cmd.take_over:
                    self._leader = ident
                    self._takeovers += 1  # the group's orders sent before now are the new leader's to hear about
                    self._takeover[cmd.group] = (ident, self._takeovers)
                self._reply(ident, self._orders_report(cmd.since_ns, cmd.client_order_ids, cmd.query_id))
            else:
                self._stale(cmd, "query")
        elif kind is Heartbeat:
            self._reply(ident, Heartbeat(self.name, self.gate.epoch, cmd.seq, now))

    def _stale(self, cmd: SubmitOrder | CancelOrder | ReplaceOrder | QueryOrders, what: str) -> None:
        """A command under a fenced epoch (refused by the gate): who sent it is kept for `stats` and
        logged (rate-limited): a dead leader's last commands still in flight are expected around a
        failover; an engine that keeps sending under an old epoch is not."""
        floor = self.gate.epochs.get(cmd.group, 0)
        self.stale_from[cmd.engine] = self.stale_from.get(cmd.engine, 0) + 1
        self.last_stale = "%s from %s (group %r) epoch %d < %d" % (what, cmd.engine, cmd.group, cmd.epoch, floor)
        suppressed = self._stale_lines.allow(cmd.engine)
        if suppressed is not None:
            _log.warning("refused under a fenced epoch: %s (%d more from it not logged)", self.last_stale, suppressed)

    def _orders_report(self, since_ns: int, asked: list[str], query_id: int = 0) -> OrdersReport:
        """since_ns 0: every order and fill. Else the `asked` orders (any age) with their fills, and
        the orders and fills with activity since `since_ns`, found from the newest activity back
        (the work is proportional to the answer, not to the day); a venue without `snapshot_of` /
        `fills_since` / `fills_of` is filtered from its full lists."""
        venue = self.venue
        if since_ns <= 0:
            listed = venue.snapshot()
            return OrdersReport(listed, venue.fills(), self._sent_unlisted(asked, listed), query_id)
        keep = set(asked)
        floor = since_ns - _ORDER_SLACK_NS  # activity is recorded in (nearly) time order
        for coid, ts in reversed(self._active_ns.items()):
            if ts < floor:
                break
            if ts >= since_ns:
                keep.add(coid)
        snapshot_of = getattr(venue, "snapshot_of", None)
        orders = snapshot_of(keep) if snapshot_of is not None else [o for o in venue.snapshot() if o.client_order_id in keep]
        fills_since, fills_of = getattr(venue, "fills_since", None), getattr(venue, "fills_of", None)
        if fills_since is not None and fills_of is not None:
            recent = fills_since(since_ns)
            seen = {f.exec_id for f in recent}
            fills = recent + [f for f in fills_of(asked) if f.exec_id not in seen]
        else:
            fills = [f for f in venue.fills() if f.client_order_id in keep]
        return OrdersReport(orders, fills, self._sent_unlisted(asked, orders), query_id)

    def _sent_unlisted(self, asked: list[str], listed: list[OrderSnapshot]) -> list[str]:
        """Asked ids the gate took that the venue does not list (yet): in flight, never to be re-sent."""
        if not asked:
            return []
        have = {s.client_order_id for s in listed}
        known = self.gate.known
        return [c for c in asked if c not in have and known(c)]

    def _touch(self, coid: str, ts: int) -> None:
        """Record activity, newest last (the dict's order is the order of last activity)."""
        active = self._active_ns
        active.pop(coid, None)
        active[coid] = ts

    def _deliver(self, reports: list[ExecutionReport]) -> None:
        """Each report to the engine that hears its order, in the venue's order; one engine's reports
        of one wake-up go as one message of a frame each (an order's NEW and FILL: one send, one wake-up
        of this process's I/O thread and of the engine's, not two; engines read frame by frame)."""
        if not reports:
            return
        to: dict[bytes, list[bytes]] = {}
        owner, takeover = self._owner, self._takeover
        active = self._active_ns
        pop = active.pop
        finished = self._finished
        sent = self.gate.note_sent  # an order the venue reports on is at the venue: never sent again
        for rep in reports:
            sent(rep.client_order_id)
            pop(rep.client_order_id, None)  # keeps the dict in order of last activity
            active[rep.client_order_id] = rep.ts_ns or self._clock_ns()
            if rep.kind in DONE_KINDS:
                finished.add(rep.client_order_id)
            entry = owner.get(rep.client_order_id)
            if entry is None:
                ident = self._leader
            else:
                ident, group, seen = entry
                took = takeover.get(group)
                if took is not None and took[1] > seen:
                    ident = took[0]
            frames = to.get(ident)
            if frames is None:
                to[ident] = [ident, encode(rep)]
            else:
                frames.append(encode(rep))
        send = self._router.send_multipart
        for frames in to.values():
            send(frames)
        self.reports += len(reports)

    def _reply(self, ident: bytes, msg: object) -> None:
        self._router.send_multipart((ident, encode(msg)))

    def stats(self) -> BrokerStats:
        health = self.venue.health(self._clock_ns())
        return BrokerStats(
            submitted=self.submitted,
            reports=self.reports,
            epoch=self.gate.epoch,
            epochs=dict(self.gate.epochs),
            refused_stale=self.gate.refused_stale,
            stale_from=dict(self.stale_from),
            last_stale=self.last_stale,
            refused_duplicate=self.gate.refused_duplicate,
            refused_group=self.refused_group,
            malformed=self.malformed,
            orders_tracked=len(self._owner),
            forgotten=self.forgotten,
            first_submit_ns={g: dict(e) for g, e in self.first_submit_ns.items()},
            loop_errors=self.loop_errors,
            # the venue's own word: ok / reason (LOGIN_EXPIRED, NO_CONNECTION, BROKER_MAINTENANCE),
            # seconds left on a broker login (Schwab's refresh token: alert a day ahead), its counters
            venue_health=msgspec.structs.asdict(health),
            venue_ok=health.ok,
            login_expires_at_s=health.login_expires_at_s,  # None: no login to lapse (not exported)
            venue=self.venue.stats() if hasattr(self.venue, "stats") else {},
            last_error=self.last_error,
        )

    def positions(self) -> dict[str, float]:
        return self.call_on_loop(self.venue.positions)

    def balances(self) -> dict:
        return msgspec.structs.asdict(self.call_on_loop(self.venue.balances))

    def orders(self) -> list[OrderSnapshot]:
        return self.call_on_loop(self.venue.snapshot)

    def orders_of(self, client_order_ids: list[str]) -> list[OrderSnapshot]:
        """`orders()` of just these ids (unknown ones left out): the work and the answer in proportion
        to the ask, not to the day (a long run's venue holds hundreds of thousands)."""
        ids = set(client_order_ids)

        def take() -> list[OrderSnapshot]:
            snapshot_of = getattr(self.venue, "snapshot_of", None)
            if snapshot_of is not None:
                return snapshot_of(ids)
            return [o for o in self.venue.snapshot() if o.client_order_id in ids]

        return self.call_on_loop(take)

    def fills(self) -> list[ExecutionReport]:
        return self.call_on_loop(self.venue.fills)

    def link_generation(self) -> int:
        """How many times the venue's link to its broker came (back) up: its own count of connects
        when it keeps one (IBKR), else the not-ok -> ok turns of its health seen by these calls. A
        reconnect makes it grow; the reconciler runs after one. Read off the loop, like `stats`."""
        stats = getattr(self.venue, "stats", None)
        connects = stats().get("connects") if stats is not None else None
        if isinstance(connects, int):
            return connects
        ok = self.venue.health(self._clock_ns()).ok
        if ok and not self._link_ok:
            self._link_ups += 1
        self._link_ok = ok
        return self._link_ups

    def book(self, account: str = "") -> BrokerBook:
        """What the venue holds (orders, fills, positions, cash), for the reconciler: the broker's own
        view of the account when the venue reads one (`account_book`: waited for in this caller's
        thread, never on the loop), else the venue's book as this adapter keeps it."""
        reader = getattr(self.venue, "account_book", None)
        if reader is not None:
            return msgspec.structs.replace(reader(), broker=self.name, account=account)
        return self.call_on_loop(lambda: book_of_venue(self.venue, self.name, account, self._clock_ns(),
                                                       self._active_ns))


def book_of_venue(venue: Venue, broker: str, account: str, now_ns: int,
                  activity: dict[str, int] | None = None) -> BrokerBook:
    """A venue's book: its detailed orders when it gives them (`order_book`), else its snapshot, each
    with its last activity seen here (`activity`: so the reconciler leaves an order in flight alone);
    its fills with the strategy of their order where known; its cash when it gives one (`cash`)."""
    order_book = getattr(venue, "order_book", None)
    if order_book is not None:
        orders = order_book()
    else:
        orders = [Order(s.client_order_id, s.kind, s.cum_qty, s.leaves_qty) for s in venue.snapshot()]
    if activity:
        orders = [msgspec.structs.replace(o, ts_ns=activity[o.client_order_id]) if o.client_order_id in activity
                  else o for o in orders]
    strategy_of = {o.client_order_id: o.strategy_id for o in orders if o.strategy_id}
    fills = [fill_of_report(f, strategy_of.get(f.client_order_id, f.strategy_id)) for f in venue.fills()]
    cash = getattr(venue, "cash", None)
    return BrokerBook(broker=broker, account=account, fills=fills, orders=orders, positions=venue.positions(),
                      cash=cash() if cash is not None else None, as_of_ns=now_ns)


def _refusal(intent: OrderIntent, reason: Reason, now: int) -> ExecutionReport:
    return ExecutionReport(
        kind=ExecKind.REJECTED,
        client_order_id=intent.client_order_id,
        symbol=intent.symbol,
        side=intent.side,
        reason=reason,
        ts_ns=now,
    )
