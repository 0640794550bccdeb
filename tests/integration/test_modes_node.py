"""Paper / shadow / canary / live on a whole node (node.modes): two engine groups, "paper" over the
paper venue and "live" over the Schwab adapter in front of the local Schwab fake (its HTTP API and
streamer, tests/fakes/schwab_fake.py), one strategy promoted step by step. Each stamp sends a signal
to exactly one live route or none (checked against the fake's own record of what it was sent);
shadow copies stay at the paper venue, out of the events stream; the canary's cap holds across a
kill -9 of the validator; the report compares the routes."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time

import pytest

from node import mode_report
from node.client import ExecutionClient
from node.config import BrokerConfig, EngineConfig, EngineGroupConfig, ModeConfig, SchwabConfig, TradingMode
from node.messages import Signal
from node.modes import SHADOW_SUFFIX, without_shadow
from node.orders import client_order_id_for, signal_id_for
from node.runtime import NodeRuntime, quiet
from node.migrations import apply_migrations, create_database, drop_database
from node.streams import connect_redis
from tests.fakes.pair import broker_fakes
from tests.integration.test_schwab_venue import seed_token

CAP = 3


@pytest.fixture(scope="module")
def schwab():
    with broker_fakes({"AAPL": 230.0}) as (schwab, _tws):  # the paper venue's AAPL price too
        yield schwab


@pytest.fixture(scope="module")
def node(ray_session, make_config, schwab, database_url):
    name, token_db = asyncio.run(create_database(database_url, "nae_modes_"))
    asyncio.run(apply_migrations(token_db))
    sc = SchwabConfig(
        api_key=schwab.api_key, app_secret=schwab.app_secret, account_hash=schwab.account_hash,
        base_url=schwab.base_url, database_url=token_db, vault_keys_hex={"k1": secrets.token_hex(32)},
        vault_key_id="k1", sweep_interval_ms=200,
    )  # fmt: skip
    seed_token(sc, schwab.issue_token())
    cfg = make_config(
        brokers=[BrokerConfig(name="pv"), BrokerConfig(name="lv", kind="schwab", schwab=sc)],
        groups=[
            EngineGroupConfig(name="paper", engines=[EngineConfig(name="p1")], brokers=["pv"]),
            EngineGroupConfig(name="live", engines=[EngineConfig(name="l1")], brokers=["lv"]),
        ],
        modes=[ModeConfig(strategies=["m-*"], paper_group="paper", live_group="live", mode=TradingMode.PAPER,
                          canary_share=0.25, canary_max_orders=CAP)],
        heartbeat_misses=10,
    )
    runtime = NodeRuntime(cfg, quiet)
    runtime.start()
    yield runtime
    runtime.stop()
    asyncio.run(drop_database(database_url, name))


def send(node, n: int, tag: str, strategy: str = "m-1") -> set[str]:
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    run = tag + "-" + str(time.time_ns())
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        replies = [c.send_signal(Signal(request_id=run + "-" + str(i), strategy_id=strategy, timestamp=time.time(),
                                        symbol="AAPL", action="BUY", quantity=1.0 + i % 3)) for i in range(n)]
    assert all(r.status == "ACCEPTED" for r in replies), replies
    return {client_order_id_for(signal_id_for(r.request_id)) for r in replies}


def orders_at(node, broker: str) -> set[str]:
    """The client order ids at one venue."""
    return {o.client_order_id for o in node.call("broker:" + broker, "orders")}


def wait_for(pred, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def streams(node):
    st = node.cfg.storage
    return mode_report.read_streams(connect_redis(st.redis_url), st.signals_stream, st.events_stream,
                                    st.shadow_stream)


def test_a_strategy_goes_paper_shadow_canary_and_its_cap_survives_a_restart(node, schwab):
    at_broker = len(schwab.placed)  # the Schwab fake's own record: every order it was sent
    # paper: the paper venue only
    paper = send(node, 5, "paper")
    wait_for(lambda: paper <= (orders_at(node, "pv")))
    assert not paper & (orders_at(node, "lv"))

    # one step at a time (a jump needs force), every change answered durable
    with pytest.raises(Exception, match="MODE_STEP"):
        node.call("validator", "set_mode", "m-1", "live")
    done = node.call("validator", "set_mode", "m-1", "shadow")
    assert (done["from"], done["to"], done["durable"]) == ("paper", "shadow", True), done

    # shadow: live, and a copy at the paper venue under the copy's strategy id, reported apart
    shadow = send(node, 5, "shadow")
    wait_for(lambda: shadow <= (orders_at(node, "lv")) and shadow <= (orders_at(node, "pv")))
    wait_for(lambda: {r.client_order_id for r in streams(node)[2]} >= shadow)
    _, events, copies = streams(node)
    assert all(r.strategy_id == "m-1" for r in events if r.client_order_id in shadow)  # never a copy's
    assert all(r.strategy_id == "m-1" + SHADOW_SUFFIX for r in copies)
    # the reconciler judges the paper venue's book without the copies (they have no ledger)
    book = node.call("broker:pv", "book")
    assert {f.client_order_id for f in book.fills if f.strategy_id == "m-1" + SHADOW_SUFFIX} == shadow
    clean = without_shadow(book)
    assert not {f.client_order_id for f in clean.fills} & shadow
    assert clean.positions.get("AAPL", 0.0) == pytest.approx(sum(f.signed_qty for f in clean.fills if f.symbol == "AAPL"))

    # canary: a quarter of the flow live, at most CAP signals, the rest paper
    node.call("validator", "set_mode", "m-1", "canary")
    first = send(node, 8, "canary-a")  # 8 * 0.25 = 2 live
    wait_for(lambda: first <= (orders_at(node, "lv")) | (orders_at(node, "pv")))
    live = first & (orders_at(node, "lv"))
    assert len(live) == 2 and not live & (orders_at(node, "pv")), live

    # kill -9 of the validator: the supervisor restarts it; mode and counts are rebuilt
    old = node.call_supervisor("pid", "validator")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: _validator_back(node, old), timeout_s=60)
    assert node.call("validator", "modes_in_force")["m-1"]["mode"] == "canary"
    second = send(node, 12, "canary-b")  # the share would allow 3 more; the cap allows 1
    wait_for(lambda: second <= (orders_at(node, "lv")) | (orders_at(node, "pv")))
    assert len(second & (orders_at(node, "lv"))) == CAP - 2
    usage = node.call("validator", "modes_in_force")["m-1"]["canary"]
    assert (usage["signals"], usage["live_signals"]) == (20, CAP), usage

    # the report compares the routes; a demotion to paper is one command
    wait_for(lambda: _filled(node, first | second | shadow))
    [row] = mode_report.compare(*streams(node), strategy_id="m-1")
    assert row.routes["live"].signals == 5 + CAP and row.routes["live"].filled == 5 + CAP
    assert row.routes["paper"].signals == 5 + 20 - CAP
    assert row.routes["shadow"].filled == 5 and row.shadow_pairs == 5
    # the broker was sent exactly the live route's orders, each filled there (none twice, no copy)
    sent = schwab.placed[at_broker:]
    assert len(sent) == 5 + CAP and all(o["status"] == "FILLED" for o in sent), sent
    assert node.call("validator", "set_mode", "m-1", "paper")["to"] == "paper"
    back = send(node, 3, "paper-again")
    wait_for(lambda: back <= (orders_at(node, "pv")))
    assert not back & (orders_at(node, "lv"))


def _validator_back(node, old_pid: int) -> bool:
    try:
        pid = node.call_supervisor("pid", "validator")
        return pid != old_pid and node.stats()["validator"].get("restored") is not None
    except Exception:  # noqa: BLE001 - not back yet
        return False


def _filled(node, coids: set[str]) -> bool:
    _, events, copies = streams(node)
    done = {r.client_order_id for r in events if r.kind == "FILL"}
    return coids <= done


def test_a_cancel_in_shadow_cancels_the_live_order_and_its_copy(node, schwab):
    from node.messages import Amend, AmendKind

    at_broker = len(schwab.placed)

    assert node.call("validator", "set_mode", "m-2", "shadow")["to"] == "shadow"
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    tag = "sc-" + str(time.time_ns())
    limit = 223.0  # below the market: rests at both venues

    def signal(rid: str, amend: Amend | None = None) -> Signal:
        return Signal(request_id=rid, strategy_id="m-2", timestamp=time.time(), symbol="AAPL", action="BUY",
                      quantity=4.0, order_type="LIMIT", limit_price=limit, amend=amend)

    coid = client_order_id_for(signal_id_for(tag + "-a"))
    kind_at = lambda broker: {o.client_order_id: o.kind for o in node.call("broker:" + broker, "orders")}.get(coid)  # noqa: E731
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        placed = c.send_signal(signal(tag + "-a"))
        assert placed.status == "ACCEPTED", placed
        wait_for(lambda: kind_at("lv") == "NEW" and kind_at("pv") == "NEW")
        cancel = Amend(kind=AmendKind.CANCEL, original_request_id=tag + "-a")
        assert c.send_signal(signal(tag + "-c", amend=cancel)).status == "ACCEPTED"
        wait_for(lambda: kind_at("lv") == "CANCELED" and kind_at("pv") == "CANCELED")
    cancel_coid = client_order_id_for(signal_id_for(tag + "-c"))
    wait_for(lambda: any(r.client_order_id == coid and r.kind == "CANCELED" for r in streams(node)[2]))
    _, events, copies = streams(node)
    assert [(r.kind, r.strategy_id) for r in events if r.client_order_id == coid and r.kind == "CANCELED"] == [
        ("CANCELED", "m-2")]
    assert not [r for r in events + copies if r.client_order_id == cancel_coid]  # no refusal from either group
    assert [o["status"] for o in schwab.placed[at_broker:]] == ["CANCELED"]  # one order at the broker, canceled


def test_promotion_over_http_and_the_report_from_the_cli(node, tmp_path, capsys):
    import json

    import httpx

    from node.cli import main

    auth = {"X-Admin-Token": node.cfg.api.admin_token}
    with httpx.Client(base_url=node.registry["api"], timeout=30) as http:
        r = http.post("/admin/mode", json={"strategy_id": "m-3", "mode": "canary"}, headers=auth)
        assert r.status_code == 400 and "MODE_STEP" in r.json()["detail"], r.text  # paper -> canary skips shadow
        r = http.post("/admin/mode", json={"strategy_id": "m-3", "mode": "canary", "force": True}, headers=auth)
        assert r.status_code == 200 and r.json()["result"]["to"] == "canary", r.text
        r = http.post("/admin/mode", json={"strategy_id": "other", "mode": "live"}, headers=auth)
        assert r.status_code == 400 and "NOT_IN_MODES" in r.json()["detail"], r.text
        assert http.post("/admin/modes", headers=auth).json()["result"]["m-3"]["mode"] == "canary"
    sent = send(node, 8, "http", strategy="m-3")
    wait_for(lambda: sent <= orders_at(node, "lv") | orders_at(node, "pv"))
    st = node.cfg.storage
    cfg = tmp_path / "node.toml"
    cfg.write_text("[storage]\nredis_url = %r\nsignals_stream = %r\nevents_stream = %r\nshadow_stream = %r\n"
                   % (st.redis_url, st.signals_stream, st.events_stream, st.shadow_stream))
    assert main(["report", "modes", "--strategy", "m-3", "--json", "--config", str(cfg)]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["strategy_id"] == "m-3" and row["routes"]["live"]["signals"] == 2 and row["routes"]["paper"]["signals"] == 6
    assert main(["report", "modes", "--config", str(cfg)]) == 0
    assert "| m-3 | live | 2 |" in capsys.readouterr().out


def test_an_amend_goes_only_to_the_group_holding_its_original_and_an_unknown_one_is_refused_once(node, schwab):
    """The validator remembers where each order went (node.amend_routes): a cancel reaches only the
    group(s) holding its original, so the other refuses nothing; a cancel of an order neither group
    holds is refused AMEND_UNKNOWN_ORIGINAL exactly once (by the live group alone); the routes survive
    a kill -9 of the validator."""
    from node.messages import Amend, AmendKind

    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    tag = "ar-" + str(time.time_ns())
    coid = lambda rid: client_order_id_for(signal_id_for(tag + "-" + rid))  # noqa: E731
    kind_at = lambda broker, rid: {o.client_order_id: o.kind for o in node.call("broker:" + broker, "orders")}.get(coid(rid))  # noqa: E731

    def sig(rid: str, cancel_of: str | None = None) -> Signal:
        amend = Amend(kind=AmendKind.CANCEL, original_request_id=tag + "-" + cancel_of) if cancel_of else None
        return Signal(request_id=tag + "-" + rid, strategy_id="m-4", timestamp=time.time(), symbol="AAPL",
                      action="BUY", quantity=2.0, order_type="LIMIT", limit_price=223.0, amend=amend)  # rests

    def answers(rid: str) -> tuple[list, list]:
        _, events, copies = streams(node)
        mine = coid(rid)
        return ([(r.kind, r.reason) for r in events if r.client_order_id == mine],
                [(r.kind, r.reason) for r in copies if r.client_order_id == mine])

    def barrier(rid: str) -> None:
        """A shadow order through both groups, its NEW from each: every signal logged before it has
        been through both groups' engines (each takes the log in order) and reported."""
        assert c.send_signal(sig(rid)).status == "ACCEPTED"
        wait_for(lambda: [k for k, _ in answers(rid)[0]][:1] == ["NEW"] and [k for k, _ in answers(rid)[1]][:1] == ["NEW"])

    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        assert node.call("validator", "set_mode", "m-4", "paper")["to"] == "paper"
        assert c.send_signal(sig("b")).status == "ACCEPTED"  # at the paper group only
        wait_for(lambda: kind_at("pv", "b") == "NEW")
        assert node.call("validator", "set_mode", "m-4", "shadow")["to"] == "shadow"
        assert c.send_signal(sig("cb", cancel_of="b")).status == "ACCEPTED"  # now in shadow: still paper's
        wait_for(lambda: kind_at("pv", "b") == "CANCELED")
        assert c.send_signal(sig("cn", cancel_of="never")).status == "ACCEPTED"
        barrier("c")
        assert answers("cb") == ([], [])  # the live group never saw it: no refusal
        assert answers("cn") == ([("REJECTED", "AMEND_UNKNOWN_ORIGINAL")], [])  # once, to the trader

    old = node.call_supervisor("pid", "validator")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: _validator_back(node, old), timeout_s=60)
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        assert node.call("validator", "set_mode", "m-4", "live", True)["to"] == "live"  # the route is the original's
        assert c.send_signal(sig("cc", cancel_of="c")).status == "ACCEPTED"
        wait_for(lambda: kind_at("lv", "c") == "CANCELED" and kind_at("pv", "c") == "CANCELED")
        assert c.send_signal(sig("cn2", cancel_of="never-2")).status == "ACCEPTED"
        assert node.call("validator", "set_mode", "m-4", "shadow", True)["to"] == "shadow"
        barrier("d")
    live, copy = answers("c")
    assert [k for k, _ in live] == ["NEW", "CANCELED"] and [k for k, _ in copy] == ["NEW", "CANCELED"]
    assert answers("cc") == ([], [])  # no refusal from either group
    assert answers("cn2") == ([("REJECTED", "AMEND_UNKNOWN_ORIGINAL")], [])
