"""Operating a running node from the shell: `execnode up`, then status, admin, failover, failback."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

EXECNODE = str(Path(sys.executable).parent / "execnode")


def run(*args: str, cwd: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([EXECNODE, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_up_then_operate_it(tmp_path, redis_url, database_url):
    run_id = secrets.token_hex(3)  # controls and risk state now survive a restart: a fresh node per run
    (tmp_path / "node.toml").write_text(
        ('node_id = "cli-op-RUN"\nray_namespace = "cli-op"\n'
         # failure detection in 1 s, not the default 60 ms: every CLI call here starts a Python process,
         # and on a loaded 2-core host that stalls the engines past 60 ms (the leader then flapped
         # alpha -> beta -> alpha every few seconds, epoch 6 by the manual failover); this test is about
         # operating the node, tests/chaos/test_kill_restart.py about how fast a death is noticed
         'heartbeat_interval_ms = 100\nheartbeat_misses = 10\n'
         '[api]\nport = 0\n[intake]\nport = 0\n'
         '[storage]\nsignals_stream = "cliopRUN.signals"\nevents_stream = "cliopRUN.events"\n'
         'intake_stream = "cliopRUN.intake"\ncontrols_stream = "cliopRUN.controls"\nledger = false\n'
         'monitoring_stream = "cliopRUN.monitoring"\nshadow_stream = "cliopRUN.shadow"\n'
         'allow_volatile_redis = true\n'  # the machine's Redis runs with appendonly no
         ).replace("RUN", run_id) +
        '[[engines]]\nname = "alpha"\n[[engines]]\nname = "beta"\n'
    )
    env = dict(os.environ, REDIS_URL=redis_url, DATABASE_URL=database_url)
    up = subprocess.Popen([EXECNODE, "--config", "node.toml", "up", "--no-dashboard"], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (tmp_path / ".data" / "endpoints.json").exists():
            assert up.poll() is None, up.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        cfg = ["--config", "node.toml"]
        status = json.loads(run(*cfg, "status", "--json", cwd=tmp_path).stdout)
        assert status["stats"]["supervisor"]["leader"] == "alpha"
        assert [e["name"] for e in status["view"]["engines"]] == ["alpha", "beta"]
        sent = run(*cfg, "send", "--symbol", "AAPL", "--action", "BUY", "--quantity", "5", cwd=tmp_path)
        assert json.loads(sent.stdout)["status"] == "ACCEPTED", sent.stderr
        # 3% under the market: it rests (6, not 5: the same size within risk's duplicate window of the
        # order above, 1 s by default, is DUPLICATE_ORDER, and a quiet machine sends both within it)
        resting = run(*cfg, "send", "--symbol", "AAPL", "--action", "BUY", "--quantity", "6", "--order-type", "LIMIT",
                      "--limit-price", "223", cwd=tmp_path)
        assert json.loads(resting.stdout)["status"] == "ACCEPTED", resting.stdout + resting.stderr
        deadline = time.monotonic() + 60  # the leader holds it (a kill --cancel-open before that finds nothing)
        while not any(e["name"] == "alpha" and e["in_flight"] >= 1
                      for e in json.loads(run(*cfg, "status", "--json", cwd=tmp_path).stdout)["view"]["engines"]):
            assert time.monotonic() < deadline, "the resting order never reached the leader"
            time.sleep(0.2)
        wrong = run(*cfg, "admin", "unkill", "--cancel-open", cwd=tmp_path)
        assert wrong.returncode == 2 and "--cancel-open goes with admin kill" in wrong.stderr
        killed_open = run(*cfg, "admin", "kill", "--cancel-open", cwd=tmp_path)
        assert killed_open.returncode == 0, killed_open.stderr
        assert json.loads(killed_open.stdout)["result"]["canceled"]["default"]["canceled"] == 1, killed_open.stdout
        killed = run(*cfg, "send", "--symbol", "AAPL", "--action", "BUY", "--quantity", "5", cwd=tmp_path)
        assert json.loads(killed.stdout)["reasons"] == ["KILL_SWITCH"]
        assert run(*cfg, "admin", "unkill", cwd=tmp_path).returncode == 0
        limited = run(*cfg, "admin", "limits", "--limit", "max_quantity=4", cwd=tmp_path)
        assert json.loads(limited.stdout)["result"] == {"applied": True, "durable": True}, limited.stderr
        too_big = run(*cfg, "send", "--symbol", "AAPL", "--action", "BUY", "--quantity", "5", cwd=tmp_path)
        assert json.loads(too_big.stdout)["reasons"] == ["MAX_QUANTITY"]
        shown = json.loads(run(*cfg, "admin", "controls", cwd=tmp_path).stdout)["result"]
        assert shown["limits"] == {"max_quantity": 4.0}
        assert run(*cfg, "admin", "limits", "--limit", "max_quantity=100000", cwd=tmp_path).returncode == 0
        bad = run(*cfg, "admin", "limits", "--limit", "max_symbols=3", cwd=tmp_path)
        assert bad.returncode != 0 and "UNKNOWN_LIMIT" in bad.stderr, bad.stderr
        missing = run(*cfg, "admin", "pause", cwd=tmp_path)
        assert missing.returncode == 2 and "needs --strategy" in missing.stderr
        moved = json.loads(run(*cfg, "failover", "--to", "beta", cwd=tmp_path).stdout)
        assert moved["to"] == "beta" and moved["epoch"] == 2
        back = json.loads(run(*cfg, "failback", cwd=tmp_path).stdout)
        assert back["to"] == "alpha" and back["epoch"] == 3
        again = run(*cfg, "send", "--symbol", "MSFT", "--action", "SELL", "--quantity", "3", "--wait-fill", cwd=tmp_path)
        assert json.loads(again.stdout.splitlines()[-1])["kind"] == "FILL"
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
