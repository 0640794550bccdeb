"""Helpers of the chaos tests that run the paper exchange in a process of its own (as a real broker is)
and whole nodes under `execnode up`: start and ask the exchange, burst signals at a node retrying
timeouts, check exactly-once at the venue, and write a node's TOML."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import zmq
from nae_client.errors import TransportError  # what the client raises

from node.client import AsyncExecutionClient
from node.messages import OrdersReport, QueryOrders, broker_event_decoder, encode
from node.orders import client_order_id_for, signal_id_for

EXECNODE = str(Path(sys.executable).parent / "execnode")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_exchange(config: Path | None = None, steered: bool = False) -> tuple[subprocess.Popen, str]:
    """`python -m actors.exchange` on a free port (with `config`, a TOML of its symbols): (process, endpoint).
    `steered`: the exchange of `tests/chaos/steered_exchange.py`, whose prices `steer` moves."""
    port = free_port()
    program = [str(Path(__file__).with_name("steered_exchange.py"))] if steered else ["-m", "actors.exchange"]
    args = [sys.executable, *program, "--port", str(port)]
    if config is not None:
        args += ["--config", str(config)]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE if steered else None, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert "paper exchange on" in proc.stdout.readline()
    return proc, "tcp://127.0.0.1:%d" % port


def steer(proc: subprocess.Popen, symbol: str, price: float) -> None:
    """Set `symbol`'s mid at a steered exchange to `price` (from its next tick on)."""
    assert proc.stdin is not None, "not a steered exchange"
    proc.stdin.write("%s %r\n" % (symbol, price))
    proc.stdin.flush()


def stop_exchange(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(10)


def exchange_report(endpoint: str, take_over: bool = True) -> OrdersReport:
    """Everything the exchange holds (every order and fill); `take_over=False` asks without taking the
    reports of the group over (a look that fences no one)."""
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    dealer.send(encode(QueryOrders(0, "test", take_over=take_over)))
    try:
        while dealer.poll(10_000):
            msg = broker_event_decoder.decode(dealer.recv())
            if type(msg) is OrdersReport:
                return msg
        raise AssertionError("the exchange did not answer")
    finally:
        dealer.close(0)


def exchange_orders(endpoint: str) -> list:
    return exchange_report(endpoint).orders


async def burst(intake: str, key_id: str, secret: str, signals, on_progress=None) -> dict[str, str]:
    """Send every signal (128 in flight), retrying timeouts with the same request_id."""
    replies: dict[str, str] = {}
    sem = asyncio.Semaphore(128)
    async with AsyncExecutionClient(intake, key_id, secret, timeout_s=1.0) as client:

        async def one(sig):
            try:
                for _ in range(120):
                    try:
                        reply = await client.send_signal(sig)
                        replies[sig.request_id] = reply.status
                        if reply.status != "ACCEPTED":  # shown with a failing test's output
                            print("refused", sig.request_id, [str(r) for r in reply.reasons], reply.detail)
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


def wait_leader_change(runtime, old: str, timeout_s: float = 30.0) -> str:
    """The first group's new leader once the supervisor has replaced `old` (kill -9 of it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leader = runtime.call_supervisor("stats")["supervisor"]["leader"]
        if leader not in (old, "standby", None):
            return leader
        time.sleep(0.05)
    raise AssertionError("no failover after killing " + old)


def risk_toml() -> str:
    """The throughput limits as a [risk] table (a node under test run from a TOML file)."""
    from node.risk.config import RiskLimits, throughput_limits

    loose, default = throughput_limits(), RiskLimits()
    lines = ["[risk]"]
    for name in loose.__struct_fields__:
        value = getattr(loose, name)
        if value != getattr(default, name) and isinstance(value, (int, float)):
            lines.append("%s = %r" % (name, float(value) if isinstance(value, float) else value))
    return "\n".join(lines) + "\n"


def execnode_up(cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """`execnode --config node.toml up` in `cwd`, in a session of its own (so killpg takes the driver,
    Ray and every actor), once it says it runs."""
    proc = subprocess.Popen([EXECNODE, "--config", "node.toml", "up", "--no-dashboard"], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "Ctrl-C stops it" in line:
            return proc
        assert proc.poll() is None, "execnode up died: " + line + proc.stderr.read()[-2000:] + _node_log(cwd)
    raise AssertionError("node did not come up" + _node_log(cwd))


def kill_node(proc: subprocess.Popen) -> None:
    """kill -9 of a whole node started by `execnode_up` (the driver, Ray and every actor: its process
    group), returning once every process of the group is gone: until then the data folder's lock and
    the node's ports may still be held, and an `execnode up` at once could find them taken."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    deadline = time.monotonic() + 30
    while True:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, "processes of the killed node linger"
        time.sleep(0.05)


def _node_log(cwd: Path) -> str:
    """The end of the node's log (where a start-up failure, e.g. Ray's, is written; stderr may be empty)."""
    path = Path(cwd) / ".data" / "node.log"
    return "\nnode.log: " + path.read_text(errors="replace")[-1500:] if path.exists() else ""
