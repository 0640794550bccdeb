"""The reconciler against the paper venue, the real ledger (Redis streams -> PostgreSQL), the events
relay (ZeroMQ) and the validator's risk book: a fill dropped on the way, an order placed at the venue
behind the node's back, a position edited at the venue, a node killed between a fill and its ledger
row. Each is found, classified, resolved (booked once, or the strategy halted), nothing booked twice,
nothing sent to the venue."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis
import zmq

from actors.broker import book_of_venue
from actors.events_relay import EventsRelay
from actors.ledger import Ledger, LedgerConfig
from actors.reconciler import Reconciler
from adapters.paper.venue import PaperVenue
from node.config import NodeConfig, PaperVenueConfig, ReconcileConfig, StorageConfig
from node.messages import ExecutionReport, OrderIntent, OrderType, Side, encode, event_topic
from node.migrations import apply_migrations, create_database, drop_database
from node.risk import PreTradeRisk
from node.risk.book import QTY
from node.risk.config import throughput_limits
from node.streams import EVENTS_FIELD, pack_batch

SERVER_URL = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
pytestmark = pytest.mark.asyncio(loop_scope="session")  # the fixtures' clients live on the session loop


@pytest.fixture(scope="module")
async def database():
    name, url = await create_database(SERVER_URL, "nae_test_reconcile_")
    await apply_migrations(url)
    yield url
    await drop_database(SERVER_URL, name)


class Node:
    """The node's side, played in-process by its real parts: an "engine" that takes the venue's
    reports and publishes them (relay + events stream, as actors/engine.py does), the ledger, the
    validator's risk book following the relay, and the reconciler."""

    def __init__(self, database: str, reconcile: ReconcileConfig) -> None:
        tag = "test:reconcile:" + secrets.token_hex(4) + ":"
        self.storage = StorageConfig(redis_url=REDIS_URL, database_url=database, signals_stream=tag + "signals",
                                     events_stream=tag + "events", monitoring_stream=tag + "monitoring")
        self.cfg = NodeConfig(storage=self.storage, reconcile=reconcile)
        self.database = database
        self.venue = PaperVenue(PaperVenueConfig())
        self.relay = EventsRelay("127.0.0.1")
        ends = self.relay.start()
        ctx = zmq.Context.instance()
        self.pub = ctx.socket(zmq.PUB)  # the engine's
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.connect(ends["publish"])
        self.sub = ctx.socket(zmq.SUB)  # the validator's
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(ends["events"])
        prices = {s.symbol: s.price for s in PaperVenueConfig().symbols}
        self.risk = PreTradeRisk(throughput_limits(), list(prices), prices, 1e10)
        self.controls: list[tuple[str, str | None]] = []
        self.sent_to_venue = 0
        self.ledger = Ledger(self.storage, REDIS_URL, database, LedgerConfig(consumer="t-" + secrets.token_hex(3),
                                                                             block_ms=10))
        self.reconciler = Reconciler(self.cfg, REDIS_URL, database, self._books, self._control, ends["publish"])
        self.now = time.time_ns()
        self.n = 0

    async def _books(self):
        return [book_of_venue(self.venue, "paper", "paper-acct", time.time_ns())]

    async def _control(self, state: str, strategy_id: str | None, by: str = "") -> None:
        self.controls.append((state, strategy_id))

    async def start(self) -> None:
        await self.ledger.start()
        await self.reconciler.start()
        await self._wait_relay()

    async def _wait_relay(self) -> None:
        """PUB/SUB joins late: probe until the validator's SUB hears the engine's PUB."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.pub.send_multipart((b"probe/", b""))
            if self.sub.poll(50):
                while self.sub.poll(10):
                    self.sub.recv_multipart()
                return
        raise AssertionError("relay never joined")

    def order(self, symbol: str, side: Side, qty: float, strategy: str = "s1", coid: str | None = None,
              request_id: str | None = None) -> str:
        self.n += 1
        coid = coid or "NAE-test%06d-0" % self.n
        self.venue.submit(OrderIntent(client_order_id=coid, signal_id="sig%d" % self.n,
                                      request_id=request_id if request_id is not None else "r%d" % self.n,
                                      strategy_id=strategy, symbol=symbol, side=side, order_type=OrderType.MARKET,
                                      quantity=qty, max_slippage=0.05), self.now)
        self.sent_to_venue += 1
        return coid

    def venue_reports(self) -> list[ExecutionReport]:
        self.now += 10_000_000
        return self.venue.advance(self.now)

    async def engine_publishes(self, reports: list[ExecutionReport], to_relay: bool = True,
                               to_stream: bool = True) -> None:
        """As the engine does: enrich, publish on the relay, append to execution.events."""
        out = [msgspec.structs.replace(r, strategy_id="s1", request_id="", signal_id="") for r in reports]
        payloads = [encode(r) for r in out]
        if to_relay:
            for r, p in zip(out, payloads):
                self.pub.send_multipart((event_topic(r.kind, r.strategy_id), p))
        if to_stream and payloads:
            client = aioredis.from_url(REDIS_URL)
            await client.xadd(self.storage.events_stream, {EVENTS_FIELD: pack_batch(payloads)})
            await client.aclose()

    def validator_takes_fills(self) -> int:
        """The validator's loop: every report on the relay into the risk book (deduped on exec_id)."""
        n = 0
        while self.sub.poll(100):
            topic, payload = self.sub.recv_multipart()
            if topic.startswith(b"probe"):
                continue
            rep = msgspec.msgpack.decode(payload, type=ExecutionReport)
            self.risk.on_fill(rep, rep.strategy_id)
            n += 1
        return n

    def risk_position(self, symbol: str) -> float:
        return float(self.risk.book.sf[QTY, self.risk.book.sym_ids[symbol]])

    async def drain(self) -> None:
        await self.ledger.drain(idle_reads=2)

    async def fetch(self, sql: str, *args):
        conn = await asyncpg.connect(self.database)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def close(self) -> None:
        await self.reconciler.stop()
        await self.ledger.close()
        self.pub.close(0)
        self.sub.close(0)
        self.relay.stop()
        client = aioredis.from_url(REDIS_URL)
        await client.delete(self.storage.signals_stream, self.storage.events_stream, self.storage.monitoring_stream)
        await client.aclose()


async def _truncate(database: str) -> None:
    conn = await asyncpg.connect(database)
    await conn.execute("TRUNCATE orders, fills, order_events, reconciliation_results, reconciliation_runs")
    await conn.close()


@pytest.fixture
async def node(database):
    await _truncate(database)
    n = Node(database, ReconcileConfig(settle_ms=0, reconcile_every_secs=0))
    await n.start()
    yield n
    await n.close()


async def _fill_rows(node: Node) -> dict[str, int]:
    rows = await node.fetch("SELECT exec_id, count(*) AS n FROM fills GROUP BY exec_id")
    return {r["exec_id"]: r["n"] for r in rows}


async def test_a_fill_dropped_on_the_way_is_found_booked_once_and_the_books_then_match(node):
    node.order("AAPL", Side.BUY, 1_250.0)  # walks three levels of 500: three fills
    reports = node.venue_reports()
    fills = [r for r in reports if r.last_qty > 0]
    assert len(fills) >= 2
    dropped = fills[1]
    await node.engine_publishes([r for r in reports if r is not dropped])
    await node.drain()
    node.validator_takes_fills()

    run = await node.reconciler.reconcile("test")
    assert run.counts == {"MISSING_FILL": 1} and not run.matched
    assert run.discrepancies[0].exec_id == dropped.exec_id and run.discrepancies[0].broker_qty == dropped.last_qty
    assert run.booked == 1 and run.actions == [] and node.controls == []
    await node.drain()
    assert node.validator_takes_fills() == 1
    assert node.risk_position("AAPL") == pytest.approx(node.venue.positions()["AAPL"])
    assert await _fill_rows(node) == {f.exec_id: 1 for f in fills}
    order = (await node.fetch("SELECT cum_qty, state FROM orders WHERE client_order_id = $1", dropped.client_order_id))[0]
    assert order["cum_qty"] == pytest.approx(1_250.0) and order["state"] == "FILL"

    again = await node.reconciler.reconcile("test")
    assert again.matched and again.booked == 0 and again.counts == {}
    assert node.sent_to_venue == 1 and len(node.venue.snapshot()) == 1  # nothing was ever sent by the reconciler

    rows = await node.fetch("SELECT symbol, strategy_id, matched, detail FROM reconciliation_results WHERE run_id = $1",
                            run.run_id)
    bad = [r for r in rows if not r["matched"]]
    assert len(bad) == 1 and json.loads(bad[0]["detail"])["discrepancies"][0]["kind"] == "MISSING_FILL"
    runs = await node.fetch("SELECT run_id, matched, report_md FROM reconciliation_runs ORDER BY started_at")
    assert [r["matched"] for r in runs] == [False, True]
    assert "MISSING_FILL" in runs[0]["report_md"] and dropped.exec_id in runs[0]["report_md"]
    client = aioredis.from_url(REDIS_URL)
    events = [json.loads(f[b"m"]) for _, f in await client.xrange(node.storage.monitoring_stream)]
    await client.aclose()
    assert [(e["kind"], e["alert"]) for e in events] == [("reconciliation", True), ("reconciliation", False)]


async def test_an_order_placed_at_the_venue_behind_the_nodes_back_is_adopted_never_resent(node):
    coid = node.order("MSFT", Side.SELL, 120.0, strategy="", coid="MANUAL-1", request_id="")
    reports = node.venue_reports()  # the node never hears of it
    n_fills = len([r for r in reports if r.last_qty > 0])

    run = await node.reconciler.reconcile("test")
    assert run.counts == {"ORDER_UNKNOWN_TO_NODE": 1, "FILL_UNKNOWN_TO_LEDGER": n_fills}
    assert run.booked == 1 + n_fills and run.actions == []
    await node.drain()
    assert node.validator_takes_fills() == 1 + n_fills
    assert node.risk_position("MSFT") == pytest.approx(-120.0)
    order = (await node.fetch("SELECT strategy_id, cum_qty, state FROM orders WHERE client_order_id = $1", coid))[0]
    assert order["strategy_id"] == "EXTERNAL" and order["cum_qty"] == pytest.approx(120.0) and order["state"] == "FILL"
    assert sum((await _fill_rows(node)).values()) == n_fills

    again = await node.reconciler.reconcile("test")
    assert again.matched and again.booked == 0
    await node.drain()
    assert node.validator_takes_fills() == 0
    assert sum((await _fill_rows(node)).values()) == n_fills
    assert node.sent_to_venue == 1 and len(node.venue.snapshot()) == 1


async def test_a_position_edited_at_the_venue_is_drift_and_halts_the_strategies_holding_it(node):
    node.order("AAPL", Side.BUY, 50.0, strategy="s1")
    await node.engine_publishes(node.venue_reports())
    await node.drain()
    node.venue.adjust_position("AAPL", 7.0)

    run = await node.reconciler.reconcile("test")
    assert run.counts == {"POSITION_DRIFT": 1}
    d = run.discrepancies[0]
    assert (d.symbol, d.node_qty, d.broker_qty) == ("AAPL", pytest.approx(50.0), pytest.approx(57.0))
    assert [(a.state, a.strategy_id) for a in run.actions] == [("HALTED", "s1")]
    assert node.controls == [("HALTED", "s1")]
    assert run.booked == 0
    row = (await node.fetch("SELECT ledger_qty, broker_qty, matched, action FROM reconciliation_results "
                            "WHERE run_id = $1 AND symbol = 'AAPL'", run.run_id))[0]
    assert (row["ledger_qty"], row["broker_qty"], row["matched"], row["action"]) == (
        pytest.approx(50.0), pytest.approx(57.0), False, "HALTED")
    again = await node.reconciler.reconcile("test")  # fails closed: a drift stays until a person fixes it
    assert again.counts == {"POSITION_DRIFT": 1} and node.controls[-1] == ("HALTED", "s1")


async def test_a_node_killed_between_a_fill_and_its_ledger_row_books_it_once(node):
    node.order("SPY", Side.BUY, 40.0)
    reports = node.venue_reports()
    # the engine published every report on the relay (the validator saw them) and died before its
    # execution.events append
    await node.engine_publishes(reports, to_stream=False)
    node.validator_takes_fills()
    before = node.risk_position("SPY")
    assert before == pytest.approx(40.0)
    assert await _fill_rows(node) == {}

    run = await node.reconciler.reconcile("test")
    n_fills = len([r for r in reports if r.last_qty > 0])
    assert run.counts == {"MISSING_FILL": n_fills} or run.counts == {"ORDER_UNKNOWN_TO_NODE": 1,
                                                                     "FILL_UNKNOWN_TO_LEDGER": n_fills}
    await node.drain()
    node.validator_takes_fills()
    assert node.risk_position("SPY") == pytest.approx(before)  # the risk book deduped on exec_id
    assert await _fill_rows(node) == {r.exec_id: 1 for r in reports if r.last_qty > 0}
    order = (await node.fetch("SELECT strategy_id, cum_qty FROM orders WHERE client_order_id = $1",
                              reports[0].client_order_id))[0]
    assert order["strategy_id"] == "s1" and order["cum_qty"] == pytest.approx(40.0)
    assert (await node.reconciler.reconcile("test")).matched


async def test_drift_scope_node_halts_the_node_and_reducing_is_configurable(database, tmp_path):
    await _truncate(database)
    n = Node(database, ReconcileConfig(settle_ms=0, reconcile_every_secs=0, drift_scope="node", on_drift="REDUCING",
                                       reports_dir=str(tmp_path)))
    await n.start()
    try:
        n.venue.adjust_position("QQQ", -3.0)
        run = await n.reconciler.reconcile("test")
        assert run.counts == {"POSITION_DRIFT": 1}
        assert n.controls == [("REDUCING", None)]
        report = (tmp_path / (run.run_id + ".md")).read_text()
        assert run.report_path.endswith(run.run_id + ".md") and "**MISMATCH**" in report
        assert "REDUCING node-wide" in report and "| POSITION_DRIFT | QQQ |" in report
    finally:
        await n.close()


async def test_a_broker_that_does_not_answer_is_a_failed_run_never_a_match(node):
    async def broken():
        raise TimeoutError("broker silent")

    node.reconciler._broker_books = broken
    run = await node.reconciler.reconcile("test")
    assert not run.matched and "TimeoutError" in run.error and node.controls == []
    assert node.reconciler.stats().errors == 1
    rows = await node.fetch("SELECT matched, error FROM reconciliation_runs WHERE run_id = $1", run.run_id)
    assert rows[0]["matched"] is False and "broker silent" in rows[0]["error"]
    # before the node trades, a run that cannot compare halts the node: it never starts blind
    startup = await node.reconciler.reconcile("startup", act=False)
    assert [(a.state, a.strategy_id) for a in startup.actions] == [("HALTED", None)] and node.controls == []


async def test_the_schedule_runs_every_reconcile_every_secs_until_stopped(database):
    await _truncate(database)
    n = Node(database, ReconcileConfig(settle_ms=0, reconcile_every_secs=1))
    await n.start()
    try:
        task = asyncio.ensure_future(n.reconciler.run())
        deadline = time.monotonic() + 30
        while n.reconciler.stats().runs < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert n.reconciler.stats().runs >= 2 and n.reconciler.stats().last_trigger == "schedule"
        assert n.reconciler.stats().last_matched is True
        await n.reconciler.stop()
        await asyncio.wait_for(task, 5)
    finally:
        await n.close()


async def test_a_broker_book_with_a_non_finite_number_is_a_failed_run_not_a_drift(node):
    async def garbled():
        book = book_of_venue(node.venue, "paper", "paper-acct", time.time_ns())
        return [msgspec.structs.replace(book, positions={"AAPL": float("nan")})]

    node.reconciler._broker_books = garbled
    run = await node.reconciler.reconcile("test")
    assert not run.matched and run.error.startswith("ValueError: BROKER_BOOK_INVALID") and node.controls == []
    assert run.booked == 0


async def test_a_broker_reconnect_runs_a_reconciliation(database):
    await _truncate(database)
    n = Node(database, ReconcileConfig(settle_ms=0, reconcile_every_secs=0, reconnect_poll_ms=50))
    generation = {"paper": 1}

    async def links():
        return dict(generation)

    n.reconciler._links = links
    await n.start()
    try:
        task = asyncio.ensure_future(n.reconciler.run())
        await asyncio.sleep(0.5)
        assert n.reconciler.stats().runs == 0  # no schedule, no reconnect: no run
        generation["paper"] = 2  # the adapter's link to its broker came back up
        deadline = time.monotonic() + 20
        while n.reconciler.stats().runs < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert n.reconciler.stats().last_trigger == "reconnect" and n.reconciler.stats().runs == 1
        await asyncio.sleep(0.3)
        assert n.reconciler.stats().runs == 1  # once per reconnect
        await n.reconciler.stop()
        await asyncio.wait_for(task, 5)
    finally:
        await n.close()


async def test_cash_the_paper_account_disagrees_with_is_cash_drift(database):
    await _truncate(database)
    n = Node(database, ReconcileConfig(settle_ms=0, reconcile_every_secs=0))
    n.venue = PaperVenue(PaperVenueConfig(starting_cash_usd=999_000.0))  # the node believes 1,000,000
    await n.start()
    try:
        n.order("AAPL", Side.BUY, 50.0)
        await n.engine_publishes(n.venue_reports())
        await n.drain()
        run = await n.reconciler.reconcile("test")
        assert run.counts == {"CASH_DRIFT": 1} and run.actions == []  # an alert, not a halt
        d = run.discrepancies[0]
        assert d.broker_qty == pytest.approx(n.venue.cash()) and d.node_qty == pytest.approx(n.venue.cash() + 1_000.0)
    finally:
        await n.close()


async def test_an_order_the_engine_logged_and_the_ledger_has_not_written_yet_is_never_adopted(node):
    """The ledger behind the stream (its reads linger up to 100 ms): the node's own filled order is
    at the venue and in `execution.events`, not yet in `orders`. Adopting it booked a NEW (ADOPTED)
    after its FILL, and the ledger kept the later report: the order open for good (a STATUS_MISMATCH
    every run after, seen in CI). The reconciler books neither it nor its fills, and the run is not a
    mismatch: they are in flight (after a failover under load one run reported ~900 such fills)."""
    coid = node.order("AAPL", Side.BUY, 100.0)
    await node.engine_publishes(node.venue_reports())  # logged; the ledger has not drained

    run = await node.reconciler.reconcile("test")
    # in flight between the log and the ledger, not a mismatch: the order and its fill
    assert run.booked == 0 and run.matched and run.counts == {} and run.in_flight == 2, (run.counts, run.in_flight)
    await node.drain()
    order = (await node.fetch("SELECT state FROM orders WHERE client_order_id = $1", coid))[0]
    assert order["state"] == "FILL"
    again = await node.reconciler.reconcile("test")
    assert again.matched and again.booked == 0
