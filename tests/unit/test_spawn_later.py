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


def _table(host: str, port: int = 0, registry: dict | None = None):
    from types import SimpleNamespace

    from actors.supervisor import Supervisor
    from node.config import IntakeConfig

    t = SimpleNamespace(_cfg=NodeConfig(bind_host=host, intake=IntakeConfig(port=port)), _registry=registry or {},
                        _picked_intake_port=0, _picked_ports=set(), _engine_ports={}, _broker_ports={})
    t._pick_port = lambda h: Supervisor._pick_port(t, h)  # type: ignore[arg-type]
    t._intake_port = lambda: Supervisor._intake_port(t)  # type: ignore[arg-type]
    t._intake_endpoint = lambda: Supervisor._intake_endpoint(t)  # type: ignore[arg-type]
    return t


def test_with_intake_port_0_the_port_is_picked_before_the_validator_binds_and_kept():
    t = _table("127.0.0.1")
    port = t._intake_port()
    assert port > 0 and t._intake_port() == port
    assert t._intake_endpoint() == "tcp://127.0.0.1:" + str(port)  # what the API is given before the validator binds
    assert _table("127.0.0.1", port=6001)._intake_endpoint() == "tcp://127.0.0.1:6001"
    restarted = _table("127.0.0.1", registry={"intake": "tcp://127.0.0.1:6002"})
    assert restarted._intake_port() == 6002  # a restarted validator keeps the address clients use


def test_a_wildcard_bind_leaves_the_port_to_the_validators_machine_and_the_api_after_it():
    t = _table("0.0.0.0")
    assert t._intake_port() == 0 and t._intake_endpoint() == ""
    assert _table("0.0.0.0", port=6001)._intake_endpoint() == ""


def test_a_port_picked_for_one_child_is_never_picked_for_another():
    """The OS may hand a just-closed port out again; a node start picks eight or more before any is
    bound: `free_port` skips the ones already picked, and picks below the OS's range for outgoing
    connections' local ports (one picked inside it was once handed to a connection before the child
    bound it: "Address already in use" at a node start in CI)."""
    import socket as _socket

    from node.ports import free_port, outgoing_range, pick_range

    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        first = s.getsockname()[1]
    taken = {first}
    low = outgoing_range()[0]
    for _ in range(200):
        port = free_port("127.0.0.1", taken)
        assert port not in taken and port < low  # never one the OS could give a connection meanwhile
        taken.add(port)
    assert pick_range((32768, 60999)) == range(20768, 32768)
    assert pick_range((1500, 65535)) is None  # no room below: the OS's port, as before


def test_a_port_in_use_is_never_picked():
    import random
    import socket as _socket

    from node.ports import free_port

    with _socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        used = busy.getsockname()[1]
        # a range of one port, in use: every try fails, and the OS's free port comes instead
        assert free_port("127.0.0.1", ports=range(used, used + 1), rng=random.Random(1)) != used
