"""`execnode up` as a new user runs it: no flags, no config, no environment (embedded Redis and
PostgreSQL under ./.data, the paper broker, default ports). A second `up` on the same folder is
refused in one line and leaves the first node trading; after a clean stop the endpoints file is
gone and `status` / `admin kill` answer in one line within a bounded time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

EXECNODE = str(Path(sys.executable).parent / "execnode")
BOUND_S = 20.0


def run(*args: str, cwd: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([EXECNODE, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def bare_env() -> dict:
    drop = ("REDIS_URL", "DATABASE_URL", "RAY_ADDRESS", "NAE_SIGNING_KEYS")
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_up_with_no_flags_refuses_a_second_and_stops_clean(tmp_path):
    env = bare_env()
    up = subprocess.Popen([EXECNODE, "up"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True)
    ep_file = tmp_path / ".data" / "endpoints.json"
    try:
        deadline = time.monotonic() + 240
        while not ep_file.exists():
            assert up.poll() is None, up.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no endpoints.json after 240 s"
            time.sleep(0.5)
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
        assert machine["view"]["groups"][0]["leader"] == "native" and machine["view"]["ready"] is True
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(120)
    assert up.returncode == 0, up.stderr.read()[-3000:]
    assert not ep_file.exists()

    for argv in (("status",), ("admin", "kill")):
        t0 = time.monotonic()
        out = run(*argv, cwd=tmp_path, env=env, timeout=BOUND_S * 3)
        took = time.monotonic() - t0
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no running node" in out.stderr, out.stderr
        assert took < BOUND_S, took

    log = (tmp_path / ".data" / "node.log").read_text()
    assert "start" in log and "stop" in log
    key = (tmp_path / ".data" / "signing.key").read_text().strip().partition(":")[2]
    assert key and key not in log
