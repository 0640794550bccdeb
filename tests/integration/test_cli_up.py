"""`execnode up` as a new user runs it: no flags, no config, no environment (embedded Redis and
PostgreSQL under ./.data, the paper broker, default ports). A second `up` on the same folder is
refused in one line and leaves the first node trading; after a clean stop the endpoints file is
gone and `status` / `admin kill` answer in one line within a bounded time. Then `up` again on the
same folder: the paper account is the one the ledger remembers, so the start-up reconciliation
matches, nothing is HALTED, the node trades on, and a manual run matches (one cold start of the
embedded stores for both, which were two tests each paying it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

EXECNODE = str(Path(sys.executable).parent / "execnode")
BOUND_S = 20.0
#: two starts of a whole node with its embedded Redis and PostgreSQL (initdb on the first)
pytestmark = pytest.mark.timeout(600)


def run(*args: str, cwd: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([EXECNODE, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def bare_env() -> dict:
    drop = ("REDIS_URL", "DATABASE_URL", "RAY_ADDRESS", "NAE_SIGNING_KEYS")
    return {k: v for k, v in os.environ.items() if k not in drop}


def start_up(cwd: Path, env: dict) -> subprocess.Popen:
    up = subprocess.Popen([EXECNODE, "up"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True)
    ep_file = cwd / ".data" / "endpoints.json"
    deadline = time.monotonic() + 240
    while not ep_file.exists():
        assert up.poll() is None, up.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no endpoints.json after 240 s"
        time.sleep(0.5)
    return up


def stop_up(up: subprocess.Popen) -> None:
    up.send_signal(signal.SIGINT)
    up.wait(120)
    assert up.returncode == 0, up.stderr.read()[-3000:]


def fill(cwd: Path, symbol: str, action: str, qty: float) -> None:
    """One signal through the node's intake (the client Optimus uses, the dev key `up` made), waited
    for until its FILL."""
    from node.client import ExecutionClient

    key_id, _, secret = (cwd / ".data" / "signing.key").read_text().strip().partition(":")
    intake = json.loads((cwd / ".data" / "endpoints.json").read_text())["intake"]
    with ExecutionClient(intake, key_id, secret, timeout_s=30) as client:
        client.subscribe("s1")  # returns once the events relay holds it
        reply = client.send_signal({"strategy_id": "s1", "symbol": symbol, "action": action, "quantity": qty})
        assert reply.status == "ACCEPTED", reply  # a HALTED or REDUCING strategy would be refused
        for ev in client.events(timeout_s=30):
            if ev.request_id == reply.request_id and ev.kind == "FILL":
                return
    raise AssertionError("no FILL for " + reply.request_id)


def reconciled(cwd: Path, env: dict) -> dict:
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
    path = Path(tempfile.mkdtemp(prefix="nae-cli-up-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_up_with_no_flags_refuses_a_second_stops_clean_and_up_again_reconciles_clean(fresh_dir):
    tmp_path = fresh_dir
    env = bare_env()
    ep_file = tmp_path / ".data" / "endpoints.json"
    up = start_up(tmp_path, env)
    try:
        endpoints = json.loads(ep_file.read_text())
        assert endpoints["pid"] == up.pid
        api = endpoints["api"]
        assert httpx.get(api + "/livez", timeout=10).status_code == 200
        ready = httpx.get(api + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        health = httpx.get(api + "/health", timeout=10).json()
        assert health["status"] == "ok" and health["components"]["redis"]["status"] == "up"
        assert health["components"]["postgresql"]["status"] == "up"

        second = run("up", cwd=tmp_path, env=env, timeout=60)
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1 and "in use by a running node" in second.stderr, second.stderr
        assert "pid=%d" % up.pid in second.stderr

        # the first node still trades: its embedded stores were not touched
        assert httpx.get(api + "/readyz", timeout=10).status_code == 200
        sent = run("send", "--symbol", "AAPL", "--action", "BUY", "--quantity", "5", "--wait-fill", cwd=tmp_path,
                   env=env)
        assert json.loads(sent.stdout.splitlines()[0])["status"] == "ACCEPTED", sent.stdout + sent.stderr
        assert json.loads(sent.stdout.splitlines()[-1])["kind"] == "FILL"

        table = run("status", cwd=tmp_path, env=env)
        assert table.returncode == 0, table.stderr
        for word in ("GROUP", "ENGINE", "BROKER", "default", "leader", "paper", "breakers:", "stranded", "ledger"):
            assert word in table.stdout, (word, table.stdout)
        machine = json.loads(run("status", "--json", cwd=tmp_path, env=env).stdout)
        view = machine["view"]
        group = view["groups"][0]
        roles = {e["name"]: e["role"] for e in view["engines"]}
        assert view["ready"] is True and roles.get(group["leader"]) == "leader", view
        # the default pair: "native" leads, unless the node says it failed over (the 60 ms default
        # detection on a loaded 2-core host can): the status an operator reads is the truth either way
        assert group["leader"] == "native" or view["failovers"] > 0, view

        fill(tmp_path, "AAPL", "BUY", 5)
        fill(tmp_path, "MSFT", "SELL", 3)
        fill(tmp_path, "AAPL", "SELL", 2)
        first = reconciled(tmp_path, env)
        assert first["matched"] is True and first["error"] == ""
    finally:
        stop_up(up)
    assert not ep_file.exists()

    for argv in (("status",), ("admin", "kill")):
        t0 = time.monotonic()
        out = run(*argv, cwd=tmp_path, env=env, timeout=BOUND_S * 3)
        took = time.monotonic() - t0
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no running node" in out.stderr, out.stderr
        assert took < BOUND_S, took

    # up again on the same folder: the paper account and the ledger agree
    up = start_up(tmp_path, env)
    try:
        status = run("status", "--json", cwd=tmp_path, env=env)
        rec = json.loads(status.stdout)["stats"]["reconciler"]
        assert (rec["last_trigger"], rec["last_matched"], rec["last_error"]) == ("startup", True, ""), rec
        fill(tmp_path, "AAPL", "BUY", 1)  # a HALTED strategy or node would refuse it
        again = reconciled(tmp_path, env)
        assert again["matched"] is True and again["counts"] == {} and again["booked"] == 0
    finally:
        stop_up(up)
    assert not ep_file.exists()

    log = (tmp_path / ".data" / "node.log").read_text()
    assert "start" in log and "stop" in log
    assert "MISMATCH" not in log and "RECONCILE_FAILED" not in log, log[-3000:]
    key = (tmp_path / ".data" / "signing.key").read_text().strip().partition(":")[2]
    assert key and key not in log
