"""kill -9 the broker adapter, or the whole node, mid-burst, with the paper exchange in its own
process (as a real broker is): every ACKed signal is executed exactly once at the exchange, and the
client got a reply for every signal (retrying timeouts with the same request_id)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
import zmq

from node.client import AsyncExecutionClient
from node.config import BrokerConfig
from node.demo import make_signals
from nae_client.errors import TransportError  # what the client raises
from node.messages import OrdersReport, QueryOrders, broker_event_decoder, encode
from node.orders import client_order_id_for, signal_id_for
from node.runtime import NodeRuntime, quiet

pytestmark = pytest.mark.chaos
EXECNODE = str(Path(sys.executable).parent / "execnode")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def exchange():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "actors.exchange", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "paper exchange on" in proc.stdout.readline()
    yield "tcp://127.0.0.1:%d" % port
    proc.terminate()
    proc.wait(10)


def exchange_orders(endpoint: str) -> list:
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    dealer.send(encode(QueryOrders(0, "test")))
    try:
        while dealer.poll(10_000):
            msg = broker_event_decoder.decode(dealer.recv())
            if type(msg) is OrdersReport:
                return msg.orders
        raise AssertionError("the exchange did not answer")
    finally:
        dealer.close(0)


async def burst(intake: str, key_id: str, secret: str, signals, on_progress=None) -> dict[str, str]:
    """Send every signal (128 in flight), retrying timeouts with the same request_id."""
    replies: dict[str, str] = {}
    sem = asyncio.Semaphore(128)
    async with AsyncExecutionClient(intake, key_id, secret, timeout_s=1.0) as client:

        async def one(sig):
            try:
                for _ in range(120):
                    try:
                        replies[sig.request_id] = (await client.send_signal(sig)).status
                        return
                    except TransportError:
                        await asyncio.sleep(0.25)
            finally:
                sem.release()

        tasks = []
        for i, sig in enumerate(signals):
            await sem.acquire()
            tasks.append(asyncio.get_running_loop().create_task(one(sig)))
            if on_progress is not None:
                await on_progress(i)
        await asyncio.gather(*tasks)
    return replies


def check_exactly_once(endpoint: str, signals, replies: dict[str, str]) -> None:
    assert len(replies) == len(signals), "a reply for every signal"
    accepted = [rid for rid, st in replies.items() if st == "ACCEPTED"]
    assert len(accepted) == len(signals), {st for st in replies.values()}
    deadline = time.monotonic() + 30
    while True:
        orders = exchange_orders(endpoint)
        ids = [o.client_order_id for o in orders]
        if all(client_order_id_for(signal_id_for(r)) in set(ids) for r in accepted) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(ids) == len(set(ids)), "no client order id twice at the venue"
    missing = [r for r in accepted if client_order_id_for(signal_id_for(r)) not in set(ids)]
    assert not missing, "%d acked signals never executed" % len(missing)


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


def risk_toml() -> str:
    """The throughput limits as a [risk] table (the node under test runs from a TOML file)."""
    from node.risk.config import RiskLimits, throughput_limits

    loose, default = throughput_limits(), RiskLimits()
    lines = ["[risk]"]
    for name in loose.__struct_fields__:
        value = getattr(loose, name)
        if value != getattr(default, name) and isinstance(value, (int, float)):
            lines.append("%s = %r" % (name, float(value) if isinstance(value, float) else value))
    return "\n".join(lines) + "\n"


def test_kill_minus_nine_whole_node_mid_burst(tmp_path, redis_url, exchange):
    run = os.urandom(4).hex()
    port = free_port()
    (tmp_path / "node.toml").write_text(
        'node_id = "whole-%s"\nray_namespace = "whole-%s"\nequity_usd = 1e10\n[api]\nport = 0\n[intake]\nport = %d\n'
        '[signing]\nkeys = { optimus = "s3cret-%s" }\n'
        '[storage]\nsignals_stream = "whole.%s.signals"\nevents_stream = "whole.%s.events"\n'
        'intake_stream = "whole.%s.intake"\nmonitoring_stream = "whole.%s.monitoring"\nledger = false\n'
        'allow_volatile_redis = true\n'  # the machine's Redis runs with appendonly no
        '[broker]\nkind = "paper-remote"\nexchange_endpoint = "%s"\n'
        % (run, run, port, run, run, run, run, run, exchange)
        + risk_toml()
    )
    env = dict(os.environ, REDIS_URL=redis_url, DATABASE_URL=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))

    def up() -> subprocess.Popen:
        proc = subprocess.Popen([EXECNODE, "--config", "node.toml", "up", "--no-dashboard"], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "Ctrl-C stops it" in line:
                return proc
            assert proc.poll() is None, "execnode up died"
        raise AssertionError("node did not come up")

    node = up()
    signals = make_signals(4_000, {"AAPL": 230.0, "MSFT": 420.0, "SPY": 590.0}, seed=12, bad_every=0)
    killed = {}

    async def kill_at(i):
        if i == 1_200:
            os.killpg(node.pid, signal.SIGKILL)  # the driver, Ray and every actor of this node
            killed["at"] = time.monotonic()
            loop = asyncio.get_running_loop()
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
