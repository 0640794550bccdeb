"""Placement by config (role -> a Ray custom resource) and the advertised address of a wildcard bind."""

from __future__ import annotations

import pytest

from actors.ray_actors import PLACEMENT_SHARE, _role, placement
from actors.service import ADVERTISE_ENV, advertised
from node.config import BrokerConfig, EngineConfig, NodeConfig, load_config
from node.errors import ConfigError

CFG = NodeConfig(engines=[EngineConfig(name="a"), EngineConfig(name="b")],
                 placement={"validator": "m1", "engine": "m2", "engine:b": "m3", "broker:paper": "m1"})


@pytest.mark.parametrize(
    ("role", "resource"),
    [("validator", "m1"), ("engine:a", "m2"), ("engine:b", "m3"), ("broker:paper", "m1"), ("supervisor", "")],
)
def test_a_role_runs_on_its_own_entry_else_its_kinds(role, resource):
    assert CFG.placement_of(role) == resource
    assert placement(CFG, role) == ({"resources": {resource: PLACEMENT_SHARE}} if resource else {})


def test_the_role_comes_from_the_builders_arguments():
    assert _role("engine", (CFG, EngineConfig(name="b"))) == "engine:b"
    assert _role("broker", (CFG, BrokerConfig(name="paper"), 0)) == "broker:paper"
    assert _role("validator", (CFG, "redis://", [], "tcp://x:1")) == "validator"


@pytest.mark.parametrize("placement_", [{"engine:nope": "m1"}, {"ledgerx": "m1"}, {"validator": ""}])
def test_a_placement_naming_nothing_is_refused_in_one_line(tmp_path, placement_):
    path = tmp_path / "node.toml"
    path.write_text("[placement]\n" + "".join('"%s" = "%s"\n' % kv for kv in placement_.items()))
    with pytest.raises(ConfigError) as err:
        load_config(path, {})
    assert "placement" in str(err.value) and "\n" not in str(err.value)


def test_a_wildcard_bind_never_advertises_the_wildcard(monkeypatch):
    monkeypatch.delenv(ADVERTISE_ENV, raising=False)
    assert advertised("127.0.0.1") == "127.0.0.1"
    assert advertised("0.0.0.0") not in ("0.0.0.0", "")
    monkeypatch.setenv(ADVERTISE_ENV, "node.example")
    assert advertised("0.0.0.0") == "node.example"
    assert advertised("10.0.0.5") == "10.0.0.5"  # an explicit address is what peers use


def test_up_takes_an_existing_cluster_address():
    from node.cli import build_parser

    args = build_parser().parse_args(["up", "--address", "10.0.0.1:6379"])
    assert args.address == "10.0.0.1:6379"
    assert build_parser().parse_args(["up"]).address is None
