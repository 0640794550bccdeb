"""The reconciler: the node's books (the PostgreSQL ledger) against every broker account's, on a
schedule, at start-up, after failovers and reconnects, and on demand; it records, alerts, books what
the broker has and the node lacks, and fails closed on a drift.

Contract:
- `reconcile(trigger, act=True)` runs once (one at a time: a second caller waits and gets its own
  run): reads this node's fills and orders from the ledger (`node_id`, sql/114) and its opening book,
  then asks every broker account for its book (one adapter per account; in that order, so the
  broker's book is never older than the ledger). The first run of a node with no fills of its own
  takes its opening book from that answer (`node.reconcile.opening_of`, `reconciliation_openings`).
  It diffs the books (`node.reconcile.diff_books`: positions and cash from the opening book, fees the
  broker's per execution or the schedule's), compares PnL per symbol with the broker's valuation
  (`node.pnl.compare_pnl`), and then:
  * books, once, what the broker has and the node lacks (`node.reconcile.to_book`): the reports go
    to `execution.events` (the ledger writes them; its unique keys make a second write a no-op)
    and to the events relay (the validator's positions, Optimus; they dedupe on exec_id). Nothing
    is ever sent to a broker. An exec_id booked once is never booked again by this process.
  * a drift the broker's fills do not explain (`node.reconcile.DRIFTS`) moves each strategy it
    names (or the node, when it names none or `drift_scope = "node"`) to `on_drift` through the
    validator's control path (`control(state, strategy_id)`); with `act=False` (start-up, before
    the validator runs) the actions are returned for the caller to apply.
  * writes `reconciliation_results` (one row per symbol and per strategy a discrepancy names) and
    `reconciliation_runs` (the summary and the Markdown report), appends an event to the
    monitoring stream (kind `reconciliation`, `alert: true` on a mismatch), counts per kind.
- A broker or store error is the run's `error` (counted, logged once per run, never raised past
  the loop boundary): a run that could not compare anything is not a match, and at start-up
  (trigger `startup`) it halts the node: it never starts trading blind. Before it halts, the
  start-up run tries again (`[reconcile] startup_attempts`, the waits doubling from
  `startup_retry_ms` up to `startup_retry_max_ms`; each try is a run of its own, recorded and
  logged): a broker adapter that is restarting answers within seconds.
- The halts it places name it (`SetState.by`, `node.reconcile_halts`). A RECONCILE_FAILED halt is
  lifted by the reconciler itself (`lift`, the validator's `lift_states`) at the first later run
  that compares the books and finds nothing that fails closed; while one of its own is in force,
  it runs again every `startup_retry_max_ms` instead of waiting for the schedule. A drift halt, or
  any state an operator set since, is never lifted here: it stays for an operator.
- `run()` repeats every `reconcile_every_secs` until `stop()`, and runs once (trigger `reconnect`)
  whenever a broker adapter's link generation grows (`links`, polled every `reconnect_poll_ms`: a
  reconnect to the broker); `stats()` never blocks.

Plain asyncio; Ray is applied in actors/ray_actors.py.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import time
from collections import Counter
from typing import Any, Awaitable, Callable

import asyncpg
import msgspec
import orjson
import redis.asyncio as aioredis
import zmq

from node.config import NodeConfig
from node.messages import ExecKind, ExecutionReport, Side, encode, event_topic
from node.migrations import apply_migrations
from node.instruments import node_multipliers
from node.modes import without_shadow
from node.pnl import FeeSchedule, compare_pnl, opening_fills, pnl_by_strategy_symbol, totals_by_strategy
from node.reconcile import (
    ADOPTED,
    BOOKABLE,
    DRIFTS,
    BrokerBook,
    BrokerPnl,
    Diff,
    DiffConfig,
    Fill,
    NodeBook,
    Opening,
    Order,
    cash_of,
    diff_books,
    is_finite_book,
    opening_of,
    settle_logged,
    to_book,
)
from node.reconcile_halts import (
    FAILED_BY,
    FAILED_REASON,
    StartupRetry,
    by_of,
    lifts_failed_halt,
    startup_retry_delay,
)
from node.reconcile_report import RESULT_COLUMNS, Action, RunSummary, count_kinds, markdown, result_rows
from node.stats import ReconcilerStats
from node.streams import EVENTS_FIELD, READ_PAGE, logged_since_ms, pack_batch, unpack_reports

log = logging.getLogger("nae.reconciler")

#: the trigger of the run before the node trades: if it cannot compare, the node starts HALTED
STARTUP = "startup"

BrokerBooks = Callable[[], Awaitable[list[BrokerBook]]]
Links = Callable[[], Awaitable[dict[str, int]]]
Control = Callable[[str, "str | None", str], Awaitable[Any]]  # (state, strategy or None, by)
Lift = Callable[[str], Awaitable[dict]]  # by -> {"lifted": [targets]}: the validator's `lift_states`

# the node's own rows (sql/114), and those written before rows named their node ('': a database
# one node used before the migration keeps its history)
_FILLS_SQL = ("SELECT exec_id, client_order_id, strategy_id, symbol, side, qty, px, ts_ns, venue_order_id, fee "
              "FROM fills WHERE node_id IN ($1, '') ORDER BY ts_ns, exec_id")
_FEES_SQL = ("UPDATE fills AS f SET fee = u.fee FROM unnest($1::text[], $2::float8[]) AS u(exec_id, fee) "
             "WHERE f.exec_id = u.exec_id AND f.fee IS NULL")
_ORDERS_SQL = ("SELECT client_order_id, state, cum_qty, leaves_qty, strategy_id, symbol, side, venue_order_id, "
               "avg_px FROM orders WHERE node_id IN ($1, '')")
_OPENING_SQL = "SELECT cash, positions FROM reconciliation_openings WHERE node_id = $1"
_OPENING_INSERT = ("INSERT INTO reconciliation_openings (node_id, brokers, cash, positions, run_id) "
                   "VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (node_id) DO NOTHING")
_RUN_SQL = ("INSERT INTO reconciliation_runs (run_id, trigger, brokers, matched, counts, actions, booked, "
            "in_flight, took_ms, error, report_md, started_at) VALUES "
            "($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10, $11, to_timestamp($12))")
_STATES = {k.value: k for k in ExecKind}
_LOGGED_LOOKBACK = 5_000  # event batch entries read back for fills published already


class Reconciler:
    """See the module docstring."""

    def __init__(self, cfg: NodeConfig, redis_url: str, database_url: str, broker_books: BrokerBooks,
                 control: Control | None = None, publish_endpoint: str | None = None,
                 clock_ns: Callable[[], int] = time.time_ns, links: Links | None = None,
                 lift: Lift | None = None) -> None:
        self._cfg = cfg
        self._rc = cfg.reconcile
        self._redis_url = redis_url
        self._database_url = database_url
        self._broker_books = broker_books
        self._control = control
        self._publish_endpoint = publish_endpoint
        self._clock_ns = clock_ns
        self._links = links
        self._lift = lift
        self._retry = StartupRetry(attempts=self._rc.startup_attempts, first_ms=self._rc.startup_retry_ms,
                                   max_ms=self._rc.startup_retry_max_ms)
        #: a RECONCILE_FAILED halt of this process's may be in force: run again soon, lift it when clean
        self.failed_halt = False
        self._failed_at = 0.0
        self.lifted = 0  # RECONCILE_FAILED halts lifted (targets)
        self._link_seen: dict[str, int] = {}
        self._diff_cfg = DiffConfig(qty_tolerance=self._rc.qty_tolerance, px_tolerance=self._rc.px_tolerance,
                                    cash_tolerance=self._rc.cash_tolerance_usd,
                                    settle_ns=self._rc.settle_ms * 1_000_000)
        #: cash and PnL at the node's contract multipliers (its risk config), as the paper venue's account
        self._mult = node_multipliers(cfg.risk)
        self._fees = FeeSchedule(per_share_usd=self._rc.fee_per_share_usd, bps_of_notional=self._rc.fee_bps,
                                 min_per_fill_usd=self._rc.fee_min_per_fill_usd)
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._redis: aioredis.Redis | None = None
        self._pub: zmq.Socket | None = None
        self._booked: set[str] = set()  # exec ids (and adopted order ids) this process booked
        self.runs = 0
        self.mismatched_runs = 0
        self.errors = 0
        self.booked = 0
        self.discrepancies: Counter[str] = Counter()
        self.last: RunSummary | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Migrations, the Redis client, the PUB to the events relay. Idempotent."""
        if self._redis is None:
            await apply_migrations(self._database_url)
            self._redis = aioredis.from_url(self._redis_url, socket_connect_timeout=2.0, socket_timeout=5.0)
        if self._pub is None and self._publish_endpoint:
            pub = zmq.Context.instance().socket(zmq.PUB)
            pub.setsockopt(zmq.LINGER, 1000)
            pub.setsockopt(zmq.SNDHWM, 0)
            pub.connect(self._publish_endpoint)
            self._pub = pub
            await asyncio.sleep(0.2)  # the relay's subscriptions reach a new publisher after its handshake

    async def run(self) -> None:
        """Every `reconcile_every_secs` (0: never on a schedule), and after every reconnect of a
        broker (when `links` is given), until `stop()`."""
        every = self._rc.reconcile_every_secs
        poll = self._rc.reconnect_poll_ms / 1000 if self._links is not None else None
        if not every and poll is None and not self.failed_halt:
            return
        self._stopping.clear()
        if poll is not None:
            await self._reconnected()  # the generations as they are now: what grows after is a reconnect
        next_run = time.monotonic() + every if every else math.inf
        while not self._stopping.is_set():
            due = next_run
            if self.failed_halt:  # its own RECONCILE_FAILED halt in force: look again soon, not in a minute
                due = min(due, self._failed_at + self._retry.max_ms / 1000)
            wait = min(due - time.monotonic(), poll if poll is not None else math.inf)
            try:
                await asyncio.wait_for(self._stopping.wait(), max(wait, 0.0))
                return
            except asyncio.TimeoutError:
                pass
            if poll is not None and await self._reconnected():
                await self.reconcile("reconnect")
            if time.monotonic() >= next_run:
                await self.reconcile("schedule")
                next_run = time.monotonic() + every if every else math.inf
            elif self.failed_halt and time.monotonic() >= self._failed_at + self._retry.max_ms / 1000:
                self._failed_at = time.monotonic()
                await self.reconcile("retry")

    async def _reconnected(self) -> bool:
        """Whether a broker's link generation grew since the last look (a broker not answering: no)."""
        try:
            now = await self._links()  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - the loop boundary: looked at again next poll
            log.debug("reconciler: broker links not read: %s", exc)
            return False
        grew = any(gen > self._link_seen.get(name, gen) for name, gen in now.items())
        self._link_seen.update(now)
        return grew

    async def stop(self) -> None:
        self._stopping.set()
        if self._pub is not None:
            self._pub.close()
            self._pub = None
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except Exception:  # noqa: BLE001 - closing
                pass
            self._redis = None

    # ---------------------------------------------------------------- one run

    async def reconcile(self, trigger: str = "manual", act: bool = True) -> RunSummary:
        """One run (at start-up: tried again, bounded, before it halts); then, when it compared the
        books clean, the RECONCILE_FAILED halts lifted (`node.reconcile_halts`)."""
        async with self._lock:
            failed = 0
            while True:
                last_try = trigger != STARTUP or startup_retry_delay(failed + 1, self._retry) is None
                summary = await self._reconcile(trigger, act, halt_on_error=last_try)
                if not summary.error or last_try:
                    break
                failed += 1
                delay = startup_retry_delay(failed, self._retry)
                log.warning("reconciliation %s (startup) could not compare (try %d of %d): trying again in %.1f s",
                            summary.run_id, failed, self._retry.attempts, delay)
                if await self._stopped_within(delay or 0.0):
                    return summary
            if any(a.reason == FAILED_REASON for a in summary.actions):
                self.failed_halt, self._failed_at = True, time.monotonic()
            elif lifts_failed_halt(summary) and act:
                await self._lift_failed(summary)
            return summary

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False

    async def _lift_failed(self, summary: RunSummary) -> None:
        """The halts this reconciler placed because it could not compare (and nothing set since):
        back to ACTIVE now that a run compared clean. A validator that does not answer: next run."""
        if self._lift is None:
            return
        try:
            done = await self._lift(FAILED_BY)
        except Exception as exc:  # noqa: BLE001 - the loop boundary: tried again at the next clean run
            log.warning("reconciliation %s: RECONCILE_FAILED halts not lifted: %s", summary.run_id, exc)
            return
        self.failed_halt = False
        lifted = list(done.get("lifted") or [])
        if lifted:
            self.lifted += len(lifted)
            summary.lifted = lifted
            log.warning("reconciliation %s (%s) compared clean: lifted the RECONCILE_FAILED halt of %s",
                        summary.run_id, summary.trigger, ", ".join(lifted))

    async def _reconcile(self, trigger: str, act: bool, halt_on_error: bool = True) -> RunSummary:
        started = self._clock_ns()
        t0 = time.perf_counter()
        run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started / 1e9)) + "-" + secrets.token_hex(3)
        summary = RunSummary(run_id=run_id, trigger=trigger, brokers=[], started_ns=started)
        diff: Diff | None = None
        pnl = None
        try:
            await self.start()
            # the ledger first, then the brokers: everything in the ledger came from a broker before,
            # so a fill made meanwhile is one the broker has and the ledger lacks (in flight, or
            # booked once), never a fill "unknown to the broker" that would halt a strategy
            fills, orders, opening, no_fee = await self._ledger_rows()
            books = await self._broker_books()
            if not books:  # no book is not an empty account: every ledger fill would be "unknown to the broker"
                raise LookupError("BROKER_BOOK_MISSING: no broker answered with its book")
            summary.brokers = [b.broker for b in books]
            broker = self._with_fees(without_shadow(merge_books(books), self._mult))  # shadow copies (node.modes) have no ledger
            if not (is_finite_book(broker) and all(math.isfinite(q) for q in broker.positions.values())):
                raise ValueError("BROKER_BOOK_INVALID: a quantity or price that is not a finite number")
            if opening is None and not fills:  # the node's first look at its accounts: its opening book
                opening = opening_of(broker, self._mult)
                await self._save_opening(opening, summary)
            # the comparison is pure CPU over the whole window (a second or more for a million fills):
            # on a thread, so the actor keeps answering its supervisor's calls (`alive`, `pid`) meanwhile
            node, diff = await asyncio.to_thread(self._compare, fills, orders, opening or Opening(), broker, no_fee)
            diff = await self._settle_logged(diff, broker)
            await self._record_fees(no_fee, broker)
            if self._rc.adopt:
                summary.booked = await self._book(diff, broker)
            summary.actions = self._actions(diff, node)
            if act and summary.actions:
                await self._apply(summary.actions)
            marks = {f.symbol: f.px for f in broker.fills}
            marks.update({sym: p.mark for sym, p in broker.pnl.items()})
            pnl = await asyncio.to_thread(pnl_by_strategy_symbol, opening_fills(opening or Opening()) + node.fills, marks,
                                           None, self._mult)
            summary.pnl = totals_by_strategy(pnl)
            summary.discrepancies = diff.discrepancies
            summary.counts = count_kinds(diff.discrepancies)
            summary.in_flight = diff.in_flight
            summary.matched = diff.matched
        except Exception as exc:  # loop boundary: the run failed; say so, never raise to the schedule
            self.errors += 1
            summary.matched = False
            text = str(exc).splitlines()[0][:300] if str(exc) else ""
            summary.error = type(exc).__name__ + (": " + text if text else "")
            log.warning("reconciliation %s (%s) failed: %s", run_id, trigger, summary.error)
            if trigger == STARTUP and halt_on_error:  # a node that could not compare its books does not start trading blind
                summary.actions = [Action(state="HALTED", reason=FAILED_REASON)]
                if act:
                    try:
                        await self._apply(summary.actions)
                    except Exception as exc2:  # noqa: BLE001 - the caller sees the actions in the summary
                        log.warning("reconciliation %s: HALTED not applied: %s", run_id, exc2)
        summary.took_ms = round((time.perf_counter() - t0) * 1e3, 1)
        report = markdown(summary, diff, pnl)
        await self._record(summary, diff, report)
        self.runs += 1
        if not summary.matched:
            self.mismatched_runs += 1
            log.warning("reconciliation %s (%s): MISMATCH %s actions %s", run_id, trigger, summary.counts,
                        [(a.state, a.strategy_id) for a in summary.actions])
        self.discrepancies.update(summary.counts)
        self.last = summary
        return summary

    async def _ledger_rows(self) -> tuple[list[Fill], list[Order], Opening | None, set[str]]:
        """This node's fills and orders (sql/114: `node_id`), its opening book if it has one, and
        the exec ids of the fills with no fee recorded yet."""
        node_id = self._cfg.node_id
        conn = await asyncpg.connect(self._database_url, timeout=5.0)
        try:
            fill_rows = await conn.fetch(_FILLS_SQL, node_id)
            order_rows = await conn.fetch(_ORDERS_SQL, node_id)
            row = await conn.fetchrow(_OPENING_SQL, node_id)
        finally:
            await conn.close()
        fills = [Fill(r[0], r[1], r[2], r[3], Side(r[4]), r[5], r[6], r[7], r[9] or 0.0, r[8]) for r in fill_rows]
        no_fee = {r[0] for r in fill_rows if r[9] is None}
        orders = [Order(r[0], _STATES.get(r[1], ExecKind.UNKNOWN), r[2], r[3], r[4], r[5], Side(r[6]), r[7], r[8])
                  for r in order_rows]
        opening = None
        if row is not None:
            held = orjson.loads(row["positions"])
            opening = Opening(positions={s: float(v[0]) for s, v in held.items()},
                              costs={s: float(v[1]) for s, v in held.items() if v[1] is not None}, cash=row["cash"])
        return fills, orders, opening, no_fee

    async def _node_book(self) -> NodeBook:
        """The node's side as a run sees it before the brokers answer (the bench's read path)."""
        fills, orders, opening, no_fee = await self._ledger_rows()
        return self._node_side(fills, orders, opening or Opening(), None, no_fee)

    def _compare(self, fills: list[Fill], orders: list[Order], opening: Opening, broker: BrokerBook,
                 no_fee: set[str]) -> tuple[NodeBook, Diff]:
        """The node's book and its diff with the broker's, PnL drift included (pure: run on a thread)."""
        node = self._node_side(fills, orders, opening, broker, no_fee)
        diff = diff_books(node, broker, self._diff_cfg, self._mult)
        named = {d.symbol for d in diff.discrepancies}  # another difference explains their PnL
        diff.discrepancies.extend(compare_pnl(node.fills, opening, broker.pnl, self._rc.pnl_tolerance_usd, named,
                                                self._mult))
        return node, diff

    def _node_side(self, fills: list[Fill], orders: list[Order], opening: Opening,
                   broker: BrokerBook | None, no_fee: set[str]) -> NodeBook:
        """The ledger's fills with their fees (the one recorded, else the broker's for the fills it
        lists, else the schedule's), from the opening positions; cash: the paper accounts'
        configured starting cash, else the opening cash, less what the fills cost."""
        if no_fee:
            fees = {f.exec_id: f.fee for f in broker.fills} if broker is not None else {}
            if any(fees.values()) or not self._fees.free:
                replace, schedule = msgspec.structs.replace, self._fees
                fills = [f if f.exec_id not in no_fee else replace(
                    f, fee=fees[f.exec_id] if f.exec_id in fees else schedule.fee(f.qty, f.px, self._mult.of(f.symbol))) for f in fills]
        start = paper_cash_baseline(self._cfg)
        if start is None:
            start = opening.cash
        cash = cash_of(start, fills, self._mult) if start is not None else None
        return NodeBook(fills=fills, orders=orders, opening_positions=opening.positions, cash=cash)

    async def _record_fees(self, no_fee: set[str], broker: BrokerBook) -> None:
        """The fees a broker reports per execution, on the ledger's fills that have none yet (they
        count in cash once the broker's window has moved past them)."""
        if not (broker.fees_reported and no_fee):
            return
        found = [(f.exec_id, f.fee) for f in broker.fills if f.exec_id in no_fee]
        if not found:
            return
        conn = await asyncpg.connect(self._database_url, timeout=5.0)
        try:
            await conn.execute(_FEES_SQL, [e for e, _ in found], [fee for _, fee in found])
        finally:
            await conn.close()

    def _with_fees(self, broker: BrokerBook) -> BrokerBook:
        """A broker whose fills carry no fees: the schedule's stand in (its cash paid them)."""
        if broker.fees_reported or self._fees.free:
            return broker
        schedule, replace = self._fees, msgspec.structs.replace
        return replace(broker, fills=[replace(f, fee=schedule.fee(f.qty, f.px, self._mult.of(f.symbol))) for f in broker.fills])

    async def _save_opening(self, opening: Opening, summary: RunSummary) -> None:
        held = {s: [q, opening.costs.get(s)] for s, q in opening.positions.items()}
        conn = await asyncpg.connect(self._database_url, timeout=5.0)
        try:
            await conn.execute(_OPENING_INSERT, self._cfg.node_id, ",".join(summary.brokers), opening.cash,
                               orjson.dumps(held).decode(), summary.run_id)
        finally:
            await conn.close()

    async def _book(self, diff: Diff, broker: BrokerBook) -> int:
        """Book, once, what the broker has and the node lacks: to `execution.events` (the ledger)
        first, then to the events relay (positions). Never to a broker."""
        if not any(d.kind in BOOKABLE for d in diff.discrepancies):
            return 0
        reports = [r for r in to_book(diff, broker, self._rc.external_strategy, self._clock_ns())
                   if _key(r) not in self._booked]  # what the events stream held left the diff before
        if not reports:
            return 0
        payloads = [encode(r) for r in reports]
        await self._redis.xadd(self._cfg.storage.events_stream, {EVENTS_FIELD: pack_batch(payloads)},
                               maxlen=self._cfg.storage.stream_maxlen, approximate=True)
        if self._pub is not None:
            for r, payload in zip(reports, payloads):
                self._pub.send_multipart((event_topic(r.kind, r.strategy_id), payload))
        self._booked.update(_key(r) for r in reports)
        self.booked += len(reports)
        return len(reports)

    async def _settle_logged(self, diff: Diff, broker: BrokerBook) -> Diff:
        """The bookable differences the events stream explains (logged, not yet in the ledger) are in
        flight, not a mismatch (`node.reconcile.settle_logged`): after a failover under load the
        ledger is seconds behind, and a run then reported ~900 fills "missing" that it had."""
        if not any(d.kind in BOOKABLE for d in diff.discrepancies):
            return diff
        logged, known = await self._logged(to_book(diff, broker, self._rc.external_strategy, self._clock_ns()))
        return settle_logged(diff, logged, known)

    async def _logged(self, reports: list[ExecutionReport]) -> tuple[set[str], set[str]]:
        """Of `reports`, the exec ids and the adopted orders' ids the events stream holds already: an
        engine published them and the ledger has not written them yet (its reads linger up to 100 ms;
        a new leader's recovery can outlast the settle time). Booking a fill again would publish the
        execution twice; adopting an order the node placed would restate it NEW (`ADOPTED`) after its
        FILL, and the ledger's row keeps the later report: a filled order left open for good."""
        execs = {r.exec_id for r in reports if r.exec_id}
        orders = {r.client_order_id for r in reports if r.reason == ADOPTED}
        if not (execs or orders):
            return set(), set()
        since_ms = logged_since_ms(reports)
        assert self._redis is not None
        found_execs: set[str] = set()
        found_orders: set[str] = set()
        top, left = "+", _LOGGED_LOOKBACK
        while left > 0:  # a page a command: one read of 5,000 batches held Redis, and the intake, for seconds
            want = min(READ_PAGE, left)
            entries = await self._redis.xrevrange(self._cfg.storage.events_stream, max=top, min=str(since_ms),
                                                  count=want)
            for _, fields in entries:
                for rep in unpack_reports(fields):
                    if rep.exec_id in execs:
                        found_execs.add(rep.exec_id)
                    if rep.client_order_id in orders and rep.reason != ADOPTED:
                        found_orders.add(rep.client_order_id)
            if len(entries) < want or (found_execs >= execs and found_orders >= orders):
                break
            left -= want
            top = "(" + entries[-1][0].decode()
        return found_execs, found_orders

    def _actions(self, diff: Diff, node: NodeBook) -> list[Action]:
        """Who a drift stops: each strategy it names, or the node (no strategy named, or node scope)."""
        drifts = [d for d in diff.discrepancies if d.kind in DRIFTS]
        if not drifts:
            return []
        state = self._rc.on_drift
        if self._rc.drift_scope == "node":
            return [Action(state=state, reason=_reason(drifts), symbols=_symbols(drifts))]
        holders = _holders(node)
        strategies: dict[str, list] = {}
        node_wide = []
        for d in drifts:
            names = [d.strategy_id] if d.strategy_id else sorted(holders.get(d.symbol, ()))
            if not names:
                node_wide.append(d)
            for name in names:
                strategies.setdefault(name, []).append(d)
        out = [Action(state=state, strategy_id=s, reason=_reason(ds), symbols=_symbols(ds))
               for s, ds in sorted(strategies.items())]
        if node_wide:
            out.append(Action(state=state, reason=_reason(node_wide), symbols=_symbols(node_wide)))
        return out

    async def _apply(self, actions: list[Action]) -> None:
        if self._control is None:
            return
        for a in actions:
            await self._control(a.state, a.strategy_id, by_of(a.reason))

    async def _record(self, summary: RunSummary, diff: Diff | None, report: str) -> None:
        """The rows, the run and its report, the monitoring event; a store error is logged, counted."""
        if self._rc.reports_dir:
            try:
                os.makedirs(self._rc.reports_dir, exist_ok=True)
                path = os.path.join(self._rc.reports_dir, summary.run_id + ".md")
                with open(path, "w") as fh:
                    fh.write(report)
                summary.report_path = path
            except OSError as exc:
                log.warning("reconciliation report not written: %s", exc)
        try:
            conn = await asyncpg.connect(self._database_url, timeout=5.0)
            try:
                async with conn.transaction():
                    if diff is not None:
                        rows = result_rows(summary.run_id, ",".join(summary.brokers), "", diff, summary.actions)
                        if rows:
                            await conn.copy_records_to_table("reconciliation_results", records=rows,
                                                             columns=RESULT_COLUMNS)
                    await conn.execute(
                        _RUN_SQL, summary.run_id, summary.trigger, ",".join(summary.brokers), summary.matched,
                        orjson.dumps(summary.counts).decode(), msgspec.json.encode(summary.actions).decode(),
                        summary.booked, summary.in_flight, summary.took_ms, summary.error, report,
                        summary.started_ns / 1e9)
            finally:
                await conn.close()
        except Exception as exc:  # noqa: BLE001 - the run's verdict still goes to the stream and the caller
            self.errors += 1
            log.warning("reconciliation %s not recorded in PostgreSQL: %s", summary.run_id, exc)
        event = {"kind": "reconciliation", "alert": not summary.matched, "run_id": summary.run_id,
                 "trigger": summary.trigger, "matched": summary.matched, "counts": summary.counts,
                 "actions": msgspec.to_builtins(summary.actions), "booked": summary.booked, "error": summary.error}
        try:
            if self._redis is not None:
                await self._redis.xadd(self._cfg.storage.monitoring_stream, {b"m": orjson.dumps(event)},
                                       maxlen=100_000, approximate=True)
        except Exception as exc:  # noqa: BLE001 - monitoring must not stop the reconciler
            log.warning("reconciliation event not on the monitoring stream: %s", exc)

    def stats(self) -> ReconcilerStats:
        last = self.last
        return ReconcilerStats(
            runs=self.runs, mismatched_runs=self.mismatched_runs, errors=self.errors, booked=self.booked,
            discrepancies=dict(self.discrepancies),
            last_run_id=last.run_id if last else "", last_matched=last.matched if last else None,
            last_took_ms=last.took_ms if last else 0.0, last_trigger=last.trigger if last else "",
            last_error=last.error if last else "", failed_halt=self.failed_halt, lifted=self.lifted,
        )  # fmt: skip


def paper_cash_baseline(cfg: NodeConfig) -> float | None:
    """The starting cash of the node's accounts when every one is an in-process paper venue (whose
    starting cash the config names), else None: the node then keeps no cash figure to compare."""
    accounts = {b.account_id: b for b in cfg.broker_list()}
    if not all(b.kind == "paper" for b in accounts.values()):
        return None
    return math.fsum(b.paper.starting_cash_usd for b in accounts.values())


def merge_books(books: list[BrokerBook]) -> BrokerBook:
    """Several accounts as one book (positions and cash summed, fills and orders together)."""
    if len(books) == 1:
        return books[0]
    positions: dict[str, float] = {}
    for b in books:
        for s, q in b.positions.items():
            positions[s] = positions.get(s, 0.0) + q
    cashes = [b.cash for b in books]
    cash = sum(c for c in cashes if c is not None) if all(c is not None for c in cashes) else None
    pnl: dict[str, BrokerPnl] = {}
    for b in books:
        for s, p in b.pnl.items():
            q = pnl.get(s)
            pnl[s] = p if q is None else _sum_pnl(q, p)
    return BrokerBook(broker=",".join(b.broker for b in books), fills=[f for b in books for f in b.fills],
                      orders=[o for b in books for o in b.orders], positions=positions, cash=cash,
                      fills_since_ns=max((b.fills_since_ns for b in books), default=0),
                      as_of_ns=min((b.as_of_ns for b in books), default=0),
                      fees_reported=all(b.fees_reported for b in books), pnl=pnl)


def _sum_pnl(a: BrokerPnl, b: BrokerPnl) -> BrokerPnl:
    """One symbol held in two accounts: quantities and PnL summed, cost weighted (None if either lacks it)."""
    def add(x: float | None, y: float | None) -> float | None:
        return None if x is None or y is None else x + y

    qty = a.qty + b.qty
    cost = None
    if a.avg_cost is not None and b.avg_cost is not None and abs(qty) > 1e-9:
        cost = (a.avg_cost * a.qty + b.avg_cost * b.qty) / qty
    return BrokerPnl(qty=qty, mark=b.mark, avg_cost=cost, unrealised=add(a.unrealised, b.unrealised),
                     realised=add(a.realised, b.realised))


def _holders(node: NodeBook) -> dict[str, set[str]]:
    """The strategies that traded each symbol (by the ledger): who a symbol's drift stops."""
    out: dict[str, set[str]] = {}
    for f in node.fills:
        if f.strategy_id:
            out.setdefault(f.symbol, set()).add(f.strategy_id)
    return out


def _reason(found: list) -> str:
    return "RECONCILE_" + found[0].kind + (" (+%d)" % (len(found) - 1) if len(found) > 1 else "")


def _symbols(found: list) -> list[str]:
    return sorted({d.symbol for d in found if d.symbol})


def _key(r: ExecutionReport) -> str:
    return r.exec_id or ("order:" + r.client_order_id)
