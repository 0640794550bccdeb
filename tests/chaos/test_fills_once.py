"""Each execution published once across failovers: kill -9 the leader engine twice during a burst of
market orders at the paper exchange (its own process). A raw ZeroMQ SUB subscriber (no nae_client
dedupe: what any other subscriber sees) hears every venue exec id; the ledger's fill rows are the
venue's executions, one row each.

A copy heard twice is allowed only across a leader's death: a fill the dying leader published that
had reached neither its standby nor the events stream is published again by the new leader (closing
that window needs the leader to log before it publishes: latency on every fill). So between any two
copies of one exec id there is a kill; a leader never publishes one twice in its own life, and a
subscriber that keeps the last exec ids (as nae_client does) sees each execution once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter

import pytest
import zmq

from node.client import ExecutionClient
from node.config import BrokerConfig, EngineConfig, PaperSymbol, PaperVenueConfig
from node.messages import ExecKind, report_decoder
from node.runtime import NodeRuntime, quiet
from tests.chaos.paper_exchange import exchange_report, start_exchange, stop_exchange, wait_leader_change

pytestmark = pytest.mark.chaos

_PRICES = {"AAPL": 230.0, "MSFT": 420.0}
_FILLS = (ExecKind.PARTIAL_FILL, ExecKind.FILL)


@pytest.fixture()
def exchange(tmp_path):
    conf = tmp_path / "exchange.toml"
    conf.write_text("".join('[[broker.paper.symbols]]\nsymbol = "%s"\nprice = %r\nvolatility_bps = 0.0\n' % (s, p)
                            for s, p in _PRICES.items()))
    proc, endpoint = start_exchange(conf, steered=True)
    yield endpoint
    stop_exchange(proc)


class RawSubscriber:
    """Every report on the node's events socket, decoded straight off ZeroMQ (no client library)."""

    def __init__(self, endpoint: str) -> None:
        self.reports: list = []
        self.heard_at: list[float] = []  # time.monotonic() of each report's arrival, index for index
        self._stop = threading.Event()
        self._sock = zmq.Context.instance().socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 0)
        self._sock.connect(endpoint)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._sock.poll(200):
                report = report_decoder.decode(self._sock.recv_multipart()[-1])
                self.heard_at.append(time.monotonic())
                self.reports.append(report)

    def fills(self) -> Counter:
        return Counter(r.exec_id for r in list(self.reports) if r.kind in _FILLS and r.last_qty > 0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close(0)


def _signals(n: int) -> list[dict]:
    rnd = random.Random(5)
    return [{"request_id": uuid.uuid4().hex, "timestamp": time.time(), "strategy_id": "once",
             "symbol": rnd.choice(list(_PRICES)), "action": rnd.choice(("BUY", "SELL")),
             "quantity": float(rnd.randint(1, 20)), "order_type": "MARKET"} for _ in range(n)]


def test_each_execution_published_once_across_failovers_mid_burst(ray_session, make_config, database_url, exchange):
    from actors.ledger import ledger_fills
    from node.migrations import create_database, drop_database

    name, url = asyncio.run(create_database(database_url, "nae_test_"))
    paper = PaperVenueConfig(symbols=[PaperSymbol(symbol=s, price=p) for s, p in _PRICES.items()])
    cfg = make_config(database_url_override=url, engines=[EngineConfig(name="a"), EngineConfig(name="b")],
                      broker=BrokerConfig(kind="paper-remote", exchange_endpoint=exchange, paper=paper))
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    key_id, secret = next(iter(cfg.signing.keys.items()))
    subscriber = RawSubscriber(runtime.registry["events"])
    sent: list = []
    kills: list[float] = []
    done = threading.Event()

    def burst() -> None:  # blocking sends, one after another, while the leader dies under them
        with ExecutionClient(runtime.registry["intake"], key_id, secret, timeout_s=10.0) as client:
            for sig in _signals(600):
                try:
                    sent.append(client.send_signal(sig))
                except Exception:  # noqa: BLE001 - a timeout; the signal may still have been taken
                    pass
        done.set()

    sender = threading.Thread(target=burst, daemon=True)
    try:
        time.sleep(0.5)  # the subscription reaches the relay
        sender.start()
        leader = runtime.call_supervisor("stats")["supervisor"]["leader"]
        for _ in range(2):
            deadline = time.monotonic() + 30
            n0 = len(sent)
            while len(sent) < n0 + 100 and time.monotonic() < deadline:
                time.sleep(0.05)
            pid = runtime.call_supervisor("pid", "engine")
            kills.append(time.monotonic())
            os.kill(pid, signal.SIGKILL)
            leader = wait_leader_change(runtime, leader)
        assert done.wait(120), "the burst did not finish"
        accepted = sum(r.status == "ACCEPTED" for r in sent)
        assert accepted >= 300, Counter(r.status for r in sent)
        deadline = time.monotonic() + 60
        while True:
            venue = Counter(f.exec_id for f in exchange_report(exchange, take_over=False).fills)
            ledger = Counter(r["exec_id"] for r in asyncio.run(ledger_fills(url)))
            heard = subscriber.fills()
            if (set(venue) <= set(heard) and set(venue) <= set(ledger)) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert venue, "the venue executed nothing"
        assert all(n == 1 for n in venue.values())
        assert set(heard) == set(venue), (len(set(venue) - set(heard)), len(set(heard) - set(venue)))
        assert ledger == venue, (len(set(venue) - set(ledger)), len(set(ledger) - set(venue)))
        twice = {e for e, n in heard.items() if n > 1}
        arrivals: dict[str, list[float]] = {}
        for t, r in zip(list(subscriber.heard_at), list(subscriber.reports)):
            if r.exec_id in twice and r.kind in _FILLS and r.last_qty > 0:
                arrivals.setdefault(r.exec_id, []).append(t)
        # a second copy only across a leader's death: a kill between every two copies of one exec id
        within_a_life = {e: ts for e, ts in arrivals.items()
                         if any(not any(a < k <= b for k in kills) for a, b in zip(ts, ts[1:]))}
        assert not within_a_life, "%d exec ids published twice by one leader (of %d, %d across a kill); engines %s" % (
            len(within_a_life), len(heard), len(twice), {
                k: (v.get("role"), v.get("published"), v.get("repeats_withheld"), v.get("swept_fills"))
                for k, v in runtime.stats().items() if k.startswith("engine")})
    finally:
        subscriber.close()
        runtime.stop()
        asyncio.run(drop_database(database_url, name))
