"""Every engine host implements the whole EngineControl contract (node.control), with its signatures.

Issue 11: NautilusEngineHost had no switch_broker / settle_stranded, so a broker failover of a Nautilus
group failed half-way through the supervisor's move. This test runs over every engine kind the node
builds (actors.hosts.build_engine), so a new kind without the contract fails here, not in production.
"""

from __future__ import annotations

import inspect

import pytest

from actors.engine import EngineHost
from actors.nautilus_engine import NautilusEngineHost
from actors.ray_actors import ServiceActor
from node.control import ENGINE_CONTROL_METHODS, EngineControl, EngineKind

HOSTS = {EngineKind.NATIVE: EngineHost, EngineKind.NAUTILUS: NautilusEngineHost}


def _params(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def test_every_engine_kind_has_a_host_under_contract():
    assert set(HOSTS) == set(EngineKind)


def test_the_method_list_is_the_protocols():
    declared = [name for name, v in vars(EngineControl).items() if inspect.isfunction(v) and not name.startswith("_")]
    assert declared == list(ENGINE_CONTROL_METHODS)


@pytest.mark.parametrize("kind", list(EngineKind))
@pytest.mark.parametrize("method", ENGINE_CONTROL_METHODS)
def test_each_host_implements_each_control_method_with_the_protocols_parameters(kind, method):
    host = HOSTS[kind]
    impl = getattr(host, method, None)
    assert impl is not None and callable(impl), host.__name__ + " lacks " + method
    assert _params(impl) == _params(getattr(EngineControl, method)), (host.__name__, method)


@pytest.mark.parametrize("method", ENGINE_CONTROL_METHODS)
def test_the_ray_host_forwards_each_control_method_by_name_and_parameters(method):
    # the supervisor calls actor.<method>.remote(...): no method names as strings
    assert _params(getattr(ServiceActor, method)) == _params(getattr(EngineControl, method))
