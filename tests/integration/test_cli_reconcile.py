"""`execnode reconcile [--json]` against a node started by `execnode up` (with its ledger, on a
throwaway database): exit 0 and a JSON summary when the books match, a line a person reads without
`--json`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from node.migrations import create_database, drop_database

EXECNODE = str(Path(sys.executable).parent / "execnode")


def run(*args: str, cwd, env, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([EXECNODE, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def test_reconcile_from_the_shell(tmp_path, redis_url, database_url):
    name, url = asyncio.run(create_database(database_url, "nae_test_clirec_"))
    node_id = "cli-rec-" + name[-8:]  # its own: the paper account (in Redis under it) is this run's, as its database is
    (tmp_path / "node.toml").write_text(
        'node_id = "' + node_id + '"\nray_namespace = "cli-rec"\n[api]\nport = 0\n[intake]\nport = 0\n'
        '[storage]\nsignals_stream = "NID.signals"\nevents_stream = "NID.events"\n'
        'monitoring_stream = "NID.monitoring"\nintake_stream = "NID.intake"\nledger = true\n'
        'controls_stream = "NID.controls"\nshadow_stream = "NID.shadow"\n'
        'allow_volatile_redis = true\n'  # the machine's Redis runs with appendonly no
        '[reconcile]\nsettle_ms = 500\n'.replace("NID", node_id)  # its own streams too (node.stream_claim)
    )
    env = dict(os.environ, REDIS_URL=redis_url, DATABASE_URL=url)
    up = subprocess.Popen([EXECNODE, "--config", "node.toml", "up", "--no-dashboard"], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cfg = ["--config", "node.toml"]
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / ".data" / "endpoints.json").exists():
            assert up.poll() is None, up.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        sent = run(*cfg, "send", "--symbol", "AAPL", "--action", "BUY", "--quantity", "5", "--wait-fill",
                   cwd=tmp_path, env=env)
        assert json.loads(sent.stdout.splitlines()[-1])["kind"] == "FILL", sent.stderr
        deadline = time.monotonic() + 60
        while True:  # the ledger writes the fill a moment later; until then it is in flight or booked
            done = run(*cfg, "reconcile", "--json", cwd=tmp_path, env=env)
            summary = json.loads(done.stdout)
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        assert done.returncode == 0, done.stdout + done.stderr
        assert summary["matched"] is True and summary["trigger"] == "manual" and summary["error"] == ""
        assert summary["brokers"] == ["broker:paper"]
        people = run(*cfg, "reconcile", cwd=tmp_path, env=env)
        assert people.returncode == 0 and "MATCHED" in people.stdout
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
        asyncio.run(drop_database(database_url, name))
