"""Nothing a trader set is forgotten (issue 11 item 1, issue 9 item 6).

- kill -9 of the validator: kill switch on, a strategy killed, one paused, one REDUCING, a position
  near its limit; the supervisor restarts the validator, and every probe that was refused before is
  refused again for the same reasons, and the limits see the same position.
- a whole-node stop and start (same config, same Redis): a node that traded 30 strategies comes back
  (saved breakers of 30 strategies restored), a killed strategy is still killed, and the ledger has
  written the controls to `strategy_state`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import asyncpg
import msgspec
import pytest

from node.client import ExecutionClient
from node.config import ReconcileConfig
from nae_client.errors import TransportError  # what the client raises
from node.reasons import Reason
from node.risk.config import throughput_limits
from node.runtime import NodeRuntime, quiet

pytestmark = pytest.mark.chaos

LIMITS = msgspec.structs.replace(throughput_limits(), max_symbol_long_usd=50_000.0, max_incremental_var_usd2=1e12)


@pytest.fixture()
def database(database_url):
    from node.migrations import create_database, drop_database

    name, url = asyncio.run(create_database(database_url, "nae_test_"))
    yield url
    asyncio.run(drop_database(database_url, name))


def _client(node: NodeRuntime) -> ExecutionClient:
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    return ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=2.0)


def _send(client: ExecutionClient, strategy: str, symbol: str, action: str, qty: float, deadline_s: float = 60.0):
    """One signal with a fresh request id, retried (same id) while the intake is down."""
    sig = {"request_id": uuid.uuid4().hex, "strategy_id": strategy, "symbol": symbol, "action": action,
           "quantity": qty}
    end = time.monotonic() + deadline_s
    while True:
        try:
            return client.send_signal(sig)
        except TransportError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


# (strategy, symbol, action, qty): each is refused once the controls below are set, except `fresh`
PROBES = [
    ("killed", "MSFT", "BUY", 1.0),
    ("paused", "MSFT", "BUY", 1.0),
    ("reducer", "NVDA", "BUY", 1.0),  # REDUCING with a long position: buying more is refused
    ("pos", "AAPL", "BUY", 100.0),  # 150 AAPL held (~34.5k USD) + 100 more > 50k per-symbol long limit
    ("big", "MSFT", "SELL", 600.0),  # over max_quantity once it is lowered to 500 at run time
]


def _probe(client: ExecutionClient) -> dict:
    return {p[0]: sorted(_send(client, *p).reasons) for p in PROBES}


def _wait(cond, what: str, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.2)


def test_kill_minus_nine_of_the_validator_forgets_no_control_and_no_position(ray_session, make_config):
    node = NodeRuntime(make_config(risk=LIMITS), quiet)
    node.start()
    try:
        with _client(node) as client:
            assert _send(client, "pos", "AAPL", "BUY", 150.0).status == "ACCEPTED"
            assert _send(client, "reducer", "NVDA", "BUY", 10.0).status == "ACCEPTED"
            # filled, not only reserved: gross exposure counts accepted orders' reservations at the
            # reference price, the variance and the snapshot's positions only fills (at the venue's price)
            held = {"pos": {"AAPL": 150.0}, "reducer": {"NVDA": 10.0}}
            _wait(lambda: node.call("validator", "positions") == held, "the fills in risk")
            exposures = node.call("validator", "exposures")  # no fill after this: no price moves either
            assert node.call("validator", "kill", "killed")["durable"] is True
            node.call("validator", "pause", "paused")
            node.call("validator", "set_state", "REDUCING", "reducer")
            node.call("validator", "set_limits", {"max_quantity": 500.0})
            refused = _probe(client)
            assert {k: v for k, v in refused.items() if k != "pos"} == {
                "killed": [Reason.STRATEGY_KILLED], "paused": [Reason.STRATEGY_PAUSED], "reducer": [Reason.REDUCE_ONLY],
                "big": [Reason.MAX_QUANTITY],
            }, refused  # fmt: skip
            assert Reason.MAX_POSITION in refused["pos"], refused  # the per-symbol long limit sees the position
            node.call("validator", "kill")  # and the node-wide kill switch
            killed_all = _probe(client)
            assert all(Reason.KILL_SWITCH in r for r in killed_all.values()), killed_all
            time.sleep(1.5)  # one snapshot period: the restart must not depend on it, but the tail is short

            before = len(node.stats()["supervisor"]["restarts"])
            os.kill(node.call_supervisor("pid", "validator"), signal.SIGKILL)
            _wait(lambda: len(node.stats()["supervisor"]["restarts"]) > before, "the validator restart")

            assert _probe(client) == killed_all  # refused again, for the same reasons
            assert node.call("validator", "positions") == held  # the same positions
            assert node.call("validator", "exposures") == pytest.approx(exposures)  # marked at the same prices
            restored = node.call("validator", "stats")["restored"]
            assert restored["snapshot"] is True, restored
            node.call("validator", "unkill")
            assert _probe(client) == refused  # each strategy's own control survived too
            assert _send(client, "fresh", "MSFT", "BUY", 1.0).status == "ACCEPTED"
    finally:
        node.stop()


def test_a_whole_node_restart_after_thirty_strategies_keeps_a_killed_strategy_killed(
    ray_session, make_config, database
):
    # the paper venue forgets its positions when the node stops, so the start-up reconciliation would
    # (rightly) halt the node on the ledger's 30 positions: off here, this test is about the controls
    cfg = make_config(database_url_override=database, risk=LIMITS, reconcile=ReconcileConfig(enabled=False))
    node = NodeRuntime(cfg, quiet)
    node.start()
    try:
        with _client(node) as client:
            for k in range(30):
                assert _send(client, "s" + str(k), "MSFT", "BUY", 1.0).status == "ACCEPTED"
            node.call("validator", "kill", "s7")
            node.call("validator", "pause", "s8")
            node.call("validator", "save_breakers")  # 30 strategy breakers in Redis (the IndexError path)
            assert Reason.STRATEGY_KILLED in _send(client, "s7", "MSFT", "BUY", 1.0).reasons
    finally:
        node.stop()

    again = NodeRuntime(cfg, quiet)
    again.start()  # before the fix: IndexError in Breakers.load, the validator never came up
    try:
        with _client(again) as client:
            assert _send(client, "s7", "MSFT", "BUY", 1.0).reasons == [Reason.STRATEGY_KILLED]
            assert _send(client, "s8", "MSFT", "BUY", 1.0).reasons == [Reason.STRATEGY_PAUSED]
            assert _send(client, "s9", "MSFT", "BUY", 1.0).status == "ACCEPTED"
        assert len(again.call("validator", "breaker_states")) >= 32

        async def rows(sql: str) -> list:
            conn = await asyncpg.connect(database)
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()

        states = "SELECT strategy_id, killed, paused, mode FROM strategy_state ORDER BY strategy_id"
        _wait(lambda: len(asyncio.run(rows(states))) >= 2, "the ledger's strategy_state rows")
        assert asyncio.run(rows(states)) == [("s7", True, False, "ACTIVE"), ("s8", False, True, "ACTIVE")]
        audit = asyncio.run(rows("SELECT kind, target FROM control_events ORDER BY stream_id"))
        assert audit == [("kill", "s7"), ("pause", "s8")]
    finally:
        again.stop()
