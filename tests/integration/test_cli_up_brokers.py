"""Issue 13's "done when": `execnode up --config` with a Schwab group and an IBKR group, each against
its broker's fake started by the test; a signal of each group executes at its own fake."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import time

from node.config import SchwabConfig
from node.migrations import apply_migrations, create_database, drop_database
from tests.fakes.schwab_fake import SchwabFake
from tests.fakes.tws_fake import TwsFake
from tests.integration.test_cli_operate import EXECNODE, run
from tests.integration.test_schwab_venue import seed_token

CONFIG = """node_id = "cli-brk-RUN"
ray_namespace = "cli-brk-RUN"
reject_unrouted = true
[api]
port = 0
[intake]
port = 0
[storage]
signals_stream = "clibrkRUN.signals"
events_stream = "clibrkRUN.events"
intake_stream = "clibrkRUN.intake"
controls_stream = "clibrkRUN.controls"
monitoring_stream = "clibrkRUN.monitoring"
shadow_stream = "clibrkRUN.shadow"
ledger = false
allow_volatile_redis = true

[[brokers]]
name = "schwab"
kind = "schwab"
[brokers.schwab]
api_key = "API_KEY"
app_secret = "APP_SECRET"
account_hash = "ACCOUNT"
base_url = "BASE_URL"
database_url = "TOKEN_DB"
vault_key_id = "k1"
vault_keys_hex = { k1 = "VAULT_KEY" }
sweep_interval_ms = 200

[[brokers]]
name = "ibkr"
kind = "ibkr"
[brokers.ibkr]
port = TWS_PORT
client_id = 23
windows = []

[[groups]]
name = "sch"
engines = [{ name = "a" }]
brokers = ["schwab"]

[[groups]]
name = "ib"
engines = [{ name = "b" }]
brokers = ["ibkr"]

[[routes]]
group = "sch"
strategies = ["sch-*"]

[[routes]]
group = "ib"
strategies = ["ib-*"]
"""


def test_up_with_a_schwab_group_and_an_ibkr_group_against_the_fakes(tmp_path, redis_url, database_url):
    schwab = SchwabFake(account_hash="H" + secrets.token_hex(4)).start()
    schwab.prices = {"AAPL": 230.0}
    tws = TwsFake(prices={"MSFT": 420.0}).start()
    db_name, token_db = asyncio.run(create_database(database_url, "nae_cli_brokers_"))
    asyncio.run(apply_migrations(token_db))
    vault_key = secrets.token_hex(32)
    seed_token(SchwabConfig(api_key=schwab.api_key, app_secret=schwab.app_secret, account_hash=schwab.account_hash,
                            base_url=schwab.base_url, database_url=token_db, vault_keys_hex={"k1": vault_key},
                            vault_key_id="k1"), schwab.issue_token())
    text = CONFIG
    for key, value in {"RUN": secrets.token_hex(3), "API_KEY": schwab.api_key, "APP_SECRET": schwab.app_secret,
                       "ACCOUNT": schwab.account_hash, "BASE_URL": schwab.base_url, "TOKEN_DB": token_db,
                       "VAULT_KEY": vault_key, "TWS_PORT": str(tws.port)}.items():
        text = text.replace(key, value)
    (tmp_path / "node.toml").write_text(text)
    env = dict(os.environ, REDIS_URL=redis_url, DATABASE_URL=database_url)
    up = subprocess.Popen([EXECNODE, "--config", "node.toml", "up", "--no-dashboard"], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / ".data" / "endpoints.json").exists():
            assert up.poll() is None, up.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        cfg = ["--config", "node.toml"]
        for strategy, symbol in (("sch-alpha", "AAPL"), ("ib-beta", "MSFT")):
            sent = run(*cfg, "send", "--strategy", strategy, "--symbol", symbol, "--action", "BUY", "--quantity", "2",
                       "--timeout", "10", "--wait-fill", cwd=tmp_path)
            lines = sent.stdout.splitlines()
            assert json.loads(lines[0])["status"] == "ACCEPTED", sent.stdout + sent.stderr
            assert json.loads(lines[-1])["kind"] == "FILL", sent.stdout
        assert [o["status"] for o in schwab.placed] == ["FILLED"]
        assert [(e["symbol"], e["shares"]) for e in tws.executions] == [("MSFT", 2.0)]
        status = json.loads(run(*cfg, "status", "--json", cwd=tmp_path).stdout)
        assert {"broker:schwab", "broker:ibkr"} <= set(status["stats"])
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
        schwab.stop()
        tws.stop()
        asyncio.run(drop_database(database_url, db_name))
