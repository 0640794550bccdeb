"""The reconciler in a whole node on Ray: it runs at start-up before the node trades, on demand
(`POST /admin/reconcile`, the supervisor's `reconcile`) and after a broker restart, finds the books
equal after a burst of signals, and shows in /metrics."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import msgspec
import pytest

from node.client import AsyncExecutionClient
from node.demo import make_signals, play
from node.stats import LedgerStats, ReconcilerStats, SupervisorStats, ValidatorStats, to_plain


@pytest.fixture(scope="module")
def node(module_ledger_node):
    return module_ledger_node


async def _runs(url: str) -> list:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch("SELECT trigger, matched, error FROM reconciliation_runs ORDER BY started_at")
    finally:
        await conn.close()


def _wait_for_run(node, trigger: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [r for r in asyncio.run(_runs(node.database_url)) if r["trigger"] == trigger]
        if found:
            return found[-1]
        time.sleep(0.3)
    raise AssertionError("no " + trigger + " reconciliation")


def test_start_up_run_then_a_burst_reconciles_equal_on_demand_and_after_failover(node):
    startup = _wait_for_run(node, "startup")
    assert startup["matched"] and startup["error"] == ""

    prices = {s.symbol: s.price for s in node.cfg.broker.paper.symbols}
    signals = make_signals(300, prices, seed=11, bad_every=0)
    key_id, secret = next(iter(node.cfg.signing.keys.items()))

    async def go():
        async with AsyncExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
            return await play(c, signals, window=64, settle_s=20)

    assert asyncio.run(go()).summary()["accepted"] == 300
    # the ledger drains behind the fills: ask until it caught up (a lagging ledger is a missing
    # fill booked by the reconciler, which the ledger then writes once: also equal afterwards)
    deadline = time.monotonic() + 60
    while True:
        run = node.call_supervisor("reconcile", "manual")
        if run["matched"] or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert run["matched"], run
    assert run["error"] == "" and run["actions"] == []
    assert node.stats()["reconciler"]["runs"] >= 2

    auth = {"X-Admin-Token": node.cfg.api.admin_token}
    with httpx.Client(base_url=node.registry["api"], timeout=60) as http:
        assert http.post("/admin/reconcile").status_code == 403
        reply = http.post("/admin/reconcile", headers=auth)
        assert reply.status_code == 200, reply.text
        result = reply.json()["result"]
        assert result["matched"] is True and result["trigger"] == "manual"
        metrics = http.get("/metrics").text
    assert "nae_reconcile_runs_total" in metrics and "nae_reconcile_last_matched" in metrics

    node.call_supervisor("restart_broker")  # a reconnect: the adapter back on its address
    after = _wait_for_run(node, "broker_restart")
    assert after["error"] == ""


@pytest.mark.parametrize(("role", "struct"), [("validator", ValidatorStats), ("ledger", LedgerStats),
                                              ("reconciler", ReconcilerStats), ("supervisor", SupervisorStats)])
def test_each_role_s_stats_are_its_typed_struct_as_plain_data(node, role, struct):
    """What a whole node's actors send is exactly their struct: every field there and of its type, no other key."""
    plain = node.stats()[role]
    assert to_plain(msgspec.convert(plain, struct)) == plain


def test_a_drift_found_at_start_up_halts_the_strategy_before_the_intake_opens(ray_session, make_config,
                                                                               database_url):
    """The ledger holds a fill the broker never made (a phantom position of strategy `ghost`): the
    start-up run finds it, and the validator starts with `ghost` HALTED; other strategies trade."""
    from node.client import ExecutionClient
    from node.migrations import apply_migrations, create_database, drop_database
    from node.runtime import NodeRuntime, quiet

    async def prepare() -> tuple[str, str]:
        name, url = await create_database(database_url, "nae_test_recstart_")
        await apply_migrations(url)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "INSERT INTO fills (exec_id, client_order_id, strategy_id, symbol, side, qty, px, cum_qty, ts_ns, "
                "stream_id) VALUES ('E-ghost-1', 'NAE-ghost-0', 'ghost', 'AAPL', 'BUY', 10, 230, 10, $1, '0-0')",
                time.time_ns())
        finally:
            await conn.close()
        return name, url

    name, url = asyncio.run(prepare())
    runtime = NodeRuntime(make_config(database_url_override=url), quiet)
    runtime.start()
    try:
        startup = _wait_for_run(runtime, "startup")
        assert not startup["matched"]
        key_id, secret = next(iter(runtime.cfg.signing.keys.items()))
        with ExecutionClient(runtime.registry["intake"], key_id, secret, timeout_s=10) as client:
            ghost = client.send_signal({"strategy_id": "ghost", "symbol": "AAPL", "action": "BUY", "quantity": 1})
            other = client.send_signal({"strategy_id": "alive", "symbol": "AAPL", "action": "BUY", "quantity": 1})
        assert ghost.status == "REJECTED" and "HALTED" in ghost.reasons, ghost
        assert other.status == "ACCEPTED", other
    finally:
        runtime.stop()
        asyncio.run(drop_database(database_url, name))
