"""The reconciler in a whole node on Ray (NodeRuntime: supervisor, validator, engine, Schwab broker
adapter, ledger, reconciler) with a Schwab group in front of the local Schwab fake (tests/fakes/pair.py):
the start-up run takes the account's opening book and matches; after trading, the on-demand run
agrees on positions, cash (with Schwab's per-execution fee, which its orders answer never names)
and PnL against Schwab's own valuation; a position edited at the fake is found, classified
POSITION_DRIFT, written to reconciliation_results with both values, and acted on as configured
(`on_drift = "REDUCING"`): the strategy's new risk is refused REDUCE_ONLY, a reducing order still trades."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from node.client import ExecutionClient
from node.config import BrokerConfig, EngineConfig, EngineGroupConfig, ReconcileConfig, RouteConfig
from node.messages import Signal
from node.runtime import NodeRuntime, quiet
from tests.fakes.pair import broker_fakes, schwab_account

PRICES = {"AAPL": 230.0, "MSFT": 420.0}
FEE = 0.65  # Schwab's cash pays it on every execution; the node's schedule says so


@pytest.fixture(scope="module")
def fakes():
    with broker_fakes(PRICES) as pair:
        yield pair


@pytest.fixture(scope="module")
def node(ray_session, make_config, fakes, database_url):
    schwab, _ = fakes
    schwab.commission_per_fill = FEE
    with schwab_account(schwab, database_url, "nae_test_recbrokernode_", sweep_interval_ms=200,
                        unknown_settle_ms=6_000) as (url, sc):
        cfg = make_config(
            database_url_override=url,
            brokers=[BrokerConfig(name="schwab", kind="schwab", schwab=sc)],
            groups=[EngineGroupConfig(name="sch", engines=[EngineConfig(name="a")], brokers=["schwab"])],
            routes=[RouteConfig(group="sch", strategies=["sch-*"])], reject_unrouted=True, heartbeat_misses=10,
            reconcile=ReconcileConfig(reconcile_every_secs=0, settle_ms=500, on_drift="REDUCING",
                                      fee_min_per_fill_usd=FEE),
        )  # fmt: skip
        runtime = NodeRuntime(cfg, quiet)
        runtime.start()
        yield runtime
        runtime.stop()


def _fetch(url: str, sql: str, *args):
    async def go():
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def _send(node, strategy: str, symbol: str, action: str, qty: float):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        return c.send_signal(Signal(request_id="rbn-" + str(time.time_ns()), strategy_id=strategy,
                                    timestamp=time.time(), symbol=symbol, action=action, quantity=qty))


def _reconcile_until_matched(node, timeout_s: float = 60.0) -> dict:
    """The ledger drains behind the fills: ask until it caught up (what it lacks meanwhile is in
    flight or booked once by the reconciler; both end equal)."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = node.call_supervisor("reconcile", "manual")
        if run["matched"] or time.monotonic() > deadline:
            return run
        time.sleep(0.5)


def test_a_schwab_position_edited_at_the_broker_moves_the_strategy_to_reducing(node, fakes):
    schwab, _ = fakes
    url = node.cfg.storage.database_url
    deadline = time.monotonic() + 60
    while not (startup := _fetch(url, "SELECT matched, error FROM reconciliation_runs WHERE trigger = 'startup'")):
        assert time.monotonic() < deadline, "no start-up reconciliation"
        time.sleep(0.3)
    assert startup[0]["matched"] and startup[0]["error"] == ""
    opening = _fetch(url, "SELECT node_id, cash FROM reconciliation_openings")
    assert [(r["node_id"], r["cash"]) for r in opening] == [(node.cfg.node_id, pytest.approx(schwab.cash))]

    for action, qty in (("BUY", 10.0), ("BUY", 5.0), ("SELL", 3.0)):
        reply = _send(node, "sch-rec", "AAPL", action, qty)
        assert reply.status == "ACCEPTED", reply
    deadline = time.monotonic() + 30
    while schwab.positions().get("AAPL") != 12.0:
        assert time.monotonic() < deadline, schwab.positions()
        time.sleep(0.2)
    run = _reconcile_until_matched(node)
    # positions, cash with fees, PnL at Schwab's valuation
    differences = [dict(r) for r in _fetch(url, "SELECT * FROM reconciliation_results WHERE run_id = $1", run["run_id"])]
    assert run["matched"] and run["error"] == "", (run["counts"], run["error"], differences)
    assert {r["node_id"] for r in _fetch(url, "SELECT node_id FROM fills")} == {node.cfg.node_id}

    schwab.edit_position("AAPL", 4.0)  # a journal at the broker, no order
    run = node.call_supervisor("reconcile", "manual")
    assert run["counts"] == {"POSITION_DRIFT": 1}, run
    assert [(a["state"], a["strategy_id"]) for a in run["actions"]] == [("REDUCING", "sch-rec")]
    row = _fetch(url, "SELECT ledger_qty, broker_qty, matched, action FROM reconciliation_results "
                      "WHERE run_id = $1 AND symbol = 'AAPL'", run["run_id"])
    assert [(r["ledger_qty"], r["broker_qty"], r["matched"], r["action"]) for r in row] == [
        (pytest.approx(12.0), pytest.approx(16.0), False, "REDUCING")]
    more = _send(node, "sch-rec", "AAPL", "BUY", 1.0)
    assert more.status == "REJECTED" and "REDUCE_ONLY" in more.reasons, more
    less = _send(node, "sch-rec", "AAPL", "SELL", 2.0)
    assert less.status == "ACCEPTED", less
    other = _send(node, "sch-other", "MSFT", "BUY", 1.0)  # another strategy trades on
    assert other.status == "ACCEPTED", other
