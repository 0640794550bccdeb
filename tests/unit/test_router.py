"""Engine groups and the strategy router: config checks, route matching, per-group fencing at the
broker gate, the NO_ROUTE refusal, and stranding orders a lost broker never answered."""

import time

import msgspec
import pytest

from adapters.broker_gate import Admit, BrokerGate
from adapters.engines.native import NativeOrderManager
from node.config import (
    DEFAULT_GROUP,
    BrokerConfig,
    EngineConfig,
    EngineGroupConfig,
    IntakeConfig,
    NodeConfig,
    SigningConfig,
    load_config,
)
from node.errors import ConfigError
from node.intake import SignalGate
from node.messages import ExecKind, ExecutionReport, Status, encode
from node.orders import OrderState
from node.reasons import Reason
from node.router import Router
from node.signing import make_envelope
from tests.unit.test_orders import accepted

GROUPS = [
    EngineGroupConfig(name="eq", engines=[EngineConfig(name="a"), EngineConfig(name="b")], brokers=["p1", "p2"]),
    EngineGroupConfig(name="etf", engines=[EngineConfig(name="c")], brokers=["p2"]),
]
BROKERS = [BrokerConfig(name="p1"), BrokerConfig(name="p2")]


def node_config(**over) -> NodeConfig:
    return msgspec.convert(
        {"groups": msgspec.to_builtins(GROUPS), "brokers": msgspec.to_builtins(BROKERS), **over}, NodeConfig
    )


def test_without_groups_one_default_group_runs_the_engines_over_every_broker():
    cfg = NodeConfig(engines=[EngineConfig(name="x"), EngineConfig(name="y")])
    (group,) = cfg.group_list()
    assert group.name == DEFAULT_GROUP and [e.name for e in group.engines] == ["x", "y"]
    assert [b.name for b in cfg.group_brokers(group)] == ["paper"]
    assert Router.from_config(cfg).single


BASE_TOML = """
[[brokers]]
name = "p1"
[[brokers]]
name = "p2"
"""


@pytest.mark.parametrize(
    "toml, words",
    [
        ('[[groups]]\nname = "g"\nengines = [{name = "a"}]\n[[routes]]\ngroup = "nope"\n', "unknown group"),
        ('[[groups]]\nname = "g"\nengines = [{name = "a"}]\nbrokers = ["zz"]\n', "unknown broker"),
        ('[[groups]]\nname = "g"\nengines = [{name = "a"}]\n[[groups]]\nname = "h"\nengines = [{name = "a"}]\n',
         "engine name"),
        ('[[groups]]\nname = "g"\nengines = [{name = "a"}]\n[[groups]]\nname = "g"\nengines = [{name = "b"}]\n',
         "share a name"),
        ('[[groups]]\nname = "g"\nengines = []\n', "no engines"),
        ('[[groups]]\nname = "bad name"\nengines = [{name = "a"}]\n', "groups"),
        ('[[brokers]]\nname = "p1"\n', "share a name"),
    ],
)
def test_a_bad_group_or_route_is_a_config_error_naming_it(tmp_path, toml, words):
    path = tmp_path / "node.toml"
    path.write_text(BASE_TOML + toml)
    with pytest.raises(ConfigError, match=words):
        load_config(path, env={})


def test_routes_match_exact_ids_prefixes_and_symbols_first_match_wins():
    cfg = node_config(routes=[
        {"group": "etf", "symbols": ["SPY", "QQQ"]},
        {"group": "etf", "strategies": ["index-*"]},
        {"group": "eq", "strategies": ["momo"], "symbols": ["AAPL"]},
    ])
    r = Router.from_config(cfg)
    assert r.group_of("anything", "SPY") == "etf"  # symbols only
    assert r.group_of("index-7", "AAPL") == "etf"  # strategy prefix
    assert r.group_of("momo", "AAPL") == "eq"
    assert r.group_of("momo", "MSFT") == "eq"  # no route: the first group
    assert r.group_of("index", "MSFT") == "eq"  # "index-*" needs the dash
    assert r.group_of("momo", "AAPL") == "eq"  # cached answer is the same


def test_reject_unrouted_leaves_unmatched_signals_without_a_group():
    r = Router.from_config(node_config(routes=[{"group": "etf", "symbols": ["SPY"]}], reject_unrouted=True))
    assert not r.single
    assert r.group_of("s", "SPY") == "etf" and r.group_of("s", "AAPL") is None


def test_gate_refuses_an_unrouted_signal_with_no_route():
    r = Router.from_config(node_config(routes=[{"group": "etf", "symbols": ["SPY"]}], reject_unrouted=True))
    gate = SignalGate(SigningConfig(keys={"k": "sec"}), IntakeConfig(), route=r.group_of)

    def send(symbol: str):
        payload = msgspec.msgpack.encode({"request_id": "r-" + symbol, "strategy_id": "s", "timestamp": time.time(),
                                          "symbol": symbol, "action": "BUY", "quantity": 1.0})
        return gate.admit(encode(make_envelope("k", b"sec", payload, time.time_ns())), time.time_ns()).reply

    assert send("SPY").status is Status.ACCEPTED
    refused = send("AAPL")
    assert refused.status is Status.REJECTED and refused.reasons == [Reason.NO_ROUTE] and "AAPL" in refused.detail


def test_the_gate_fences_each_group_on_its_own_epoch():
    g = BrokerGate()
    assert g.admit_submit(3, "a1", "eq") is Admit.SEND
    assert g.admit_submit(1, "e1", "etf") is Admit.SEND  # another group's epoch 1 is not stale
    assert g.admit_submit(2, "a2", "eq") is Admit.STALE_EPOCH
    assert g.admit_submit(1, "a1", "etf") is Admit.DUPLICATE  # an id is sent once, whatever the group
    assert g.epochs == {"eq": 3, "etf": 1} and g.epoch == 3


def test_brokers_share_an_account_only_when_they_front_the_same_orders():
    assert BrokerConfig(name="a").account_id != BrokerConfig(name="b").account_id
    one = BrokerConfig(name="a", kind="paper-remote", exchange_endpoint="tcp://127.0.0.1:7000")
    two = BrokerConfig(name="b", kind="paper-remote", exchange_endpoint="tcp://127.0.0.1:7000")
    assert one.account_id == two.account_id
    assert BrokerConfig(name="a", account="ACC-1").account_id == BrokerConfig(name="b", account="ACC-1").account_id


def test_strand_marks_sent_unanswered_orders_unknown_and_never_redrives_them():
    m = NativeOrderManager()
    sent = m.on_signal(accepted("r1"))
    acked = m.on_signal(accepted("r2"))
    m.on_report(ExecutionReport(kind=ExecKind.NEW, client_order_id=acked.client_order_id))
    never_sent = m.on_signal(accepted("r3"), submit=False)
    out = m.strand()
    assert [r.client_order_id for r in out] == [sent.client_order_id]
    assert out[0].kind is ExecKind.UNKNOWN and out[0].reason == Reason.BROKER_LOST and out[0].request_id == "r1"
    assert m.orders[sent.client_order_id].state is OrderState.UNKNOWN
    assert [i.client_order_id for i in m.pending()] == [never_sent.client_order_id]  # only the unsent one
    assert m.strand() == []  # once
    # the lost broker's later word still moves it
    m.on_report(ExecutionReport(kind=ExecKind.FILL, client_order_id=sent.client_order_id, exec_id="x", cum_qty=1.0))
    assert m.orders[sent.client_order_id].state is OrderState.FILLED


def test_the_shipped_groups_example_loads_and_routes():
    from pathlib import Path

    cfg = load_config(Path(__file__).parents[2] / "deploy" / "groups.toml", env={})
    r = Router.from_config(cfg)
    assert [g.name for g in cfg.group_list()] == ["equities", "etf"]
    assert [b.name for b in cfg.group_brokers(cfg.group_list()[1])] == ["paper-b", "paper-a"]
    assert r.group_of("optimus-1", "SPY") == "etf" and r.group_of("optimus-1", "AAPL") == "equities"
    assert r.group_of("other", "AAPL") is None
