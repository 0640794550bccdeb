"""The Schwab venue against the local Schwab fake (tests/fakes/schwab_fake.py): real HTTP through
schwab-py and authlib, tokens sealed in a throwaway PostgreSQL database, the budget and the order
map in the machine's Redis. Every fault the issue names has a case here."""

from __future__ import annotations

import asyncio
import json
import secrets
import time

import msgspec
import pytest
import zmq

from adapters.brokers.schwab.config import SchwabConfig
from adapters.brokers.schwab.venue import SchwabVenue
from node.messages import ExecKind, OrderIntent, OrderType, Side
from node.migrations import apply_migrations, create_database, drop_database
from node.reasons import Reason
from node.token_vault import TokenVault, load_token, store_token
from tests.fakes.schwab_fake import SchwabFake

WAIT_S = 20.0


@pytest.fixture(scope="module")
def token_db(database_url):
    name, url = asyncio.run(create_database(database_url, "nae_schwab_"))
    asyncio.run(apply_migrations(url))
    yield url
    asyncio.run(drop_database(database_url, name))


@pytest.fixture()
def fake():
    f = SchwabFake(account_hash="H" + secrets.token_hex(4)).start()
    yield f
    f.stop()


def make_cfg(fake: SchwabFake, token_db: str, redis_url: str, **changes) -> SchwabConfig:
    cfg = SchwabConfig(
        api_key=fake.api_key, app_secret=fake.app_secret, account_hash=fake.account_hash, base_url=fake.base_url,
        database_url=token_db, vault_keys_hex={"k1": secrets.token_hex(32)}, vault_key_id="k1",
        redis_url=redis_url, request_timeout_ms=1_000, sweep_interval_ms=100, unknown_settle_ms=1_500,
    )  # fmt: skip
    return msgspec.structs.replace(cfg, **changes) if changes else cfg


def seed_token(cfg: SchwabConfig, token: dict) -> None:
    async def run():
        import asyncpg

        conn = await asyncpg.connect(cfg.database_url)
        try:
            vault = TokenVault(cfg.vault_keys(), cfg.vault_key_id)
            await store_token(conn, vault, "schwab", cfg.account_hash, json.dumps(token).encode(),
                              __import__("datetime").datetime.now(__import__("datetime").timezone.utc))
        finally:
            await conn.close()

    asyncio.run(run())


def stored_token(cfg: SchwabConfig) -> dict:
    async def run():
        import asyncpg

        conn = await asyncpg.connect(cfg.database_url)
        try:
            raw, _ = await load_token(conn, TokenVault(cfg.vault_keys(), cfg.vault_key_id), "schwab", cfg.account_hash)
            return json.loads(raw)
        finally:
            await conn.close()

    return asyncio.run(run())


class Driver:
    """Plays the broker adapter's loop: open the venue, poll its socket, collect its reports."""

    def __init__(self, venue: SchwabVenue) -> None:
        self.venue = venue
        self.ctx = zmq.Context()
        venue.open(self.ctx)
        self.reports = []

    def pump(self, timeout_s: float = 0.05) -> None:
        if self.venue.socket.poll(int(timeout_s * 1000)):
            self.reports.extend(self.venue.advance(time.time_ns()))

    def wait_for(self, done, timeout_s: float = WAIT_S):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.pump()
            if done(self.reports):
                return self.reports
        raise AssertionError("timed out; reports: " + repr([(r.client_order_id, r.kind, r.reason) for r in self.reports]))

    def kinds(self, coid: str) -> list[ExecKind]:
        return [r.kind for r in self.reports if r.client_order_id == coid]

    def close(self) -> None:
        self.venue.close()
        self.ctx.term()


def ended(coid: str, kind: ExecKind | None = None):
    final = {ExecKind.FILL, ExecKind.CANCELED, ExecKind.REJECTED}
    return lambda reps: any(r.client_order_id == coid and (r.kind is kind if kind else r.kind in final) for r in reps)


def intent(n: int, symbol: str = "AAPL", otype: OrderType = OrderType.MARKET, qty: float = 10.0,
           side: Side = Side.BUY, limit: float | None = None) -> OrderIntent:
    return OrderIntent(client_order_id="NAE-" + secrets.token_hex(6) + "-" + str(n), signal_id="s" + str(n),
                       request_id="r" + str(n), strategy_id="alpha", symbol=symbol, side=side, order_type=otype,
                       quantity=qty, limit_price=limit)


@pytest.fixture()
def drive(fake, token_db, redis_url):
    made = []

    def start(token: dict | None = None, **changes) -> Driver:
        cfg = make_cfg(fake, token_db, redis_url, **changes)
        seed_token(cfg, token or fake.issue_token())
        d = Driver(SchwabVenue(cfg))
        made.append(d)
        return d

    yield start
    for d in made:
        d.close()


def test_market_order_partial_fills_then_fill_with_order_id_from_location(fake, drive):
    fake.fill_legs = 3
    d = drive()
    it = intent(1, qty=9)
    d.venue.submit(it, time.time_ns())
    d.wait_for(ended(it.client_order_id, ExecKind.FILL))
    assert d.kinds(it.client_order_id) == [ExecKind.NEW, ExecKind.PARTIAL_FILL, ExecKind.PARTIAL_FILL, ExecKind.FILL]
    order_id = str(fake.placed[0]["orderId"])
    assert all(r.venue_order_id == order_id for r in d.reports)
    fills = [r for r in d.reports if r.last_qty]
    assert sum(f.last_qty for f in fills) == 9 and len({f.exec_id for f in fills}) == 3
    time.sleep(0.5)  # more sweeps: the same fills are never reported twice
    d.pump()
    assert len([r for r in d.reports if r.last_qty]) == 3
    assert d.venue.positions() == {"AAPL": 9.0}
    assert d.venue.status(it.client_order_id).kind is ExecKind.FILL


def test_reject_and_unsendable_orders_have_reasons(fake, drive):
    fake.reject_symbols.add("BAD")
    d = drive()
    bad, frac = intent(1, symbol="BAD"), intent(2, qty=1.5)
    d.venue.submit(bad, time.time_ns())
    d.venue.submit(frac, time.time_ns())
    d.wait_for(lambda reps: ended(bad.client_order_id)(reps) and ended(frac.client_order_id)(reps))
    by = {r.client_order_id: r for r in d.reports}
    assert (by[bad.client_order_id].kind, by[bad.client_order_id].reason) == (ExecKind.REJECTED, Reason.VENUE_REJECT)
    assert (by[frac.client_order_id].kind, by[frac.client_order_id].reason) == (ExecKind.REJECTED, Reason.SIZE_SPEC)
    assert fake.requests["place"] == 1  # the fractional order never left


def test_expired_access_token_is_refreshed_and_stored_sealed(fake, drive):
    d = drive(token=fake.issue_token(expires_in=1))  # expires within the refresh leeway: refreshed first
    it = intent(1)
    d.venue.submit(it, time.time_ns())
    d.wait_for(ended(it.client_order_id, ExecKind.FILL))
    assert fake.requests["token"] >= 1
    fake.expire_access_tokens()  # the server forgets it early: 401, one refresh, one retry
    it2 = intent(2)
    d.venue.submit(it2, time.time_ns())
    d.wait_for(ended(it2.client_order_id, ExecKind.FILL))
    assert d.venue.worker._client.unauthorized >= 1
    saved = stored_token(d.venue.cfg)
    assert saved["token"]["access_token"] in fake._access  # the refreshed token was written back
    assert len(fake.placed) == 2


def test_lapsed_login_refuses_new_orders_with_a_reason(fake, drive):
    old = time.time() - 7 * 24 * 3600 - 10
    d = drive(token=fake.issue_token(created_s=old))
    it = intent(1)
    d.venue.submit(it, time.time_ns())
    d.wait_for(ended(it.client_order_id, ExecKind.REJECTED))
    assert d.reports[-1].reason == Reason.LOGIN_EXPIRED
    health = d.venue.health(time.time_ns())
    assert not health.ok and health.reason == Reason.LOGIN_EXPIRED and health.login_expires_in_s < 0
    assert health.login_expires_at_s == pytest.approx(old + 7 * 24 * 3600, abs=1.0)  # the alert's metric: past
    assert fake.placed == []


def test_login_ending_within_a_day_is_surfaced(fake, drive):
    d = drive(token=fake.issue_token(created_s=time.time() - 6.5 * 24 * 3600))
    d.wait_for(lambda reps: d.venue.health(0).login_expires_in_s is not None, 5)
    h = d.venue.health(time.time_ns())
    assert h.ok and 0 < h.login_expires_in_s < 24 * 3600 and "lapses" in h.detail
    assert 0 < h.login_expires_at_s - time.time() < 24 * 3600  # nae_broker_token_expiry_timestamp_seconds


def test_revoked_refresh_token_refuses_orders(fake, drive):
    d = drive(token=fake.issue_token(expires_in=1))
    fake.revoke_login()
    it = intent(1)
    d.venue.submit(it, time.time_ns())
    d.wait_for(ended(it.client_order_id, ExecKind.REJECTED))
    assert d.reports[-1].reason == Reason.LOGIN_EXPIRED and fake.placed == []
    d.wait_for(lambda reps: not d.venue.health(0).ok)  # the worker's health follows its command
    assert d.venue.health(time.time_ns()).login_expires_at_s <= time.time()  # refused early: lapsed now


def test_429_and_budget_refuse_and_never_send(fake, drive):
    fake.fail_next("place", "429")
    d = drive(order_requests_per_min=2)
    its = [intent(i) for i in range(4)]
    for it in its:
        d.venue.submit(it, time.time_ns())
    d.wait_for(lambda reps: all(ended(it.client_order_id)(reps) for it in its))
    reasons = [next(r for r in d.reports if r.client_order_id == it.client_order_id and r.kind in
                    (ExecKind.FILL, ExecKind.REJECTED)).reason for it in its]
    # 1: Schwab's own 429; 2: placed; 3 and 4: over the 2 a minute budget, never sent
    assert reasons == [Reason.BROKER_RATE_LIMITED, "", Reason.BROKER_RATE_LIMITED, Reason.BROKER_RATE_LIMITED]
    assert len(fake.placed) == 1 and fake.requests["place"] == 2


def test_budget_is_shared_across_adapters_of_the_account(fake, drive, redis_url):
    d1 = drive(order_requests_per_min=3)
    a = [intent(i) for i in range(2)]
    for it in a:
        d1.venue.submit(it, time.time_ns())
    d1.wait_for(lambda reps: all(ended(it.client_order_id)(reps) for it in a))
    d1.close()
    d2 = drive(order_requests_per_min=3)  # the next adapter (a failover) spends from the same budget
    b = [intent(10 + i) for i in range(2)]
    for it in b:
        d2.venue.submit(it, time.time_ns())
    d2.wait_for(lambda reps: all(ended(it.client_order_id)(reps) for it in b))
    kinds = [d2.kinds(it.client_order_id)[-1] for it in b]
    if time.time() % 60 > 1:  # not across a minute boundary: exactly one more fits
        assert kinds.count(ExecKind.FILL) == 1 and kinds.count(ExecKind.REJECTED) == 1


@pytest.mark.parametrize("fault", ["lose", "hang", "500"])
def test_ambiguous_submit_is_unknown_then_resolved_by_the_sweep(fake, drive, fault):
    fake.fail_next("place", fault)
    d = drive()
    it = intent(1)
    d.venue.submit(it, time.time_ns())
    d.wait_for(ended(it.client_order_id))
    kinds = d.kinds(it.client_order_id)
    assert kinds[0] is ExecKind.UNKNOWN
    if fault == "500":  # nothing was placed: the sweeps never show it, so it was never placed
        assert kinds[-1] is ExecKind.REJECTED and d.reports[-1].reason == Reason.NOT_AT_BROKER
        assert fake.placed == []
    else:  # it was placed: the sweep adopts it (same order id), never sent twice
        assert kinds[1:] == [ExecKind.NEW, ExecKind.FILL]
        assert d.reports[-1].venue_order_id == str(fake.placed[0]["orderId"])
        assert len(fake.placed) == 1 and fake.requests["place"] == 1


def test_cancel_and_replace_of_a_resting_limit(fake, drive):
    d = drive()
    it = intent(1, otype=OrderType.LIMIT, limit=90.0)
    d.venue.submit(it, time.time_ns())
    d.wait_for(lambda reps: ExecKind.NEW in d.kinds(it.client_order_id))
    new = msgspec.structs.replace(it, client_order_id=it.client_order_id + "-r1", limit_price=95.0)
    d.venue.replace(it.client_order_id, new, time.time_ns())
    d.wait_for(lambda reps: ended(it.client_order_id)(reps) and ExecKind.NEW in d.kinds(new.client_order_id))
    last_old = [r for r in d.reports if r.client_order_id == it.client_order_id][-1]
    assert (last_old.kind, last_old.reason) == (ExecKind.CANCELED, Reason.REPLACED)
    new_id = next(r.venue_order_id for r in d.reports if r.client_order_id == new.client_order_id)
    assert fake.orders[int(new_id)]["price"] == 95.0 and new_id != last_old.venue_order_id
    d.venue.cancel(new.client_order_id, time.time_ns())
    d.wait_for(ended(new.client_order_id, ExecKind.CANCELED))


def test_restarted_adapter_knows_what_was_sent_and_never_resends(fake, drive, redis_url):
    d1 = drive()
    it = intent(1, otype=OrderType.LIMIT, limit=90.0)
    d1.venue.submit(it, time.time_ns())
    d1.wait_for(lambda reps: ExecKind.NEW in d1.kinds(it.client_order_id))
    d1.close()
    fake.fill(fake.placed[0]["orderId"], 10, 89.5)  # filled while no adapter was up
    d2 = drive()
    assert it.client_order_id in d2.venue.sent_ids()
    d2.venue.submit(it, time.time_ns())  # a re-drive of the same id: not sent again
    d2.wait_for(ended(it.client_order_id, ExecKind.FILL))
    assert len(fake.placed) == 1 and fake.requests["place"] == 1
    assert d2.venue.status(it.client_order_id).kind is ExecKind.FILL


def test_balances_and_account_positions_from_the_account(fake, drive):
    d = drive()
    it = intent(1, qty=5)
    d.venue.submit(it, time.time_ns())
    d.wait_for(ended(it.client_order_id, ExecKind.FILL))
    d.wait_for(lambda reps: d.venue.account_positions() == {"AAPL": 5.0}, 10)
    assert d.venue.balances().buying_power == fake.cash
