"""`execnode up` and the demo run a leader and a hot standby without a config (issue 11 item 5)."""

from __future__ import annotations

import pytest

from node.config import HOT_STANDBY_ENGINES, BrokerConfig, load_config


def test_no_config_file_runs_a_leader_and_a_hot_standby():
    cfg = load_config(None, env={})
    assert [(e.name, e.kind) for e in cfg.engine_list()] == [(e["name"], e["kind"]) for e in HOT_STANDBY_ENGINES]
    assert len(cfg.group_list()) == 1 and len(cfg.engine_list()) == 2


def test_a_file_without_engines_gets_the_pair_too(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('node_id = "n1"\n')
    assert len(load_config(path, env={}).engine_list()) == 2


def test_engines_or_groups_named_in_the_file_are_taken_as_written(tmp_path):
    one = tmp_path / "one.toml"
    one.write_text('[[engines]]\nname = "solo"\n')
    assert [e.name for e in load_config(one, env={}).engine_list()] == ["solo"]
    grouped = tmp_path / "groups.toml"
    grouped.write_text('[[groups]]\nname = "g"\n[[groups.engines]]\nname = "x"\n')
    assert [e.name for e in load_config(grouped, env={}).engine_list()] == ["x"]


@pytest.mark.parametrize("kind, inside", [("paper", True), ("paper-remote", False), ("schwab", False), ("ibkr", False)])
def test_only_the_in_process_paper_venue_lives_inside_its_adapter(kind, inside):
    # the supervisor never replaces a live adapter whose venue would die with it (an empty book after)
    assert BrokerConfig(kind=kind).venue_inside is inside
