"""kill -9 the broker adapter, or the whole node, mid-burst, with the paper exchange in its own
process (as a real broker is): every ACKed signal is executed exactly once at the exchange, and the
client got a reply for every signal (retrying timeouts with the same request_id)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import pytest

from node.config import BrokerConfig
from node.demo import make_signals
from node.runtime import NodeRuntime, quiet
from tests.chaos.paper_exchange import (
    burst,
    check_exactly_once,
    execnode_up,
    free_port,
    kill_node,
    risk_toml,
    start_exchange,
    stop_exchange,
)

pytestmark = pytest.mark.chaos


@pytest.fixture()
def exchange():
    proc, endpoint = start_exchange()
    yield endpoint
    stop_exchange(proc)


def test_kill_minus_nine_broker_adapter_mid_burst(ray_session, make_config, exchange):
    cfg = make_config(broker=BrokerConfig(kind="paper-remote", exchange_endpoint=exchange))
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    key_id, secret = next(iter(cfg.signing.keys.items()))
    signals = make_signals(5_000, {s.symbol: s.price for s in cfg.broker.paper.symbols}, seed=11, bad_every=0)

    async def kill_at(i):
        if i == 1_500:
            pid = await asyncio.get_running_loop().run_in_executor(None, runtime.call_supervisor, "pid", "broker")
            os.kill(pid, signal.SIGKILL)

    try:
        replies = asyncio.run(burst(runtime.registry["intake"], key_id, secret, signals, kill_at))
        check_exactly_once(exchange, signals, replies)
        restarts = runtime.stats()["supervisor"]["restarts"]
        assert any(r["role"] == "broker" and "error" not in r["resync"] for r in restarts), restarts
    finally:
        runtime.stop()


def test_kill_minus_nine_whole_node_mid_burst(tmp_path, redis_url, exchange):
    run = os.urandom(4).hex()
    port = free_port()
    (tmp_path / "node.toml").write_text(
        'node_id = "whole-%s"\nray_namespace = "whole-%s"\nequity_usd = 1e10\n[api]\nport = 0\n[intake]\nport = %d\n'
        '[signing]\nkeys = { optimus = "s3cret-%s" }\n'
        '[storage]\nsignals_stream = "whole.%s.signals"\nevents_stream = "whole.%s.events"\n'
        'intake_stream = "whole.%s.intake"\nmonitoring_stream = "whole.%s.monitoring"\nledger = false\n'
        'controls_stream = "whole.%s.controls"\nshadow_stream = "whole.%s.shadow"\n'
        'allow_volatile_redis = true\n'  # the machine's Redis runs with appendonly no
        '[broker]\nkind = "paper-remote"\nexchange_endpoint = "%s"\n'
        % (run, run, port, run, run, run, run, run, run, run, exchange)
        + risk_toml()
    )
    env = dict(os.environ, REDIS_URL=redis_url, DATABASE_URL=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))

    def up() -> subprocess.Popen:
        return execnode_up(tmp_path, env)

    node = up()
    signals = make_signals(4_000, {"AAPL": 230.0, "MSFT": 420.0, "SPY": 590.0}, seed=12, bad_every=0)
    killed = {}

    async def kill_at(i):
        if i == 1_200:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, kill_node, node)  # the driver, Ray and every actor of this node
            killed["at"] = time.monotonic()
            killed["node"] = await loop.run_in_executor(None, up)

    try:
        replies = asyncio.run(burst("tcp://127.0.0.1:%d" % port, "optimus", "s3cret-" + run, signals, kill_at))
        check_exactly_once(exchange, signals, replies)
    finally:
        for proc in (node, killed.get("node")):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
