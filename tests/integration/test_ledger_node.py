"""The node's ledger: every fill at the (paper) broker is in PostgreSQL, row for row."""

from __future__ import annotations

import asyncio
import time

import pytest

from actors.ledger import ledger_fills
from node.client import AsyncExecutionClient
from node.demo import make_signals, play


@pytest.fixture(scope="module")
def node(module_ledger_node):
    return module_ledger_node


def test_ledger_matches_the_broker_fills_row_for_row(node):
    prices = {s.symbol: s.price for s in node.cfg.broker.paper.symbols}
    signals = make_signals(2_000, prices, seed=5, bad_every=0)
    key_id, secret = next(iter(node.cfg.signing.keys.items()))

    async def go():
        async with AsyncExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
            return await play(c, signals, window=128, settle_s=20)

    res = asyncio.run(go()).summary()
    assert res["lost"] == 0 and res["accepted"] == 2_000
    broker = {f.exec_id: f for f in node.call("broker", "fills")}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = asyncio.run(ledger_fills(node.database_url))
        if len(rows) >= len(broker):
            break
        time.sleep(0.5)
    assert {r["exec_id"] for r in rows} == set(broker)
    for r in rows:
        f = broker[r["exec_id"]]
        assert (r["client_order_id"], float(r["qty"]), float(r["px"])) == (f.client_order_id, f.last_qty, f.last_px)
    assert node.stats()["ledger"]["errors"] == 0


def test_breaker_state_reaches_the_circuit_breaker_state_table(node):
    import asyncpg

    node.call("validator", "trip_breaker", "execution")
    node.call("validator", "save_breakers")

    async def row():
        conn = await asyncpg.connect(node.database_url)
        try:
            return await conn.fetchrow("SELECT state, opened_at FROM circuit_breaker_state WHERE name = 'execution'")
        finally:
            await conn.close()

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and ((r := asyncio.run(row())) is None or r["state"] != "OPEN"):
        time.sleep(0.3)
    assert r is not None and r["state"] == "OPEN" and r["opened_at"] is not None
    node.call("validator", "reset_breaker", "execution")
    node.call("validator", "save_breakers")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and asyncio.run(row())["state"] != "CLOSED":
        time.sleep(0.3)
    assert asyncio.run(row())["state"] == "CLOSED"
