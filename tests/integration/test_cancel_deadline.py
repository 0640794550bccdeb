"""A cancel whose answer is lost, end to end at the Schwab fake: the fake cancels the order and drops
the answer (and the adapter's read after it fails), so the node hears nothing. By the cancel's
deadline the order is UNKNOWN (CANCEL_TIMEOUT), never a made-up CANCELED; new risk on the symbol is
refused SYMBOL_UNKNOWN_STATE through the validator's block; the broker's next answer resolves it
and the symbol trades again."""

from __future__ import annotations

import secrets
import time

import pytest

from node.client import ExecutionClient
from node.config import BrokerConfig, EngineConfig, EngineGroupConfig
from node.messages import Amend, AmendKind, Signal
from node.orders import client_order_id_for, signal_id_for
from node.runtime import NodeRuntime, quiet
from tests.fakes.pair import schwab_account
from tests.fakes.schwab_fake import SchwabFake
from tests.waits import wait_for

PRICE = 230.0


@pytest.fixture(scope="module")
def fake():
    f = SchwabFake(account_hash="H" + secrets.token_hex(4)).start()
    f.prices = {"AAPL": PRICE}
    yield f
    f.stop()


@pytest.fixture(scope="module")
def node(ray_session, make_config, fake, database_url):
    # no sweep, no stream: only the answers the test makes happen
    with schwab_account(fake, database_url, "nae_cancel_dl_", sweep_interval_ms=600_000,
                        stream=False) as (_, sc):
        cfg = make_config(
            brokers=[BrokerConfig(name="schwab", kind="schwab", schwab=sc)],
            groups=[EngineGroupConfig(name="sch", engines=[EngineConfig(name="a")], brokers=["schwab"])],
            cancel_timeout_ms=1_000, unknown_ask_every_ms=300, heartbeat_misses=10,
        )  # fmt: skip
        runtime = NodeRuntime(cfg, quiet)
        runtime.start()
        yield runtime
        runtime.stop()


def test_a_cancel_whose_answer_is_lost_is_unknown_blocks_the_symbol_and_the_next_answer_resolves_it(node, fake):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    tag = "cd-" + str(time.time_ns())
    limit = round(PRICE * 0.97, 2)  # rests

    def signal(rid: str, qty: float = 5.0, amend: Amend | None = None) -> Signal:
        return Signal(request_id=rid, strategy_id="sch-dl", timestamp=time.time(), symbol="AAPL", action="BUY",
                      quantity=qty, order_type="LIMIT", limit_price=limit, amend=amend)

    original = tag + "-a"
    coid = client_order_id_for(signal_id_for(original))
    state = lambda: {o.client_order_id: o.kind for o in node.call("broker:schwab", "orders")}.get(coid)  # noqa: E731
    engine = lambda: node.stats()["engine:a"]  # noqa: E731
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        assert c.send_signal(signal(original)).status == "ACCEPTED"
        wait_for(lambda: state() == "NEW")

        # the fake cancels the order and drops the answer; the adapter's read after it fails too
        fake.fail_next("cancel", "lose")
        fake.fail_next("order", "500")
        cancel = Amend(kind=AmendKind.CANCEL, original_request_id=original)
        assert c.send_signal(signal(tag + "-c1", amend=cancel)).status == "ACCEPTED"
        wait_for(lambda: engine()["cancels_timed_out"] == 1)
        [at_fake] = [o for o in fake.placed if o["orderType"] == "LIMIT" and o["price"] == limit]
        assert at_fake["status"] == "CANCELED"  # it IS canceled at the broker; the node does not know

        refused = []

        def blocked() -> bool:
            r = c.send_signal(signal(tag + "-n" + str(len(refused)), qty=1.0))
            refused.append(r)
            return r.status == "REJECTED" and "SYMBOL_UNKNOWN_STATE" in r.reasons

        wait_for(blocked, 10)
        assert state() == "NEW"  # the adapter's stale view: asked, it never resolved the UNKNOWN
        assert engine()["unknown_resolved"] == 0

        # the broker's next answer: a second cancel is sent for an UNKNOWN order; its read shows CANCELED
        assert c.send_signal(signal(tag + "-c2", amend=cancel)).status == "ACCEPTED"
        wait_for(lambda: state() == "CANCELED")
        wait_for(lambda: c.send_signal(signal(tag + "-after-" + str(time.time_ns()), qty=2.0)).status == "ACCEPTED", 10)
