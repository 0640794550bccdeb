"""Resting limit orders across failover: the venue keeps filling orders an engine placed after that
engine is gone. kill -9 the leader, then the new leader (whose successor, the first one restarted by
Ray, never saw those orders): every venue fill reaches the ledger and a subscriber exactly once.
The paper exchange runs in its own process (as a real broker does), with a lively price so the
resting orders fill while the engines die."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import pytest
import zmq

from node.client import ExecutionClient
from node.config import BrokerConfig, EngineConfig, PaperSymbol, PaperVenueConfig
from node.messages import ExecKind, OrdersReport, QueryOrders, broker_event_decoder, encode
from node.runtime import NodeRuntime, quiet

pytestmark = pytest.mark.chaos

_PRICES = {"AAPL": 230.0, "MSFT": 420.0}
_FILLS = (ExecKind.PARTIAL_FILL, ExecKind.FILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def lively_exchange(tmp_path):
    port = _free_port()
    conf = tmp_path / "exchange.toml"
    conf.write_text("".join(
        '[[broker.paper.symbols]]\nsymbol = "%s"\nprice = %r\nvolatility_bps = 5.0\n' % (s, p)
        for s, p in _PRICES.items()))
    proc = subprocess.Popen([sys.executable, "-m", "actors.exchange", "--port", str(port), "--config", str(conf)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "paper exchange on" in proc.stdout.readline()
    yield "tcp://127.0.0.1:%d" % port
    proc.terminate()
    proc.wait(10)


def venue_fills(endpoint: str) -> list:
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    dealer.send(encode(QueryOrders(0, "test", take_over=False)))
    try:
        while dealer.poll(10_000):
            msg = broker_event_decoder.decode(dealer.recv())
            if type(msg) is OrdersReport:
                return list(msg.fills)
        raise AssertionError("the exchange did not answer")
    finally:
        dealer.close(0)


def resting_signals(n: int) -> list[dict]:
    rnd = random.Random(9)
    out = []
    for _ in range(n):
        symbol = rnd.choice(list(_PRICES))
        buy = rnd.random() < 0.5
        away = rnd.uniform(0.002, 0.010)
        price = round(_PRICES[symbol] * ((1 - away) if buy else (1 + away)), 2)
        out.append({"request_id": uuid.uuid4().hex, "timestamp": time.time(), "strategy_id": "rest",
                    "symbol": symbol, "action": "BUY" if buy else "SELL", "quantity": float(rnd.randint(1, 40)),
                    "order_type": "LIMIT", "limit_price": price})
    return out


def _risk_toml() -> str:
    """The throughput limits as a [risk] table (the node under test runs from a TOML file)."""
    from node.risk.config import RiskLimits, throughput_limits

    loose, default = throughput_limits(), RiskLimits()
    lines = ["[risk]"]
    for name in loose.__struct_fields__:
        value = getattr(loose, name)
        if value != getattr(default, name) and isinstance(value, (int, float)):
            lines.append("%s = %r" % (name, float(value) if isinstance(value, float) else value))
    return "\n".join(lines) + "\n"


class Subscriber:
    """Every execution report the node publishes, collected on a thread of its own."""

    def __init__(self, intake: str, key_id: str, secret: str) -> None:
        self.reports: list = []
        self._stop = threading.Event()
        self._client = ExecutionClient(intake, key_id, secret, timeout_s=5.0)
        self._client.subscribe("")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ev = self._client.next_event(0.2)
            if ev is not None:
                self.reports.append(ev)

    def fills(self) -> Counter:
        return Counter(r.exec_id for r in list(self.reports) if r.kind in _FILLS)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._client.close()


def _wait_leader_change(runtime: NodeRuntime, old: str, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leader = runtime.call_supervisor("stats")["supervisor"]["leader"]
        if leader != old:
            return leader
        time.sleep(0.1)
    raise AssertionError("no failover after killing " + old)


def test_fills_of_resting_orders_survive_two_leader_kills(ray_session, make_config, database_url, lively_exchange):
    from actors.ledger import ledger_fills
    from node.migrations import create_database, drop_database

    name, url = asyncio.run(create_database(database_url, "nae_test_"))
    paper = PaperVenueConfig(symbols=[PaperSymbol(symbol=s, price=p) for s, p in _PRICES.items()])
    cfg = make_config(database_url_override=url, engines=[EngineConfig(name="a"), EngineConfig(name="b")],
                      broker=BrokerConfig(kind="paper-remote", exchange_endpoint=lively_exchange, paper=paper))
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    key_id, secret = next(iter(cfg.signing.keys.items()))
    subscriber = Subscriber(runtime.registry["intake"], key_id, secret)
    client = ExecutionClient(runtime.registry["intake"], key_id, secret, timeout_s=5.0)
    try:
        time.sleep(0.5)  # the subscription reaches the relay
        replies = [client.send_signal(s) for s in resting_signals(300)]
        assert sum(r.status == "ACCEPTED" for r in replies) >= 150, Counter(tuple(r.reasons) for r in replies)
        time.sleep(1.0)
        first = runtime.call_supervisor("stats")["supervisor"]["leader"]
        os.kill(runtime.call_supervisor("pid", "engine"), signal.SIGKILL)
        killed_ns = time.time_ns()
        second = _wait_leader_change(runtime, first)
        time.sleep(4.0)  # the venue fills some; Ray brings the first engine back as a standby
        os.kill(runtime.call_supervisor("pid", "engine"), signal.SIGKILL)
        _wait_leader_change(runtime, second)
        time.sleep(20.0)  # the new leader never saw these orders placed: their fills must still reach us
        venue = {f.exec_id: f for f in venue_fills(lively_exchange)}
        late = [f for f in venue.values() if f.ts_ns > killed_ns]
        assert len(late) >= 5, "too few fills after the kills to tell anything (%d)" % len(late)
        deadline = time.monotonic() + 60
        while True:
            ledger = {r["exec_id"] for r in asyncio.run(ledger_fills(url))}
            heard = subscriber.fills()
            if (set(venue) <= ledger and set(venue) <= set(heard)) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        missing_ledger = set(venue) - ledger
        missing_heard = set(venue) - set(heard)
        assert not missing_ledger, "%d of %d venue fills not in the ledger" % (len(missing_ledger), len(venue))
        assert not missing_heard, "%d of %d venue fills never published" % (len(missing_heard), len(venue))
        twice = {e: n for e, n in heard.items() if e in venue and n > 1}
        assert not twice, "%d fills published more than once" % len(twice)
    finally:
        subscriber.close()
        client.close()
        runtime.stop()
        asyncio.run(drop_database(database_url, name))


def test_fills_of_resting_orders_survive_a_whole_node_restart(tmp_path, redis_url, database_url, lively_exchange):
    """kill -9 of the whole node (driver, Ray, every actor) with orders resting at the exchange, then
    `execnode up` again: the new leader adopts them from the open-order index, and every venue fill
    (those taken while the node was down included) reaches the ledger exactly once; the fills after
    the subscriber is back reach it exactly once."""
    from pathlib import Path

    from actors.ledger import ledger_fills
    from node.migrations import create_database, drop_database

    execnode = str(Path(sys.executable).parent / "execnode")
    name, url = asyncio.run(create_database(database_url, "nae_test_"))
    run = os.urandom(4).hex()
    port = _free_port()
    (tmp_path / "node.toml").write_text(
        'node_id = "rest-%s"\nray_namespace = "rest-%s"\nequity_usd = 1e10\n[api]\nport = 0\n[intake]\nport = %d\n'
        '[signing]\nkeys = { optimus = "s3cret-%s" }\n'
        '[storage]\nsignals_stream = "rest.%s.signals"\nevents_stream = "rest.%s.events"\n'
        'intake_stream = "rest.%s.intake"\nmonitoring_stream = "rest.%s.monitoring"\nallow_volatile_redis = true\n'
        '[broker]\nkind = "paper-remote"\nexchange_endpoint = "%s"\n'
        % (run, run, port, run, run, run, run, run, lively_exchange)
        + "".join('[[broker.paper.symbols]]\nsymbol = "%s"\nprice = %r\n' % (s, p) for s, p in _PRICES.items())
        + _risk_toml()
    )
    env = dict(os.environ, REDIS_URL=redis_url, DATABASE_URL=url)

    def up() -> subprocess.Popen:
        proc = subprocess.Popen([execnode, "--config", "node.toml", "up", "--no-dashboard"], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "Ctrl-C stops it" in line:
                return proc
            assert proc.poll() is None, "execnode up died: " + line + proc.stderr.read()[-2000:]
        raise AssertionError("node did not come up")

    intake = "tcp://127.0.0.1:%d" % port
    nodes = [up()]
    subscribers = [Subscriber(intake, "optimus", "s3cret-" + run)]
    try:
        time.sleep(0.5)
        with ExecutionClient(intake, "optimus", "s3cret-" + run, timeout_s=5.0) as client:
            replies = [client.send_signal(s) for s in resting_signals(300)]
        assert sum(r.status == "ACCEPTED" for r in replies) >= 150, Counter(tuple(r.reasons) for r in replies)
        time.sleep(2.0)
        os.killpg(nodes[0].pid, signal.SIGKILL)  # the driver, Ray and every actor of this node
        killed_ns = time.time_ns()
        subscribers[0].close()
        time.sleep(3.0)  # the venue fills some while no node runs
        nodes.append(up())
        subscribers.append(Subscriber(intake, "optimus", "s3cret-" + run))
        back_ns = time.time_ns() + 1_000_000_000  # the subscription needs a moment to reach the relay
        time.sleep(20.0)
        venue = {f.exec_id: f for f in venue_fills(lively_exchange)}
        late = [f for f in venue.values() if f.ts_ns > killed_ns]
        assert len(late) >= 5, "too few fills after the kill to tell anything (%d)" % len(late)
        heard_after = {e for e, f in venue.items() if f.ts_ns > back_ns}
        deadline = time.monotonic() + 60
        while True:
            ledger = Counter(r["exec_id"] for r in asyncio.run(ledger_fills(url)))
            heard = subscribers[-1].fills()
            if (set(venue) <= set(ledger) and heard_after <= set(heard)) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        missing = set(venue) - set(ledger)
        assert not missing, "%d of %d venue fills not in the ledger" % (len(missing), len(venue))
        assert all(n == 1 for n in ledger.values())
        assert heard_after <= set(heard), "%d fills never published" % len(heard_after - set(heard))
        assert not {e for e in heard_after if heard[e] > 1}, "fills published twice"
    finally:
        for sub in subscribers:
            sub.close()
        for proc in nodes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        asyncio.run(drop_database(database_url, name))
