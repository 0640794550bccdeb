"""The reconciler against each broker fake behind a real broker adapter, whose `book` is the
broker's own view of the account: Schwab (the local Schwab fake, real HTTP through schwab-py: its
orders, executions, positions and cash) and IBKR (the TWS fake, real ib_async over the TWS framing:
the day's executions and the positions), with the real ledger (Redis stream -> PostgreSQL): a fill
dropped on the way, an order placed at the broker behind the node's back, a position edited at the
broker, a node killed between a fill and its ledger row. Each is found, classified, written to
reconciliation_results and resolved (booked once, adopted and never sent, or the strategy
halted); nothing is booked twice, nothing is sent to the broker by the reconciler. Cash (from the
opening book the first run takes, with each broker's commissions) and PnL (against the broker's
own valuation: Schwab's averagePrice / open PnL, TWS's portfolio) are compared at each fake, for
stocks and for an option bought and sold by its OCC symbol (valued at its contract multiplier by the
fake as by the broker; a node configured with another multiplier is CASH_DRIFT and PNL_DRIFT).
(The paper venue's cases: tests/integration/test_reconcile_paper.py.)"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time

import asyncpg
import msgspec
import pytest
import redis
import zmq

import tests.integration.test_schwab_venue as sv
from actors.broker import BrokerHost
from actors.ledger import Ledger, LedgerConfig
from actors.reconciler import Reconciler
from adapters.brokers.ibkr.venue import IbkrVenue, ib_loop
from adapters.brokers.schwab.venue import SchwabVenue
from node.config import BrokerConfig, IbkrConfig, NodeConfig, ReconcileConfig, StorageConfig
from node.instruments import Multipliers, node_multipliers
from node.messages import ExecKind, OrderIntent, OrderType, Side, SubmitOrder, broker_event_decoder, encode
from node.migrations import apply_migrations, create_database, drop_database
from node.risk.config import RiskLimits
from node.streams import EVENTS_FIELD, pack_batch
from tests.fakes.schwab_fake import SchwabFake
from tests.fakes.tws_fake import TwsFake


class SchwabBroker:
    """Schwab: the fake, a venue on it (token sealed in the test's database), its controls."""

    foreign_prefix = "SCHWAB-"

    def __init__(self, database: str, redis_url: str, tag: str, multipliers: Multipliers) -> None:
        self.fake = SchwabFake(account_hash="H" + secrets.token_hex(4)).start()
        self.fake.fill_legs = 3
        cfg = sv.make_cfg(self.fake, database, redis_url)
        sv.seed_token(cfg, self.fake.issue_token())
        self.venue = SchwabVenue(cfg, redis_prefix=tag + "schwab", multipliers=multipliers)
        self.fee_per_fill = 0.65
        self.foreign_fills = 3
        # Schwab's orders answer names no fee; its cash pays one per execution: the node's schedule says so
        self.fake.commission_per_fill = 0.65
        self.fees = {"fee_min_per_fill_usd": 0.65}

    def place_behind_the_nodes_back(self) -> str:
        return self.foreign_prefix + str(self.fake.place("MSFT", "SELL_SHORT", 12.0))

    def edit_position(self, symbol: str, qty: float) -> None:
        self.fake.edit_position(symbol, qty)

    def adjust_cash(self, amount: float) -> None:
        self.fake.adjust_cash(amount)

    def adjust_cost(self, symbol: str, delta: float) -> None:
        self.fake.adjust_cost(symbol, delta)

    def set_price(self, symbol: str, px: float) -> None:
        self.fake.prices[symbol] = px

    def orders_placed(self) -> int:
        return len(self.fake.placed)

    def stop(self) -> None:
        self.fake.stop()


class IbkrBroker:
    """IBKR: the TWS fake, a venue on it, its controls."""

    foreign_prefix = "IBKR-"

    def __init__(self, database: str, redis_url: str, tag: str, multipliers: Multipliers) -> None:
        self.fake = TwsFake().start()
        self.fake.fill_legs = 3
        self.venue = IbkrVenue(IbkrConfig(port=self.fake.port, client_id=7, windows=[], reconnect_interval_ms=200,
                                          connect_timeout_ms=3_000, ack_timeout_ms=2_000), multipliers=multipliers)
        self.fee_per_fill = 1.0
        self.foreign_fills = 1
        self.fees: dict[str, float] = {}  # TWS reports its commission on every execution

    def place_behind_the_nodes_back(self) -> str:
        return self.foreign_prefix + str(self.fake.place("MSFT", "SELL", 12.0))

    def edit_position(self, symbol: str, qty: float) -> None:
        self.fake.edit_position(symbol, qty)
        _settled(self.fake)

    def adjust_cash(self, amount: float) -> None:
        self.fake.adjust_cash(amount)
        _settled(self.fake)

    def adjust_cost(self, symbol: str, delta: float) -> None:
        self.fake.adjust_cost(symbol, delta)
        _settled(self.fake)

    def set_price(self, symbol: str, px: float) -> None:
        self.fake.prices[symbol] = px

    def orders_placed(self) -> int:
        return len(self.fake.orders)

    def stop(self) -> None:
        self.fake.stop()


def _settled(fake: TwsFake) -> None:
    """The fake's loop has run what was handed to it before now."""
    done = threading.Event()
    fake._loop.call_soon_threadsafe(done.set)
    assert done.wait(10)


BROKERS = {"schwab": SchwabBroker, "ibkr": IbkrBroker}


class Rig:
    """A broker (its fake) behind a real broker adapter; the node's side played by its real parts:
    an "engine" that sends orders and publishes the adapter's reports to execution.events, the
    ledger, and the reconciler reading the adapter's `book`."""

    def __init__(self, kind: str, database: str, redis_url: str, risk: RiskLimits | None = None) -> None:
        self.database = database
        self.redis_url = redis_url
        tag = "test:recbroker:" + secrets.token_hex(4) + ":"
        self.storage = StorageConfig(redis_url=redis_url, database_url=database, signals_stream=tag + "signals",
                                     events_stream=tag + "events", monitoring_stream=tag + "monitoring")
        risk = risk or RiskLimits()
        # the node's multipliers, taken where the node takes them (actors/hosts.py: build_broker)
        self.broker = BROKERS[kind](database, redis_url, tag, node_multipliers(risk))
        self.venue = self.broker.venue
        self.host = BrokerHost(kind, "127.0.0.1", self.venue)
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.host.start()["orders"])
        self.reports: list = []
        self.controls: list[tuple[str, str | None]] = []
        node_id = "t-" + secrets.token_hex(3)
        self.ledger = Ledger(self.storage, redis_url, database, LedgerConfig(consumer=node_id, block_ms=10,
                                                                             node_id=node_id))
        cfg = NodeConfig(node_id=node_id, storage=self.storage, broker=BrokerConfig(name=kind, kind=kind), risk=risk,
                         reconcile=ReconcileConfig(settle_ms=0, reconcile_every_secs=0, **self.broker.fees))
        self.reconciler = Reconciler(cfg, redis_url, database, self._books, self._control)
        self.n = 0

    async def _books(self):
        return [await asyncio.get_running_loop().run_in_executor(None, self.host.book, "acct")]

    async def _control(self, state: str, strategy_id: str | None, by: str = "") -> None:
        self.controls.append((state, strategy_id))

    async def start(self) -> None:
        await self.ledger.start()
        await self.reconciler.start()
        deadline = time.monotonic() + 20
        while not self.venue.health(time.time_ns()).ok:  # logged in / connected
            assert time.monotonic() < deadline, self.venue.health(time.time_ns())
            await asyncio.sleep(0.05)

    def order(self, symbol: str, side: Side, qty: float) -> str:
        self.n += 1
        coid = "NAE-" + secrets.token_hex(6) + "-0"
        self.sock.send(encode(SubmitOrder(1, "default", OrderIntent(
            client_order_id=coid, signal_id="s%d" % self.n, request_id="r%d" % self.n, strategy_id="s1",
            symbol=symbol, side=side, order_type=OrderType.MARKET, quantity=qty))))
        return coid

    def wait_filled(self, coid: str, timeout_s: float = 20.0) -> list:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sock.poll(50):
                self.reports.append(broker_event_decoder.decode(self.sock.recv()))
            mine = [r for r in self.reports if r.client_order_id == coid]
            if any(r.kind is ExecKind.FILL for r in mine):
                return mine
        raise AssertionError(repr(self.reports))

    async def engine_publishes(self, reports: list) -> None:
        payloads = [encode(msgspec.structs.replace(r, strategy_id="s1")) for r in reports]
        client = redis.Redis.from_url(self.redis_url)
        client.xadd(self.storage.events_stream, {EVENTS_FIELD: pack_batch(payloads)})
        client.close()

    async def fetch(self, sql: str, *args):
        conn = await asyncpg.connect(self.database)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def fill_rows(self) -> dict[str, int]:
        return {r["exec_id"]: r["n"] for r in await self.fetch("SELECT exec_id, count(*) AS n FROM fills GROUP BY exec_id")}

    async def close(self) -> None:
        await self.reconciler.stop()
        await self.ledger.close()
        self.sock.close(0)
        self.host.stop()
        self.broker.stop()
        client = redis.Redis.from_url(self.redis_url)
        for key in client.scan_iter(match=self.storage.events_stream.rsplit(":", 1)[0] + ":*"):
            client.delete(key)
        client.close()


@pytest.fixture(params=sorted(BROKERS))
def rig(request, database_url, redis_url):
    name, url = asyncio.run(create_database(database_url, "nae_test_recbroker_"))
    asyncio.run(apply_migrations(url))
    loop = asyncio.new_event_loop()
    r = Rig(request.param, url, redis_url)
    loop.run_until_complete(r.start())
    yield r, loop
    loop.run_until_complete(r.close())
    loop.close()
    asyncio.run(drop_database(database_url, name))


@pytest.fixture(params=sorted(BROKERS))
def rig_with(request, database_url, redis_url):
    """A rig on a node with the given risk config (its contract multipliers)."""
    made: list = []

    def make(risk: RiskLimits):
        name, url = asyncio.run(create_database(database_url, "nae_test_recbroker_"))
        asyncio.run(apply_migrations(url))
        loop = asyncio.new_event_loop()
        made.append((name, loop))
        r = Rig(request.param, url, redis_url, risk)
        made.append(r)
        loop.run_until_complete(r.start())
        return r, loop

    yield make
    (name, loop), *rest = made
    for r in rest:
        loop.run_until_complete(r.close())
    loop.close()
    asyncio.run(drop_database(database_url, name))


def test_a_dropped_fill_is_booked_once(rig):
    r, loop = rig
    coid = r.order("AAPL", Side.BUY, 30.0)  # three executions of 10
    reports = r.wait_filled(coid)
    fills = [x for x in reports if x.last_qty > 0]
    assert len(fills) == 3
    dropped = fills[1]
    loop.run_until_complete(r.engine_publishes([x for x in reports if x is not dropped]))
    loop.run_until_complete(r.ledger.drain(idle_reads=2))

    run = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert run.counts == {"MISSING_FILL": 1} and run.error == ""
    assert run.discrepancies[0].exec_id == dropped.exec_id and run.booked == 1 and r.controls == []
    loop.run_until_complete(r.ledger.drain(idle_reads=2))
    assert loop.run_until_complete(r.fill_rows()) == {f.exec_id: 1 for f in fills}
    again = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert again.matched and again.booked == 0
    assert r.broker.orders_placed() == 1  # nothing was sent by the reconciler
    rows = loop.run_until_complete(r.fetch(
        "SELECT symbol, matched FROM reconciliation_results WHERE run_id = $1", run.run_id))
    assert [(x["symbol"], x["matched"]) for x in rows if not x["matched"]] == [("AAPL", False)]


def test_an_order_placed_behind_the_nodes_back_is_adopted_never_sent(rig):
    r, loop = rig
    foreign = r.broker.place_behind_the_nodes_back()
    n = r.broker.foreign_fills
    run = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert run.counts == {"ORDER_UNKNOWN_TO_NODE": 1, "FILL_UNKNOWN_TO_LEDGER": n}, run.discrepancies
    assert run.booked == 1 + n and run.actions == []
    loop.run_until_complete(r.ledger.drain(idle_reads=2))
    order = loop.run_until_complete(r.fetch(
        "SELECT strategy_id, cum_qty, state FROM orders WHERE client_order_id = $1", foreign))[0]
    assert (order["strategy_id"], order["cum_qty"], order["state"]) == ("EXTERNAL", pytest.approx(12.0), "FILL")
    again = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert again.matched and again.booked == 0
    assert sum(loop.run_until_complete(r.fill_rows()).values()) == n
    assert r.broker.orders_placed() == 1 and r.host.stats().submitted == 0  # adopted, never re-sent


def test_a_position_edited_at_the_broker_is_drift_and_halts_the_strategy(rig):
    r, loop = rig
    coid = r.order("AAPL", Side.BUY, 30.0)
    loop.run_until_complete(r.engine_publishes(r.wait_filled(coid)))
    loop.run_until_complete(r.ledger.drain(idle_reads=2))
    r.broker.edit_position("AAPL", 7.0)
    run = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert run.counts == {"POSITION_DRIFT": 1}
    d = run.discrepancies[0]
    assert (d.symbol, d.node_qty, d.broker_qty) == ("AAPL", pytest.approx(30.0), pytest.approx(37.0))
    assert r.controls == [("HALTED", "s1")] and run.booked == 0
    row = loop.run_until_complete(r.fetch(
        "SELECT ledger_qty, broker_qty, action FROM reconciliation_results WHERE run_id = $1 AND symbol = 'AAPL'",
        run.run_id))[0]
    assert (row["ledger_qty"], row["broker_qty"], row["action"]) == (pytest.approx(30.0), pytest.approx(37.0), "HALTED")


def test_a_node_killed_between_a_fill_and_its_ledger_row_books_it_once(rig):
    r, loop = rig
    coid = r.order("SPY", Side.BUY, 9.0)
    reports = r.wait_filled(coid)  # the engine had them, and died before its execution.events append
    run = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert run.counts == {"ORDER_UNKNOWN_TO_NODE": 1, "FILL_UNKNOWN_TO_LEDGER": 3}
    loop.run_until_complete(r.ledger.drain(idle_reads=2))
    loop.run_until_complete(r.engine_publishes(reports))  # a late append of the same reports: nothing twice
    loop.run_until_complete(r.ledger.drain(idle_reads=2))
    assert loop.run_until_complete(r.fill_rows()) == {x.exec_id: 1 for x in reports if x.last_qty > 0}
    order = loop.run_until_complete(r.fetch(
        "SELECT strategy_id, cum_qty FROM orders WHERE client_order_id = $1", coid))[0]
    assert order["strategy_id"] == "s1" and order["cum_qty"] == pytest.approx(9.0)
    assert loop.run_until_complete(r.reconciler.reconcile("test")).matched


def test_a_reconnect_to_tws_grows_the_adapters_link_generation(database_url, redis_url):
    name, url = asyncio.run(create_database(database_url, "nae_test_recbroker_"))
    asyncio.run(apply_migrations(url))
    loop = asyncio.new_event_loop()
    r = Rig("ibkr", url, redis_url)
    try:
        loop.run_until_complete(r.start())
        first = r.host.link_generation()
        r.broker.fake.drop_connections()  # the gateway's nightly restart, a network blip
        deadline = time.monotonic() + 20
        while r.host.link_generation() <= first:
            assert time.monotonic() < deadline, "no reconnect seen"
            time.sleep(0.05)
        assert r.host.link_generation() == first + 1
    finally:
        loop.run_until_complete(r.close())
        loop.close()
        asyncio.run(drop_database(database_url, name))


def test_cash_with_commissions_agrees_and_a_fee_charged_apart_is_cash_drift(rig):
    r, loop = rig
    first = loop.run_until_complete(r.reconciler.reconcile("startup"))  # the node's first look: its opening book
    assert first.matched, first.discrepancies
    opening = loop.run_until_complete(r.fetch("SELECT cash FROM reconciliation_openings"))
    assert opening[0]["cash"] == pytest.approx(1_000_000.0)
    coid = r.order("AAPL", Side.BUY, 30.0)  # three executions, each with its commission
    loop.run_until_complete(r.engine_publishes(r.wait_filled(coid)))
    loop.run_until_complete(r.ledger.drain(idle_reads=2))
    run = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert run.matched, run.discrepancies  # cash = opening - 3,000 bought - the commissions
    r.broker.adjust_cash(-25.0)  # a fee charged apart from any execution
    run = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert run.counts == {"CASH_DRIFT": 1} and r.controls == []  # an alert: nothing is halted for cash
    d = run.discrepancies[0]
    assert d.broker_qty - d.node_qty == pytest.approx(-25.0)
    rows = loop.run_until_complete(r.fetch(
        "SELECT ledger_qty, broker_qty, matched FROM reconciliation_results WHERE run_id = $1 AND symbol = '$CASH'",
        run.run_id))
    assert [(x["ledger_qty"], x["broker_qty"], x["matched"]) for x in rows] == [
        (pytest.approx(d.node_qty), pytest.approx(d.broker_qty), False)]


def test_pnl_against_the_brokers_valuation_agrees_until_the_cost_moves_at_the_broker(rig):
    r, loop = rig
    coid = r.order("AAPL", Side.BUY, 30.0)
    loop.run_until_complete(r.engine_publishes(r.wait_filled(coid)))
    loop.run_until_complete(r.ledger.drain(idle_reads=2))
    assert loop.run_until_complete(r.reconciler.reconcile("test")).matched
    r.broker.adjust_cost("AAPL", 0.5)  # a cost-basis correction at the broker, with no execution
    run = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert run.counts == {"PNL_DRIFT": 1} and r.controls == [], run.discrepancies
    d = run.discrepancies[0]
    assert d.symbol == "AAPL" and d.node_pnl - d.broker_pnl == pytest.approx(15.0)  # 30 shares x 0.5
    assert "PNL_DRIFT" in loop.run_until_complete(r.fetch(
        "SELECT report_md FROM reconciliation_runs WHERE run_id = $1", run.run_id))[0]["report_md"]


def test_positions_held_before_the_nodes_first_fill_are_its_opening_book(rig):
    r, loop = rig
    r.broker.edit_position("SPY", 40.0)  # held at the broker before the node ever traded
    first = loop.run_until_complete(r.reconciler.reconcile("startup"))
    assert first.matched, first.discrepancies
    coid = r.order("SPY", Side.SELL, 10.0)
    loop.run_until_complete(r.engine_publishes(r.wait_filled(coid)))
    loop.run_until_complete(r.ledger.drain(idle_reads=2))
    run = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert run.matched, run.discrepancies  # 40 opening - 10 sold = the broker's 30
    r.broker.edit_position("SPY", 5.0)
    run = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert run.counts == {"POSITION_DRIFT": 1}
    d = run.discrepancies[0]
    assert (d.node_qty, d.broker_qty) == (pytest.approx(30.0), pytest.approx(35.0))


def test_the_reconciler_compares_only_its_own_nodes_ledger_rows(rig):
    r, loop = rig
    coid = r.order("AAPL", Side.BUY, 30.0)
    loop.run_until_complete(r.engine_publishes(r.wait_filled(coid)))
    loop.run_until_complete(r.ledger.drain(idle_reads=2))
    assert {x["node_id"] for x in loop.run_until_complete(r.fetch("SELECT node_id FROM fills"))} == {
        r.reconciler._cfg.node_id}

    async def another_nodes_fill() -> None:
        conn = await asyncpg.connect(r.database)
        try:
            await conn.execute(
                "INSERT INTO fills (exec_id, client_order_id, strategy_id, symbol, side, qty, px, cum_qty, ts_ns, "
                "stream_id, node_id) VALUES ('E-other', 'NAE-other-0', 's9', 'QQQ', 'BUY', 5, 400, 5, $1, '0-0', "
                "'another-node')", time.time_ns())
        finally:
            await conn.close()

    loop.run_until_complete(another_nodes_fill())
    run = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert run.matched, run.discrepancies  # another node's fill is not this node's FILL_UNKNOWN_TO_BROKER


def test_tws_commissions_are_kept_in_the_ledger_so_cash_agrees_after_the_day_rolls(database_url, redis_url):
    """TWS lists only the day's executions: the commission of each, learnt while it was listed, is
    written on the ledger's fill, so the next day (TWS's list empty, its cash still net of them) the
    node's cash agrees."""
    import datetime as dt

    name, url = asyncio.run(create_database(database_url, "nae_test_recbroker_"))
    asyncio.run(apply_migrations(url))
    loop = asyncio.new_event_loop()
    r = Rig("ibkr", url, redis_url)
    try:
        loop.run_until_complete(r.start())
        assert loop.run_until_complete(r.reconciler.reconcile("startup")).matched  # the opening book
        coid = r.order("AAPL", Side.BUY, 30.0)
        loop.run_until_complete(r.engine_publishes(r.wait_filled(coid)))
        loop.run_until_complete(r.ledger.drain(idle_reads=2))
        assert loop.run_until_complete(r.reconciler.reconcile("test")).matched
        fees = [x["fee"] for x in loop.run_until_complete(r.fetch("SELECT fee FROM fills"))]
        assert fees == [1.0, 1.0, 1.0]
        tomorrow = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
        r.venue.session._clock = lambda: tomorrow  # TWS's day rolled: yesterday's executions are gone
        r.broker.fake.executions.clear()
        run = loop.run_until_complete(r.reconciler.reconcile("test"))
        assert run.matched, run.discrepancies  # cash = opening - 3,000 - 3 commissions, from the ledger
    finally:
        loop.run_until_complete(r.close())
        loop.close()
        asyncio.run(drop_database(database_url, name))


def test_the_tws_fake_answers_ib_asyncs_account_summary_and_updates_in_tws_framing():
    """The fake's account messages decode in ib_async as TWS's do: accountSummary (63/64) and
    updateAccountValue / updatePortfolio / accountDownloadEnd (6/7/54), cash net of the commission."""
    from ib_async import IB, StartupFetch

    fake = TwsFake(prices={"AAPL": 101.0}).start()

    async def go():
        ib = IB()
        try:
            await ib.connectAsync("127.0.0.1", fake.port, clientId=31, timeout=5, fetchFields=StartupFetch.POSITIONS)
            fake.place("AAPL", "BUY", 10.0)  # 10 at 101, commission 1
            _settled(fake)
            summary = {v.tag: v.value for v in await ib.accountSummaryAsync()}
            await ib.reqAccountUpdatesAsync("DU1234567")
            return summary, ib.accountValues("DU1234567"), ib.portfolio("DU1234567")
        finally:
            ib.disconnect()

    try:  # on the process's one IBKR loop: ib_async caches the first loop it sees (adapters/brokers/ibkr/venue.py)
        summary, values, portfolio = asyncio.run_coroutine_threadsafe(go(), ib_loop()).result(30)
    finally:
        fake.stop()
    assert float(summary["TotalCashValue"]) == pytest.approx(1_000_000.0 - 1_010.0 - 1.0)
    assert {v.tag: float(v.value) for v in values} == {"TotalCashValue": pytest.approx(998_989.0),
                                                       "CashBalance": pytest.approx(998_989.0)}
    (item,) = portfolio
    assert (item.contract.symbol, item.position, item.marketPrice, item.averageCost) == (
        "AAPL", 10.0, 101.0, pytest.approx(101.1))
    assert item.unrealizedPNL == pytest.approx(-1.0) and item.realizedPNL == 0.0


#: an option the node calls by its OCC symbol: Schwab's padded `AAPL  261218C00150000`, TWS's Option contract
OPTION = "AAPL261218C00150000"


def _trade(r, loop, side: Side, qty: float) -> list:
    coid = r.order(OPTION, side, qty)  # three executions of one contract
    reports = r.wait_filled(coid)
    loop.run_until_complete(r.engine_publishes(reports))
    loop.run_until_complete(r.ledger.drain(idle_reads=2))
    return [x for x in reports if x.last_qty > 0]


def test_an_option_bought_and_sold_at_the_broker_reconciles_at_its_contract_multiplier(rig_with):
    r, loop = rig_with(RiskLimits())
    fee = r.broker.fee_per_fill
    r.broker.set_price(OPTION, 1.5)
    assert loop.run_until_complete(r.reconciler.reconcile("startup")).matched  # the opening book
    fills = _trade(r, loop, Side.BUY, 3.0)
    assert [(x.symbol, x.last_qty, x.last_px) for x in fills] == [(OPTION, 1.0, 1.5)] * 3
    book = r.host.book("acct")  # the broker's own view: the option under the node's symbol, dollars x 100
    assert book.positions == {OPTION: pytest.approx(3.0)}
    assert book.cash == pytest.approx(1_000_000.0 - 3 * 1.5 * 100 - 3 * fee)
    run = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert run.matched, run.discrepancies
    r.broker.set_price(OPTION, 2.1)  # the mark moves: 3 contracts x 0.60 x 100 = 180 USD unrealised
    book = r.host.book("acct")
    assert (book.pnl[OPTION].qty, book.pnl[OPTION].mark) == (pytest.approx(3.0), pytest.approx(2.1))
    assert book.pnl[OPTION].unrealised == pytest.approx(180.0 - (3 * fee if r.broker.foreign_prefix == "IBKR-" else 0.0))
    run = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert run.matched, run.discrepancies  # the node's PnL at x100 is the broker's
    _trade(r, loop, Side.SELL, 3.0)  # sold to close at 2.10
    book = r.host.book("acct")
    assert OPTION not in book.positions
    assert book.cash == pytest.approx(1_000_000.0 + 3 * 0.6 * 100 - 6 * fee)
    run = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert run.matched, run.discrepancies
    assert r.broker.orders_placed() == 2 and r.controls == []


def test_a_node_at_the_wrong_option_multiplier_shows_cash_and_pnl_drift(rig_with):
    r, loop = rig_with(RiskLimits(contract_multipliers={OPTION: 10.0}))  # the broker's contract is 100 shares
    r.broker.set_price(OPTION, 1.5)
    assert loop.run_until_complete(r.reconciler.reconcile("startup")).matched
    _trade(r, loop, Side.BUY, 3.0)
    run = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert run.counts == {"CASH_DRIFT": 1}, run.discrepancies  # the positions agree; the node paid 45, not 450
    (d,) = run.discrepancies
    assert d.broker_qty - d.node_qty == pytest.approx(-3 * 1.5 * (100 - 10))
    r.broker.set_price(OPTION, 2.1)
    run = loop.run_until_complete(r.reconciler.reconcile("test"))
    assert run.counts == {"CASH_DRIFT": 1, "PNL_DRIFT": 1}, run.discrepancies
    (p,) = [x for x in run.discrepancies if x.kind.value == "PNL_DRIFT"]
    assert p.symbol == OPTION and p.node_pnl - p.broker_pnl == pytest.approx(3 * 0.6 * (10 - 100))
    assert r.controls == []  # alerts: nothing halted for cash or PnL
