"""The reconciler around broker-adapter kills, on a whole node with its ledger (issue 11).

What a trader expects after kill -9 of the broker adapter (and of the reconciler's host) under load:
every accepted signal is at the venue exactly once, the reconciliation runs that follow find nothing
that fails closed, and the node keeps trading (no HALTED). And of the halts a reconciliation places:
a RECONCILE_FAILED halt (the books could not be read) is lifted by the reconciler itself at its next
run that compares clean, also across a validator restart; an operator's halt, and a drift halt, stay.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import asyncpg
import pytest

from node.client import AsyncExecutionClient
from node.demo import make_signals
from node.messages import Signal
from node.orders import client_order_id_for, signal_id_for
from node.reconcile_halts import FAILED_BY
from tests.chaos.paper_exchange import burst
from tests.waits import wait_for

pytestmark = pytest.mark.chaos

N_SIGNALS = 3_000


def _kill(node, role: str) -> int:
    """kill -9 `role` once it answers (a kill before is still being repaired under load)."""
    pids: list[int] = []

    def answers() -> bool:
        try:
            pids.append(node.call_supervisor("pid", role))
            return True
        except Exception:  # noqa: BLE001 - restarting
            return False

    wait_for(answers, timeout_s=120)
    os.kill(pids[-1], signal.SIGKILL)
    return pids[-1]


def _back(node, role: str, old_pid: int) -> bool:
    try:
        return node.call_supervisor("pid", role) != old_pid
    except Exception:  # noqa: BLE001 - still restarting
        return False


async def _one(node, strategy_id: str, request_id: str) -> str:
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    async with AsyncExecutionClient(node.registry["intake"], key_id, secret, timeout_s=5.0) as client:
        reply = await client.send_signal(Signal(request_id=request_id, strategy_id=strategy_id, timestamp=time.time(),
                                                symbol="AAPL", action="BUY", quantity=1.0))
        return reply.status if reply.status == "ACCEPTED" else ",".join(reply.reasons or ())


async def _runs(url: str, since: float) -> list:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch("SELECT trigger, matched, error, actions::text AS actions FROM reconciliation_runs "
                                "WHERE started_at >= to_timestamp($1) ORDER BY started_at", since)
    finally:
        await conn.close()


def test_broker_and_reconciler_kills_under_load_leave_the_node_trading(module_ledger_node):
    node = module_ledger_node
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    signals = make_signals(N_SIGNALS, {s.symbol: s.price for s in node.cfg.broker.paper.symbols}, seed=11,
                           bad_every=0)
    t0 = time.time()
    killed: dict[str, int] = {}

    async def kill(i):
        role = {N_SIGNALS // 4: "broker", N_SIGNALS // 2: "reconciler", 3 * N_SIGNALS // 4: "broker"}.get(i)
        if role is not None:
            killed[role + str(i)] = await asyncio.get_running_loop().run_in_executor(None, _kill, node, role)

    replies = asyncio.run(burst(node.registry["intake"], key_id, secret, signals, kill))
    assert len(killed) == 3
    accepted = [rid for rid, st in replies.items() if st == "ACCEPTED"]
    refused = {st for st in replies.values() if st != "ACCEPTED"}
    assert len(replies) == N_SIGNALS and not refused, refused  # the kills cost no signal a refusal

    wanted = {client_order_id_for(signal_id_for(rid)) for rid in accepted}

    def at_venue() -> bool:
        try:
            ids = [o.client_order_id for o in node.call("broker", "orders")]
        except Exception:  # noqa: BLE001 - the adapter is restarting
            return False
        assert len(ids) == len(set(ids)), "no client order id twice at the venue"
        return wanted <= set(ids)

    wait_for(at_venue, timeout_s=90)  # every accepted signal is at the venue: none lost
    for key, pid in killed.items():  # the killed roles are back (under load a restart takes a while)
        role = key.rstrip("0123456789")
        wait_for(lambda: _back(node, role, pid), timeout_s=120)
    # a reconciliation now (the supervisor ran some after each kill): nothing fails closed
    summary = node.call_supervisor("reconcile", "manual")
    assert not summary["error"] and not summary["actions"], summary
    runs = asyncio.run(_runs(node.cfg.storage.database_url, t0))
    assert runs  # this one, and those of the broker restarts that ran while a reconciler was up
    assert [r for r in runs if r["actions"] != "[]"] == [], "no run placed a halt"
    # and the node trades
    assert asyncio.run(_one(node, "after-kills", "rk-after-" + str(time.time_ns()))) == "ACCEPTED"


def test_only_the_reconcilers_failed_halt_is_lifted_by_a_clean_run_across_a_validator_restart(module_ledger_node):
    node = module_ledger_node
    run = str(time.time_ns())
    # what a start-up run that could not read the broker placed, an operator's halt, a drift halt
    node.call("validator", "set_state", "HALTED", None, FAILED_BY)
    node.call("validator", "set_state", "HALTED", "op-" + run)
    node.call("validator", "set_state", "HALTED", "drift-" + run, "reconciler:RECONCILE_POSITION_DRIFT")
    assert asyncio.run(_one(node, "any-" + run, "h-1-" + run)) == "HALTED"
    old = _kill(node, "validator")  # the states, and who set them, come back from the control stream
    wait_for(lambda: _back(node, "validator", old), timeout_s=60)
    assert asyncio.run(_one(node, "any-" + run, "h-2-" + run)) == "HALTED"

    summary = node.call_supervisor("reconcile", "manual")
    assert not summary["error"] and not summary["actions"], summary
    assert summary["lifted"] == ["*"]  # the node-wide RECONCILE_FAILED halt, and only it
    assert asyncio.run(_one(node, "any-" + run, "h-3-" + run)) == "ACCEPTED"
    assert asyncio.run(_one(node, "op-" + run, "h-4-" + run)) == "HALTED"  # the operator's: stays
    assert asyncio.run(_one(node, "drift-" + run, "h-5-" + run)) == "HALTED"  # the drift's: stays, for an operator
    again = node.call_supervisor("reconcile", "manual")
    assert again["lifted"] == []  # lifted once


def test_a_start_up_run_while_the_broker_adapter_restarts_ends_with_the_node_trading(module_ledger_node):
    node = module_ledger_node
    t0 = time.time()
    old = _kill(node, "broker")
    # the run a node starts with, now: its first try finds the adapter dead; it tries again, and if
    # none of its tries compared it halts the node, which its next clean run lifts
    summary = node.call_supervisor("reconcile", "startup")
    assert not summary["actions"] or [(a["state"], a["reason"]) for a in summary["actions"]] == [
        ("HALTED", "RECONCILE_FAILED")], summary
    wait_for(lambda: _back(node, "broker", old), timeout_s=90)

    def trading() -> bool:
        rec = node.stats()["reconciler"]
        return not rec["failed_halt"] and asyncio.run(_one(node, "st-" + str(t0), "su-" + str(time.time_ns()))) == "ACCEPTED"

    wait_for(trading, timeout_s=90)
    runs = asyncio.run(_runs(node.cfg.storage.database_url, t0))
    startup = [r for r in runs if r["trigger"] == "startup"]
    assert startup, runs  # each try is a run of its own
    if not summary["actions"]:
        assert not startup[-1]["error"], runs  # a later try compared
    assert all(r["actions"] == "[]" for r in runs if r["trigger"] != "startup"), runs  # no other run halted


def test_a_restarted_reconciler_lifts_its_predecessors_failed_halt_at_once(module_ledger_node):
    """A RECONCILE_FAILED halt in force, and the reconciler that placed it killed -9: its replacement
    runs at once (trigger `restart`) and lifts it; it waited for the next scheduled run (60 s)."""
    node = module_ledger_node
    run = str(time.time_ns())
    node.call("validator", "set_state", "HALTED", None, FAILED_BY)
    assert asyncio.run(_one(node, "rr-" + run, "rr-1-" + run)) == "HALTED"
    t0 = time.time()
    old = _kill(node, "reconciler")
    wait_for(lambda: _back(node, "reconciler", old), timeout_s=60)
    wait_for(lambda: asyncio.run(_one(node, "rr-" + run, "rr-" + str(time.time_ns()))) == "ACCEPTED", timeout_s=30)
    runs = asyncio.run(_runs(node.cfg.storage.database_url, t0))
    assert "restart" in [r["trigger"] for r in runs], runs
