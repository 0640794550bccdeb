"""A validator spawned before its addresses are known (`actors.hosts.prepare`, `ServiceActor(...,
later=True)`): what it prepared from its config is the one the built validator uses; a kind Ray
restarts cannot be spawned so (its replayed constructor would come back unopened). No Ray cluster."""

from __future__ import annotations

import pytest

from node.config import NodeConfig


def test_the_validator_built_at_open_uses_the_risk_check_prepared_beforehand_with_its_start_states():
    from actors.hosts import build, prepare
    from node.risk import TradingState
    from node.risk.kernels import I_STATE

    cfg = NodeConfig()
    prepared = prepare("validator", cfg)
    risk = prepared["risk"]
    validator = build("validator", cfg, "redis://127.0.0.1:1/0", ["tcp://127.0.0.1:1"], "tcp://127.0.0.1:2",
                      (("HALTED", "s1", "reconciler"),), **prepared)
    assert validator.risk is risk
    assert risk.book.ti[I_STATE, risk.book.add_strategy("s1")] == int(TradingState.HALTED)


@pytest.mark.parametrize("kind", ["engine", "relay", "api", "supervisor"])
def test_a_kind_ray_restarts_is_never_spawned_later(kind):
    from actors.ray_actors import spawn_later

    with pytest.raises(ValueError, match="Ray restarts it"):
        spawn_later(kind, "n", "ns", NodeConfig())
