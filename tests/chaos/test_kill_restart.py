"""kill -9 the engine, the validator or the ledger mid-burst: every ACKed signal executes exactly once.

The client retries a timed-out signal with the same request_id (as Optimus must); the supervisor
notices the death and restarts the actor (the engine in recovery with a new epoch, the validator
on the same port with its dedupe memory rebuilt from the signal log, the ledger resuming its consumer
group: every broker fill still reaches PostgreSQL exactly once).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from node.client import AsyncExecutionClient
from node.demo import make_signals
from nae_client.errors import TransportError  # what the client raises
from node.messages import ExecKind
from node.orders import client_order_id_for, signal_id_for

pytestmark = pytest.mark.chaos

N_SIGNALS = 5_000  # 1,500 before the kill, 3,500 from it on (ACKed while the role is down, then executed)


@pytest.fixture(scope="module")
def node(module_ledger_node):
    """One node for the three kills: each burst is judged on its own orders and records, and each
    kill after the first hits a node that has already recovered from one."""
    return module_ledger_node


async def burst_with_kill(node, role: str, kill_after: int) -> dict:
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    prices = {s.symbol: s.price for s in node.cfg.broker.paper.symbols}
    signals = make_signals(N_SIGNALS, prices, seed=7, bad_every=0)
    replies: dict[str, str] = {}
    terminal: dict[str, ExecKind] = {}
    retries = 0
    killed = asyncio.Event()
    sem = asyncio.Semaphore(128)
    async with AsyncExecutionClient(node.registry["intake"], key_id, secret, timeout_s=1.0) as client:
        await client.subscribe(kinds=[ExecKind.FILL, ExecKind.CANCELED, ExecKind.REJECTED])
        await asyncio.sleep(0.3)

        async def listen():
            while True:
                ev = await client.next_event(0.5)
                if ev is not None:
                    terminal.setdefault(ev.request_id, ev.kind)

        async def send(sig):
            nonlocal retries
            try:
                for attempt in range(60):
                    try:
                        reply = await client.send_signal(sig)
                        replies[sig.request_id] = reply.status
                        return
                    except TransportError:
                        retries += 1
                        await asyncio.sleep(0.1)
            finally:
                sem.release()

        listener = asyncio.get_running_loop().create_task(listen())
        tasks = []
        for i, sig in enumerate(signals):
            await sem.acquire()
            tasks.append(asyncio.get_running_loop().create_task(send(sig)))
            if i == kill_after:
                pid = node.call_supervisor("pid", role)
                os.kill(pid, signal.SIGKILL)
                killed.set()
        await asyncio.gather(*tasks)
        deadline = time.monotonic() + 60
        accepted = {rid for rid, st in replies.items() if st == "ACCEPTED"}
        while time.monotonic() < deadline and not accepted <= terminal.keys():
            await asyncio.sleep(0.2)
        listener.cancel()
    return {"signals": signals, "replies": replies, "terminal": terminal, "retries": retries, "accepted": accepted}


@pytest.mark.parametrize("role", ["engine", "validator", "ledger"])
def test_kill_minus_nine_mid_burst_executes_every_ack_exactly_once(node, role):
    before = node.stats()["supervisor"]
    failovers_before, restarts_before = len(before["failovers"]), len(before["restarts"])
    orders_before = len(node.call("broker", "orders"))
    out = asyncio.run(burst_with_kill(node, role, kill_after=1_500))
    signals, replies, accepted = out["signals"], out["replies"], out["accepted"]
    assert len(replies) == N_SIGNALS, "a reply (after retries) for every signal"
    assert accepted == {s.request_id for s in signals}, {st for st in replies.values()}
    # the broker's truth: one order per accepted signal, fills adding up to the order
    orders = {o.client_order_id: o for o in node.call("broker", "orders")}
    ours = {client_order_id_for(signal_id_for(s.request_id)) for s in signals}
    missing = [c for c in ours if c not in orders]
    assert not missing, ("accepted but never executed", len(missing), missing[:3], node.stats())
    assert len(orders) == orders_before + N_SIGNALS  # and nothing else (no duplicate ids exist at the venue)
    assert all(orders[c].kind is ExecKind.FILL for c in ours)
    stats = node.stats()
    deadline = time.monotonic() + 60  # a restart runs beside the burst (a ledger's start migrates first)
    while role != "engine" and len(stats["supervisor"]["restarts"]) == restarts_before and time.monotonic() < deadline:
        time.sleep(0.5)
        stats = node.stats()
    if role == "engine":
        failovers = stats["supervisor"]["failovers"][failovers_before:]
        assert failovers and failovers[0]["reason"] == "heartbeat", stats["supervisor"]
    else:
        restarts = stats["supervisor"]["restarts"][restarts_before:]
        assert restarts and restarts[0]["role"] == role, stats["supervisor"]
    assert accepted <= out["terminal"].keys(), "every accepted signal's final state reached the client"
    # and the ledger in PostgreSQL holds exactly the broker's fills (swept after the kill)
    from actors.ledger import ledger_fills

    broker_fills = {f.exec_id: f for f in node.call("broker", "fills")}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = asyncio.run(ledger_fills(node.database_url))
        if len(rows) >= len(broker_fills):
            break
        time.sleep(0.5)
    assert {r["exec_id"] for r in rows} == set(broker_fills)
    for r in rows:
        assert float(r["qty"]) == broker_fills[r["exec_id"]].last_qty
