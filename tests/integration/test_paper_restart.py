"""`execnode up` on the embedded defaults (paper venue, embedded Redis and PostgreSQL under a fresh
data folder), trade, stop, `up` again: the paper account is the one the ledger remembers, so the
start-up reconciliation matches, nothing is HALTED, the node trades on, and a manual run matches."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

EXECNODE = str(Path(sys.executable).parent / "execnode")
#: two cold starts of a whole node with its embedded Redis and PostgreSQL (initdb on the first):
#: ~200 s at a load average of 20 on the 2-core machine, more under heavier load
pytestmark = pytest.mark.timeout(600)


def run(*args: str, cwd, env, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([EXECNODE, "--config", "node.toml", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def up(cwd: Path, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([EXECNODE, "--config", "node.toml", "up", "--no-dashboard"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not (cwd / ".data" / "endpoints.json").exists():
        if proc.poll() is not None:
            raise AssertionError("execnode up exited %s: %s" % (proc.returncode, proc.stderr.read()))
        assert time.monotonic() < deadline, "execnode up: no endpoints.json in 180 s"
        time.sleep(0.2)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(90)


def fill(cwd: Path, secret: str, symbol: str, action: str, qty: float) -> None:
    """One signal through the node's intake (the client Optimus uses), waited for until its FILL."""
    from node.client import ExecutionClient

    intake = json.loads((cwd / ".data" / "endpoints.json").read_text())["intake"]
    with ExecutionClient(intake, "optimus", secret, timeout_s=30) as client:
        client.subscribe("s1")
        time.sleep(0.2)
        reply = client.send_signal({"strategy_id": "s1", "symbol": symbol, "action": action, "quantity": qty})
        assert reply.status == "ACCEPTED", reply  # a HALTED or REDUCING strategy would be refused
        for ev in client.events(timeout_s=30):
            if ev.request_id == reply.request_id and ev.kind == "FILL":
                return
    raise AssertionError("no FILL for " + reply.request_id)


def reconciled(cwd, env) -> dict:
    """`execnode reconcile --json` until it matches (the ledger writes the last fills a moment later)."""
    deadline = time.monotonic() + 60
    while True:
        done = run("reconcile", "--json", cwd=cwd, env=env)
        summary = json.loads(done.stdout)
        if done.returncode == 0 or time.monotonic() > deadline:
            assert done.returncode == 0, done.stdout + done.stderr
            return summary
        time.sleep(1.0)


@pytest.fixture()
def fresh_dir():
    """A data folder outside pytest's tmp root: run as root, the embedded PostgreSQL runs as another
    user who must reach it, and a concurrent pytest session re-closes /tmp/pytest-of-<user> (0700)."""
    path = Path(tempfile.mkdtemp(prefix="nae-paper-restart-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_up_trade_stop_up_again_reconciles_clean(fresh_dir):
    tmp_path = fresh_dir
    ns = "paper-restart-" + str(os.getpid())
    secret = secrets.token_hex(32)
    (tmp_path / "node.toml").write_text(
        'ray_namespace = "%s"\n[signing]\nkeys = { optimus = "%s" }\n[api]\nport = 0\n[intake]\nport = 0\n'
        '[reconcile]\nsettle_ms = 500\n' % (ns, secret))
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "RAY_ADDRESS")}
    node = up(tmp_path, env)
    try:
        fill(tmp_path, secret, "AAPL", "BUY", 5)
        fill(tmp_path, secret, "MSFT", "SELL", 3)
        fill(tmp_path, secret, "AAPL", "SELL", 2)
        first = reconciled(tmp_path, env)
        assert first["matched"] is True and first["error"] == ""
    finally:
        stop(node)
    assert not (tmp_path / ".data" / "endpoints.json").exists()

    node = up(tmp_path, env)
    try:
        status = run("status", "--json", cwd=tmp_path, env=env)
        rec = json.loads(status.stdout)["stats"]["reconciler"]
        assert (rec["last_trigger"], rec["last_matched"], rec["last_error"]) == ("startup", True, ""), rec
        fill(tmp_path, secret, "AAPL", "BUY", 1)  # a HALTED strategy or node would refuse it
        again = reconciled(tmp_path, env)
        assert again["matched"] is True and again["counts"] == {} and again["booked"] == 0
    finally:
        stop(node)
    log = (tmp_path / ".data" / "node.log").read_text()
    assert "MISMATCH" not in log and "RECONCILE_FAILED" not in log, log[-3000:]
