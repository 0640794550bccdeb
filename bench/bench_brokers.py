"""Each broker adapter's submit path beside its fake's own round trip (pytest-benchmark).

    .venv/bin/pytest bench/bench_brokers.py -q      (needs REDIS_URL and DATABASE_URL)

- schwab_fake_round_trip: one `POST .../orders` to the Schwab fake and the `GET` of that order,
  straight through httpx (what any client pays to reach the fake);
- schwab_venue_submit_to_fill: `SchwabVenue.submit` until its FILL report is handed out by
  `advance` (the worker's queue, schwab-py, authlib, the budget script in Redis, the order map
  write, the same POST + GET, the report over inproc ZeroMQ);
- ibkr_fake_round_trip: ib_async alone, `placeOrder` until the fill event, on the same fake;
- ibkr_venue_submit_to_fill: `IbkrVenue.submit` until its FILL report is handed out.

The adapter's own cost is the difference of the pairs. Market orders (they fill at once at the fakes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import json
import os
import secrets
import threading
import time
from pathlib import Path

import httpx
import pytest
import zmq

from adapters.brokers.ibkr.parsing import contract_of, order_of
from adapters.brokers.ibkr.venue import IbkrVenue, ib_loop
from adapters.brokers.schwab.parsing import order_spec
from adapters.brokers.schwab.venue import SchwabVenue
from node.config import IbkrConfig, SchwabConfig
from node.messages import ExecKind, OrderIntent, OrderType, Side
from node.migrations import apply_migrations, create_database, drop_database
from node.token_vault import TokenVault, store_token

ROUNDS = 200
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_FAKES = Path(__file__).resolve().parent.parent / "tests" / "fakes"


def _fake(name: str):
    """A fake from tests/fakes by path (schwab-py installs a top-level `tests` package of its own,
    which shadows the repository's `tests` outside pytest's test tree)."""
    spec = importlib.util.spec_from_file_location("nae_fakes_" + name, _FAKES / (name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _seed_token(cfg: SchwabConfig, token: dict) -> None:
    async def run() -> None:
        import asyncpg

        conn = await asyncpg.connect(cfg.database_url)
        try:
            vault = TokenVault(cfg.vault_keys(), cfg.vault_key_id)
            await store_token(conn, vault, "schwab", cfg.account_hash, json.dumps(token).encode(),
                              dt.datetime.now(dt.timezone.utc))
        finally:
            await conn.close()

    asyncio.run(run())


def _intent(tag: str) -> OrderIntent:
    return OrderIntent(client_order_id="NAE-b" + secrets.token_hex(5) + "-" + tag, signal_id="s", request_id="r",
                       strategy_id="bench", symbol="AAPL", side=Side.BUY, order_type=OrderType.MARKET, quantity=1.0)


def _until_filled(venue, coid: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if venue.socket.poll(100):
            for rep in venue.advance(time.time_ns()):
                if rep.client_order_id == coid and rep.kind is ExecKind.FILL:
                    return
    raise AssertionError("no fill for " + coid)


@pytest.fixture(scope="module")
def token_db():
    name, url = asyncio.run(create_database(DATABASE_URL, "nae_bench_"))
    asyncio.run(apply_migrations(url))
    yield url
    asyncio.run(drop_database(DATABASE_URL, name))


@pytest.fixture(scope="module")
def schwab(token_db):
    redis_url = REDIS_URL
    fake = _fake("schwab_fake").SchwabFake(account_hash="B" + secrets.token_hex(4)).start()
    cfg = SchwabConfig(
        api_key=fake.api_key, app_secret=fake.app_secret, account_hash=fake.account_hash, base_url=fake.base_url,
        database_url=token_db, vault_keys_hex={"k1": secrets.token_hex(32)}, vault_key_id="k1", redis_url=redis_url,
        order_requests_per_min=1_000_000, order_requests_per_day=1_000_000, sweep_interval_ms=60_000,
    )  # fmt: skip
    _seed_token(cfg, fake.issue_token())
    venue = SchwabVenue(cfg)
    ctx = zmq.Context()
    venue.open(ctx)
    yield fake, venue
    venue.close()
    ctx.term()
    fake.stop()


def test_schwab_fake_round_trip(benchmark, schwab):
    fake, _ = schwab
    token = fake.issue_token()["token"]["access_token"]
    spec, _ = order_spec(_intent("raw"))
    base = fake.base_url + "/trader/v1/accounts/" + fake.account_hash + "/orders"
    with httpx.Client(headers={"Authorization": "Bearer " + token}) as http:
        def once() -> None:
            r = http.post(base, json=spec)
            http.get(r.headers["Location"].replace("https://api.schwabapi.com", fake.base_url))

        benchmark.pedantic(once, rounds=ROUNDS, iterations=1, warmup_rounds=10)


def test_schwab_venue_submit_to_fill(benchmark, schwab):
    _, venue = schwab

    def once() -> None:
        it = _intent("v")
        venue.submit(it, time.time_ns())
        _until_filled(venue, it.client_order_id)

    benchmark.pedantic(once, rounds=ROUNDS, iterations=1, warmup_rounds=10)


@pytest.fixture(scope="module")
def tws():
    fake = _fake("tws_fake").TwsFake(prices={"AAPL": 230.0}).start()
    yield fake
    fake.stop()


def test_ibkr_fake_round_trip(benchmark, tws):
    from ib_async import IB

    loop = ib_loop()
    holder: dict = {}

    async def connect() -> None:
        ib = IB()
        await ib.connectAsync("127.0.0.1", tws.port, 31, timeout=5)
        holder["ib"] = ib

    asyncio.run_coroutine_threadsafe(connect(), loop).result(10)
    ib = holder["ib"]
    done = threading.Event()
    ib.execDetailsEvent += lambda trade, fill: done.set()

    def once() -> None:
        done.clear()
        order, _ = order_of(_intent("raw"))
        loop.call_soon_threadsafe(ib.placeOrder, contract_of("AAPL"), order)
        assert done.wait(10)

    try:
        benchmark.pedantic(once, rounds=ROUNDS, iterations=1, warmup_rounds=10)
    finally:
        loop.call_soon_threadsafe(ib.disconnect)


def test_ibkr_venue_submit_to_fill(benchmark, tws):
    venue = IbkrVenue(IbkrConfig(port=tws.port, client_id=32, windows=[]))
    ctx = zmq.Context()
    venue.open(ctx)
    try:
        deadline = time.monotonic() + 10
        while not venue.health(time.time_ns()).ok:
            assert time.monotonic() < deadline
            time.sleep(0.05)

        def once() -> None:
            it = _intent("v")
            venue.submit(it, time.time_ns())
            _until_filled(venue, it.client_order_id)

        benchmark.pedantic(once, rounds=ROUNDS, iterations=1, warmup_rounds=10)
    finally:
        venue.close()
        ctx.term()
