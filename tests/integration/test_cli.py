"""The CLI as a person runs it: `execnode send` against a running node, `execnode demo --json`,
and one-line errors instead of tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

EXECNODE = str(Path(sys.executable).parent / "execnode")


def run(*args: str, env: dict | None = None, timeout: float = 240, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([EXECNODE, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def node(module_node):
    return module_node


def test_send_prints_the_reply_and_the_fill(node):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    out = run("send", "--endpoint", node.registry["intake"], "--key-id", key_id, "--secret", secret,
              "--symbol", "AAPL", "--action", "BUY", "--quantity", "10", "--wait-fill", "--strategy", "cli")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines[0]["status"] == "ACCEPTED"
    assert lines[-1]["kind"] == "FILL" and lines[-1]["cum_qty"] == 10.0


def test_send_rejected_exits_1_with_reasons(node):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    out = run("send", "--endpoint", node.registry["intake"], "--key-id", key_id, "--secret", secret,
              "--symbol", "AAPL", "--action", "BUY", "--quantity", "10", "--notional", "100")
    assert out.returncode == 1
    assert json.loads(out.stdout)["reasons"] == ["SIZE_SPEC"]


def test_send_to_nothing_is_one_clear_line(tmp_path):
    out = run("send", "--endpoint", "tcp://127.0.0.1:9", "--key-id", "k", "--secret", "s", "--timeout", "0.3",
              "--symbol", "AAPL", "--action", "BUY", "--quantity", "1")
    assert out.returncode == 2
    assert out.stderr.strip() == "execnode: no reply from tcp://127.0.0.1:9 within 0.3 s"


def test_bad_config_is_one_clear_line(tmp_path):
    cfg = tmp_path / "node.toml"
    cfg.write_text("[risk]\nmax_quantity = -5\n")
    out = run("--config", str(cfg), "send", "--symbol", "AAPL", "--action", "BUY", "--quantity", "1", cwd=str(tmp_path))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "max_quantity" in out.stderr


def test_unreachable_redis_is_one_clear_line(tmp_path):
    env = dict(os.environ, REDIS_URL="redis://127.0.0.1:1/0", DATABASE_URL=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    out = run("demo", "--signals", "10", env=env, cwd=str(tmp_path), timeout=60)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "redis://127.0.0.1:1/0" in out.stderr


def test_the_demo_twice_on_the_same_stores_is_clean_both_times_and_leaves_nothing(tmp_path, redis_url):
    """A user runs the demo twice: the second run neither adopts the first's orders nor starts
    HALTED on the first's ledger (each run is a node of its own), and neither leaves keys behind."""
    ids = []
    for _ in range(2):
        out = run("demo", "--signals", "500", "--json", "--quiet", cwd=str(tmp_path))
        assert out.returncode == 0, out.stderr[-2000:]
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        for key in ("sent", "accepted", "rejected", "filled", "lost", "duplicates", "p50_us", "p99_us", "fill_p50_us", "fill_p99_us"):
            assert key in summary
        assert summary["sent"] == 500 and summary["lost"] == 0 and summary["duplicates"] == 0, summary
        assert summary["accepted"] + summary["rejected"] == 500
        assert summary["filled"] == summary["accepted"] > 0
        assert "HALTED" not in summary["reasons"], summary["reasons"]
        assert summary["node"].get("reconciler", {}).get("last_matched") is not False, summary["node"].get("reconciler")
        ids.append(summary["node_id"])
    assert ids[0] != ids[1]
    client = redis.Redis.from_url(redis_url)
    try:
        assert [k for i in ids for k in client.scan_iter(match=i + ".*")] == []  # its keys went with it
    finally:
        client.close()
