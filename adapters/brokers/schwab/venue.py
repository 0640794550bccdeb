"""The Schwab venue: `node.venue.Venue` over Schwab's Trader API, hosted by the broker adapter.

The adapter's loop never waits on HTTP: `submit` / `cancel` / `replace` queue the command for a
worker thread, which does the I/O (`client.py`) and sends what it learns as `ExecutionReport`s
over an inproc socket the adapter polls (`socket`), handed out by `advance`.

- Identity. Schwab keeps no client order id, so the venue keeps the map client order id -> Schwab
  orderId in Redis (`<prefix>:orders`, one hash per account), written *before* the order is sent:
  an adapter restarted, or another adapter of the account after a failover, knows every order ever
  sent (`sent_ids`), so nothing is sent twice, and sweeps them. The orderId comes from the
  `Location` header of the 201.
- Status and fills come from reading the order right after each request, from Schwab's streamer
  (`stream.py`: an account-activity event naming one of our orders has the worker read that order
  at once) and from a sweep of the account's orders every `sweep_interval_ms` (the backstop of every
  lost answer and of whatever the stream misses). A fill is an execution leg, exec id
  `<orderId>-<activityId>-<leg>`, reported once however often and by whichever path it is seen.
- Ambiguity. A place with no answer (timeout, dropped connection, 5xx, a 201 without a usable
  Location) is UNKNOWN; the sweep adopts the order that matches it (same symbol, side, quantity,
  type, entered after it was sent) or, when no sweep for `unknown_settle_ms` shows one, reports it
  REJECTED NOT_AT_BROKER (it was never placed).
- Refused before sending (REJECTED with a reason, never sent): no login (LOGIN_EXPIRED), over the
  account's budget (BROKER_RATE_LIMITED), no connection (NO_CONNECTION), an order Schwab cannot take
  (SIZE_SPEC, PRICE_REQUIRED).
- The reconciler's view (`account_book`): Schwab's own list of the account's orders since the start
  of the previous UTC day, with their executions, and the positions and cash Schwab reports, read
  by the worker between two commands; fills are judged from the start of the current UTC day.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import queue
import threading
import time
from typing import Any

import msgspec
import redis
import zmq

from adapters.brokers.budget import RequestBudget
from adapters.brokers.schwab import parsing
from adapters.brokers.schwab.client import Outcome, SchwabClient, Sent, TokenStore
from adapters.brokers.schwab.config import SchwabConfig
from adapters.brokers.schwab.stream import ActivityStream
from adapters.brokers.worker_venue import WorkerVenue
from node.errors import BrokerError
from node.instruments import DEFAULT_MULTIPLIERS, Multipliers
from node.messages import ExecKind, ExecutionReport, OrderIntent, OrderSnapshot, encode
from node.reasons import Reason
from node.reconcile import BrokerBook
from node.venue import Balances, VenueHealth, refused, unknown

log = logging.getLogger("nae.broker.schwab")

_EPS = 1e-9
_SWEEP_LOOKBACK_S = 120.0  # orders entered this long before the oldest live one are swept too
_ACCOUNT_EVERY = 10  # sweeps between two account reads (balances, positions)
_DAY_S = 86_400
_WOKEN_MAX = 64  # stream wake-ups gathered before they are read even while commands wait
_EARLY_SWEEP_GAP_S = 0.1  # a sweep the stream asks for comes no sooner than this after the last one


class _Tracked(msgspec.Struct, kw_only=True):
    """The worker's view of one order; the persisted part is (order_id, intent, sent_s, done)."""

    intent: OrderIntent
    order_id: str = ""
    sent_s: float = 0.0
    done: bool = False
    kind: str = ""
    acked: bool = False
    unknown: bool = False
    cancel_wanted: bool = False
    exec_ids: set[str] = msgspec.field(default_factory=set)
    cum: float = 0.0
    px_sum: float = 0.0


class _Saved(msgspec.Struct, array_like=True):
    order_id: str
    intent: OrderIntent
    sent_s: float
    done: bool = False
    kind: str = ""  # the last kind reported (what a restarted adapter lists until the sweep says more)


_saved_decoder = msgspec.msgpack.Decoder(_Saved)


class SchwabVenue(WorkerVenue):
    def __init__(self, cfg: SchwabConfig, redis_prefix: str = "", multipliers: Multipliers | None = None) -> None:
        """`multipliers`: the node's (`node.instruments.node_multipliers`, its risk config): a notional
        is sized in contracts by them, and an option position Schwab names no multiplier for valued."""
        super().__init__("schwab")
        self.cfg = cfg
        self.multipliers = multipliers if multipliers is not None else DEFAULT_MULTIPLIERS
        self._prefix = redis_prefix or "nae:broker:schwab:" + cfg.account_hash
        self._commands: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        # written by the worker, read by the adapter's loop (single assignments)
        self._health = VenueHealth(ok=False, reason=Reason.NO_CONNECTION.value, detail="not started")
        self._balances = Balances()
        self._account_positions: dict[str, float] = {}
        self.worker: _Worker | None = None
        self.stream: ActivityStream | None = None

    # ---------------------------------------------------------------- lifecycle (adapter's loop thread)

    def open(self, ctx: zmq.Context) -> None:
        endpoint = self._bind(ctx)
        r = redis.Redis.from_url(self.cfg.redis_url)
        saved = {k.decode(): _saved_decoder.decode(v) for k, v in r.hgetall(self._prefix + ":orders").items()}
        for coid, s in saved.items():
            kind = ExecKind(s.kind) if s.kind and s.done else ExecKind.UNKNOWN
            self._book[coid] = OrderSnapshot(coid, kind, 0.0, 0.0)
        budget = RequestBudget(r, self._prefix + ":budget", self.cfg.order_requests_per_min, 60_000,
                               self.cfg.order_requests_per_day)
        client = SchwabClient(self.cfg, TokenStore(self.cfg), budget)
        self.worker = _Worker(self, client, r, saved, ctx, endpoint)
        self._thread = threading.Thread(target=self.worker.run, name="schwab-venue", daemon=True)
        self._thread.start()
        if self.cfg.stream:
            self.stream = ActivityStream(self.cfg, self._ask_stream_login, self._wake, self._resync)
            self.stream.start()

    def _ask_stream_login(self) -> concurrent.futures.Future:
        done: concurrent.futures.Future = concurrent.futures.Future()
        self._commands.put(("prefs", done, None))
        return done

    def _wake(self, order_id: str) -> None:
        self._commands.put(("wake", order_id, None))

    def _resync(self) -> None:
        self._commands.put(("resync", None, None))

    def close(self) -> None:
        if self.stream is not None:
            self.stream.stop()
            self.stream = None
        if self._thread is not None:
            self._commands.put(None)
            self._thread.join(timeout=10)
            self._thread = None
        self._unbind()

    # ---------------------------------------------------------------- the venue interface

    def submit(self, intent: OrderIntent, now_ns: int) -> None:
        self._commands.put(("submit", intent, None))

    def cancel(self, client_order_id: str, now_ns: int) -> None:
        self._commands.put(("cancel", client_order_id, None))

    def replace(self, client_order_id: str, intent: OrderIntent, now_ns: int) -> None:
        self._commands.put(("replace", client_order_id, intent))

    def balances(self) -> Balances:
        return self._balances

    def account_positions(self) -> dict[str, float]:
        """The positions Schwab itself reported at its last account read (the reconciler's view)."""
        return dict(self._account_positions)

    def account_book(self, timeout_s: float = 30.0) -> BrokerBook:
        """Schwab's own view of the account now, for the reconciler (see the module docstring). Read
        by the worker between two commands and waited for in the caller's thread (never the adapter's
        loop); a read Schwab does not answer is a BrokerError (the run fails, it is never a match)."""
        done: concurrent.futures.Future = concurrent.futures.Future()
        self._commands.put(("book", done, None))
        return done.result(timeout_s)

    def health(self, now_ns: int) -> VenueHealth:
        return self._health

    def stats(self) -> dict:
        w = self.worker
        out = {} if w is None else w.stats()
        if self.stream is not None:
            out.update(self.stream.stats())
        return out


class _Worker:
    """The venue's I/O thread: commands in order, then the sweep when it is due."""

    def __init__(
        self, venue: SchwabVenue, client: SchwabClient, r: redis.Redis, saved: dict[str, _Saved],
        ctx: zmq.Context, endpoint: str,
    ) -> None:
        self._venue = venue
        self._cfg = venue.cfg
        self._client = client
        self._redis = r
        self._ctx = ctx
        self._endpoint = endpoint
        self._orders: dict[str, _Tracked] = {}
        self._by_id: dict[str, str] = {}
        for coid, s in saved.items():
            # a live order is read again from the start: its ack and fills re-reported (consumers
            # dedupe on exec id), so the adapter's book is whole again after a restart
            t = _Tracked(intent=s.intent, order_id=s.order_id, sent_s=s.sent_s, done=s.done, kind=s.kind,
                         unknown=not s.order_id and not s.done)
            self._orders[coid] = t
            if s.order_id:
                self._by_id[s.order_id] = coid
        self._out: zmq.Socket | None = None
        self.sweeps = 0
        self.sweep_errors = 0
        self.unreadable = 0
        self.adopted = 0
        self.not_at_broker = 0
        self.cancel_refused = 0
        self.stream_reads = 0
        self._woken: dict[str, None] = {}  # orderIds the stream named, read when the commands are done
        self._next_sweep = 0.0
        self._swept_at = 0.0

    def stats(self) -> dict:
        c = self._client
        return {
            "sweeps": self.sweeps, "sweep_errors": self.sweep_errors, "unreadable": self.unreadable,
            "adopted": self.adopted, "not_at_broker": self.not_at_broker, "cancel_refused": self.cancel_refused,
            "stream_reads": self.stream_reads, "token_refreshes": c.refreshes, "unauthorized": c.unauthorized, "throttled": c.throttled,
            "login_expires_in_s": c.login_expires_in_s(),
        }  # fmt: skip

    # ---------------------------------------------------------------- the thread

    def run(self) -> None:
        self._out = self._ctx.socket(zmq.PUSH)
        self._out.setsockopt(zmq.LINGER, 0)
        self._out.connect(self._endpoint)
        try:
            self._login()
            interval = self._cfg.sweep_interval_ms / 1000
            commands = self._venue._commands
            while True:
                wait = max(self._next_sweep - time.monotonic(), 0.0)
                try:
                    cmd = commands.get(timeout=wait)
                except queue.Empty:
                    cmd = ()
                if cmd is None:
                    return
                try:
                    if cmd:
                        self._command(*cmd)
                    if self._woken and (commands.empty() or len(self._woken) >= _WOKEN_MAX):
                        self._read_woken()
                    if time.monotonic() >= self._next_sweep:
                        self._sweep()
                        self._swept_at = time.monotonic()
                        self._next_sweep = self._swept_at + interval
                except Exception:  # noqa: BLE001 - the worker's loop boundary: counted, logged, carries on
                    self.sweep_errors += 1
                    log.exception("schwab: worker step failed")
                self._update_health()
        finally:
            self._client.close()
            self._out.close(0)

    def _login(self) -> None:
        try:
            self._client.connect()
        except Exception as exc:  # noqa: BLE001 - no token / no database: not logged in, said in health
            self._client.login_lapsed = True
            log.error("schwab: no usable login for account %s (%s)", self._cfg.account_hash, type(exc).__name__)
        self._update_health()

    def _update_health(self) -> None:
        c = self._client
        left = c.login_expires_in_s()
        if not c.logged_in():
            h = VenueHealth(ok=False, reason=Reason.LOGIN_EXPIRED.value, detail="the Schwab login lapsed: log in again",
                            login_expires_in_s=left, login_expires_at_s=c.login_expires_at_s())
        elif left is not None and left <= self._cfg.login_warn_before_s:
            h = VenueHealth(ok=True, detail="the Schwab login lapses within a day", login_expires_in_s=left,
                            login_expires_at_s=c.login_expires_at_s())
        else:
            h = VenueHealth(ok=True, login_expires_in_s=left, login_expires_at_s=c.login_expires_at_s())
        self._venue._health = h

    # ---------------------------------------------------------------- commands

    def _command(self, kind: str, arg: Any, intent: OrderIntent | None) -> None:
        if kind == "submit":
            self._submit(arg)
        elif kind == "cancel":
            self._cancel(arg)
        elif kind == "replace":
            self._replace(arg, intent)
        elif kind == "wake":
            self._wake(arg)
        elif kind == "resync":
            self._next_sweep = 0.0
        elif kind == "prefs":
            self._stream_login(arg)
        elif kind == "book":
            try:
                arg.set_result(self._account_book())
            except Exception as exc:  # noqa: BLE001 - the reconciler's run gets the error
                arg.set_exception(exc)

    def _stream_login(self, done: concurrent.futures.Future) -> None:
        """The streamer's URL and ids (user preferences) and the access token, for `stream.py`."""
        sent, token = self._client.preferences()
        if sent.outcome is Outcome.ANSWERED and sent.status == 200 and isinstance(sent.body, dict) and token:
            done.set_result((sent.body, token))
        else:
            done.set_exception(BrokerError("schwab: no streamer login (" + (sent.reason or str(sent.status)) + ")",
                                           Reason.NO_CONNECTION, retriable=True))

    def _wake(self, order_id: str) -> None:
        """The stream named `order_id`: ours and live -> read it soon; not known by id while a
        submit is UNKNOWN -> sweep now (it may be that order); anything else is not ours."""
        coid = self._by_id.get(order_id)
        if coid is not None:
            if not self._orders[coid].done:
                self._woken[order_id] = None
        elif any(t.unknown and not t.order_id for t in self._orders.values()):
            # soon, not at once: a burst of events must not become a burst of sweeps
            self._next_sweep = min(self._next_sweep, self._swept_at + _EARLY_SWEEP_GAP_S)

    def _read_woken(self) -> None:
        woken, self._woken = self._woken, {}
        for order_id in woken:
            t = self._orders[self._by_id[order_id]]
            if not t.done:
                self.stream_reads += 1
                self._read_one(t)

    def _account_book(self) -> BrokerBook:
        now = time.time()
        today = now - now % _DAY_S
        orders = self._client.orders(dt.datetime.fromtimestamp(today - _DAY_S, dt.timezone.utc))
        account = self._client.account()
        for sent in (orders, account):
            if sent.outcome is not Outcome.ANSWERED or sent.status != 200:
                raise BrokerError("schwab: the account could not be read (" + (sent.reason or str(sent.status)) + ")",
                                  Reason.NO_CONNECTION, retriable=True)
        if not isinstance(orders.body, list):
            raise BrokerError("schwab: the orders answer is not a list", Reason.VENUE_REJECT)
        ours = {t.order_id: (coid, t.intent.strategy_id) for coid, t in self._orders.items() if t.order_id}
        book, unreadable = parsing.account_book(orders.body, account.body, ours, int(today) * 1_000_000_000,
                                                time.time_ns(), self._venue.multipliers)
        self.unreadable += unreadable
        return book

    def _submit(self, intent: OrderIntent) -> None:
        coid = intent.client_order_id
        if coid in self._orders:
            return  # sent before (by this adapter or another of the account): never twice
        spec, why = parsing.order_spec(intent, self._venue.multipliers)
        t = _Tracked(intent=intent, sent_s=time.time())
        self._orders[coid] = t
        if spec is None:
            self._refuse(t, why)
            return
        self._save(coid, t)  # before it leaves: a restart knows it was (maybe) sent
        self._placed(t, self._client.place(spec))

    def _placed(self, t: _Tracked, sent: Sent) -> None:
        if sent.outcome is Outcome.NOT_SENT:
            self._refuse(t, sent.reason)
        elif sent.outcome is Outcome.AMBIGUOUS:
            self._unknown(t, sent.reason)
        elif sent.status in (200, 201):
            order_id = parsing.order_id_from_location(sent.location)
            if not order_id:
                self._unknown(t, Reason.TIMEOUT.value)  # placed, but which order is it? the sweep tells
                return
            self._bind(t, order_id)
            self._read_one(t)
        else:
            self._refuse(t, Reason.VENUE_REJECT.value)

    def _cancel(self, coid: str) -> None:
        t = self._orders.get(coid)
        if t is None or t.done:
            return
        if not t.order_id:
            t.cancel_wanted = True  # UNKNOWN: canceled once the sweep finds it
            return
        sent = self._client.cancel(t.order_id)
        if sent.outcome is Outcome.NOT_SENT or (sent.outcome is Outcome.ANSWERED and sent.status >= 400):
            self.cancel_refused += 1
            log.warning("schwab: cancel of %s not done (%s %s)", coid, sent.reason, sent.status)
        self._read_one(t)

    def _replace(self, coid: str, intent: OrderIntent | None) -> None:
        old = self._orders.get(coid)
        if intent is None or intent.client_order_id in self._orders:
            return
        new = _Tracked(intent=intent, sent_s=time.time())
        self._orders[intent.client_order_id] = new
        if old is None or old.done or not old.order_id:
            self._refuse(new, Reason.UNKNOWN_ORDER.value)
            return
        spec, why = parsing.order_spec(intent, self._venue.multipliers)
        if spec is None:
            self._refuse(new, why)
            return
        self._save(intent.client_order_id, new)
        self._placed(new, self._client.replace(old.order_id, spec))
        self._read_one(old)

    # ---------------------------------------------------------------- reading orders

    def _read_one(self, t: _Tracked) -> None:
        sent = self._client._request(lambda c: c.get_order(int(t.order_id), self._cfg.account_hash))
        if sent.outcome is Outcome.ANSWERED and sent.status == 200:
            order = parsing.read_order(sent.body)
            if order is not None:
                self._update(t, order)

    def _sweep(self) -> None:
        live = [t.sent_s for t in self._orders.values() if not t.done]
        if not live:
            if self.sweeps % _ACCOUNT_EVERY == 0:
                self._read_account()
            self.sweeps += 1
            return
        since = dt.datetime.fromtimestamp(min(live) - _SWEEP_LOOKBACK_S, dt.timezone.utc)
        sent = self._client.orders(since)
        if sent.outcome is not Outcome.ANSWERED or sent.status != 200 or not isinstance(sent.body, list):
            self.sweep_errors += 1
            return
        self.sweeps += 1
        unknown = sorted((t for t in self._orders.values() if t.unknown and not t.order_id), key=lambda t: t.sent_s)
        for obj in sent.body:
            order = parsing.read_order(obj)
            if order is None:
                self.unreadable += 1
                continue
            coid = self._by_id.get(order.order_id)
            if coid is None:
                t = next((u for u in unknown if parsing.matches(u.intent, order, self._venue.multipliers)), None)
                if t is None:
                    continue
                unknown.remove(t)
                self.adopted += 1
                self._bind(t, order.order_id)
                coid = t.intent.client_order_id
            self._update(self._orders[coid], order)
        settle = self._cfg.unknown_settle_ms / 1000
        now = time.time()
        for t in unknown:
            if now - t.sent_s >= settle:
                self.not_at_broker += 1
                self._refuse(t, Reason.NOT_AT_BROKER.value)
        if self.sweeps % _ACCOUNT_EVERY == 1:
            self._read_account()

    def _read_account(self) -> None:
        sent = self._client.account()
        if sent.outcome is Outcome.ANSWERED and sent.status == 200:
            cash, bp, equity = parsing.balances_of(sent.body)
            self._venue._balances = Balances(cash=cash, buying_power=bp, equity=equity)
            self._venue._account_positions = parsing.positions_of(sent.body)

    def _update(self, t: _Tracked, order: parsing.SchwabOrder) -> None:
        """Report what `order` says that `t` has not reported yet: the ack, new fills, the end."""
        if t.done:
            return
        intent = t.intent
        coid = intent.client_order_id
        if not t.acked:
            t.acked = True
            t.unknown = False
            self._emit(ExecutionReport(kind=ExecKind.NEW, client_order_id=coid, venue_order_id=order.order_id,
                                       symbol=intent.symbol, side=intent.side, leaves_qty=order.quantity,
                                       ts_ns=time.time_ns()))
        qty = order.quantity
        for f in order.fills:
            if f.exec_id in t.exec_ids:
                continue
            t.exec_ids.add(f.exec_id)
            t.cum += f.qty
            t.px_sum += f.qty * f.price
            full = t.cum >= qty - _EPS
            self._emit(ExecutionReport(
                kind=ExecKind.FILL if full else ExecKind.PARTIAL_FILL, client_order_id=coid,
                venue_order_id=order.order_id, exec_id=f.exec_id, symbol=intent.symbol, side=intent.side,
                last_qty=f.qty, last_px=f.price, cum_qty=t.cum, leaves_qty=max(qty - t.cum, 0.0),
                avg_px=t.px_sum / t.cum, ts_ns=time.time_ns(),
            ))  # fmt: skip
            if full:
                self._finish(t)
                return
        if order.kind is not None and order.kind is not ExecKind.FILL:
            self._emit(ExecutionReport(kind=order.kind, client_order_id=coid, venue_order_id=order.order_id,
                                       symbol=intent.symbol, side=intent.side, cum_qty=t.cum,
                                       avg_px=t.px_sum / t.cum if t.cum else 0.0, reason=order.reason,
                                       ts_ns=time.time_ns()))
            self._finish(t)
        elif t.cancel_wanted:
            t.cancel_wanted = False
            self._cancel(coid)

    # ---------------------------------------------------------------- state

    def _bind(self, t: _Tracked, order_id: str) -> None:
        t.order_id = order_id
        self._by_id[order_id] = t.intent.client_order_id
        self._save(t.intent.client_order_id, t)

    def _refuse(self, t: _Tracked, reason: str) -> None:
        t.unknown = False
        self._emit(refused(t.intent, reason, time.time_ns()))
        self._finish(t)

    def _unknown(self, t: _Tracked, reason: str) -> None:
        t.unknown = True
        self._emit(unknown(t.intent, reason, time.time_ns()))

    def _finish(self, t: _Tracked) -> None:
        t.done = True
        self._save(t.intent.client_order_id, t)

    def _save(self, coid: str, t: _Tracked) -> None:
        saved = _Saved(t.order_id, t.intent, t.sent_s, t.done, t.kind)
        self._redis.hset(self._venue._prefix + ":orders", coid, encode(saved))

    def _emit(self, rep: ExecutionReport) -> None:
        t = self._orders.get(rep.client_order_id)
        if t is not None:
            t.kind = rep.kind.value
        self._out.send(encode(rep))
