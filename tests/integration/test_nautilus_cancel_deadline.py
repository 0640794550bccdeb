"""A Nautilus group's cancel has the native engine's deadline, with a real Nautilus kernel in front of
the Schwab fake: the fake cancels the order and drops the answer (and the adapter's read after it
fails), so the kernel hears nothing. By `cancel_timeout_ms` the order is UNKNOWN (CANCEL_TIMEOUT),
never a made-up CANCELED; new risk on the symbol is refused SYMBOL_UNKNOWN_STATE by the validator;
a second cancel goes to the broker although Nautilus holds the order as PENDING_CANCEL (its answer
is the broker's CANCELED) and the symbol trades again."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from node.client import ExecutionClient
from node.config import BrokerConfig, EngineConfig, EngineGroupConfig, SchwabConfig
from node.messages import Amend, AmendKind, Signal
from node.migrations import apply_migrations, create_database, drop_database
from node.orders import client_order_id_for, signal_id_for
from node.runtime import NodeRuntime, quiet
from node.streams import EVENTS_FIELD, connect_redis, unpack_reports
from tests.fakes.schwab_fake import SchwabFake
from tests.integration.test_schwab_venue import seed_token

PRICE = 230.0


@pytest.fixture(scope="module")
def fake():
    f = SchwabFake(account_hash="H" + secrets.token_hex(4)).start()
    f.prices = {"AAPL": PRICE}
    yield f
    f.stop()


@pytest.fixture(scope="module")
def node(ray_session, make_config, fake, database_url):
    name, token_db = asyncio.run(create_database(database_url, "nae_nt_cancel_dl_"))
    asyncio.run(apply_migrations(token_db))
    sc = SchwabConfig(
        api_key=fake.api_key, app_secret=fake.app_secret, account_hash=fake.account_hash, base_url=fake.base_url,
        database_url=token_db, vault_keys_hex={"k1": secrets.token_hex(32)}, vault_key_id="k1",
        sweep_interval_ms=600_000, stream=False,  # no sweep, no stream: only the answers the test makes happen
    )  # fmt: skip
    seed_token(sc, fake.issue_token())
    cfg = make_config(
        brokers=[BrokerConfig(name="schwab", kind="schwab", schwab=sc)],
        groups=[EngineGroupConfig(name="nts", engines=[EngineConfig(name="nt", kind="nautilus")], brokers=["schwab"])],
        cancel_timeout_ms=1_000, heartbeat_misses=10,
    )  # fmt: skip
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    yield runtime
    runtime.stop()
    asyncio.run(drop_database(database_url, name))


def wait_for(pred, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def reports(node, coid: str) -> list[tuple[str, str]]:
    st = node.cfg.storage
    client = connect_redis(st.redis_url)
    return [(r.kind, r.reason) for _, f in client.xrange(st.events_stream) if EVENTS_FIELD in f
            for r in unpack_reports(f) if r.client_order_id == coid]


def test_a_lost_cancel_at_a_nautilus_group_is_unknown_blocks_the_symbol_and_the_next_answer_resolves_it(node, fake):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    tag = "ntd-" + str(time.time_ns())
    limit = round(PRICE * 0.97, 2)  # rests

    def signal(rid: str, qty: float = 5.0, amend: Amend | None = None) -> Signal:
        return Signal(request_id=rid, strategy_id="nt-dl", timestamp=time.time(), symbol="AAPL", action="BUY",
                      quantity=qty, order_type="LIMIT", limit_price=limit, amend=amend)

    original = tag + "-a"
    coid = client_order_id_for(signal_id_for(original))
    state = lambda: {o.client_order_id: o.kind for o in node.call("broker:schwab", "orders")}.get(coid)  # noqa: E731
    kernel = lambda: node.stats()["engine:nt"]["child"]  # noqa: E731
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        assert c.send_signal(signal(original)).status == "ACCEPTED"
        wait_for(lambda: state() == "NEW" and reports(node, coid) == [("NEW", "")])

        # the fake cancels the order and drops the answer; the adapter's read after it fails too
        fake.fail_next("cancel", "lose")
        fake.fail_next("order", "500")
        cancel = Amend(kind=AmendKind.CANCEL, original_request_id=original)
        assert c.send_signal(signal(tag + "-c1", amend=cancel)).status == "ACCEPTED"
        wait_for(lambda: ("UNKNOWN", "CANCEL_TIMEOUT") in reports(node, coid))
        assert kernel()["cancels_timed_out"] == 1
        [at_fake] = [o for o in fake.placed if o["orderType"] == "LIMIT" and o["price"] == limit]
        assert at_fake["status"] == "CANCELED"  # it IS canceled at the broker; the node does not know

        refused = []

        def blocked() -> bool:
            r = c.send_signal(signal(tag + "-n" + str(len(refused)), qty=1.0))
            refused.append(r)
            return r.status == "REJECTED" and "SYMBOL_UNKNOWN_STATE" in r.reasons

        wait_for(blocked, 10)
        assert state() == "NEW"  # the adapter's stale view
        assert reports(node, coid) == [("NEW", ""), ("UNKNOWN", "CANCEL_TIMEOUT")]  # never a made-up CANCELED

        # the broker's next answer: a second cancel goes out for the UNKNOWN order; its read shows CANCELED
        assert c.send_signal(signal(tag + "-c2", amend=cancel)).status == "ACCEPTED"
        wait_for(lambda: state() == "CANCELED")
        wait_for(lambda: reports(node, coid)[-1][0] == "CANCELED")
        wait_for(lambda: c.send_signal(signal(tag + "-after-" + str(time.time_ns()), qty=2.0)).status == "ACCEPTED", 10)
    assert [k for k, _ in reports(node, coid)] == ["NEW", "UNKNOWN", "CANCELED"]
    assert not reports(node, client_order_id_for(signal_id_for(tag + "-c2")))  # no refusal of the second cancel
    assert kernel()["cancels_timed_out"] == 1
