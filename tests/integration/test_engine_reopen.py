"""An engine Ray re-creates with its first wiring (leader, recover=True, its old epoch) opens as a
standby recovering nothing, on the machine's Redis, whatever its kind; its first open keeps the
wiring. (Ray re-runs a dead actor's constructor with the same arguments: two hosts built from one
wiring are what a restart is to the host.)"""

from __future__ import annotations

import secrets

import msgspec
import pytest
import redis

from actors.engine import EngineHost
from actors.nautilus_engine import NautilusEngineHost
from actors.wiring import EngineWiring
from node.engine_opening import spawn_key


@pytest.mark.parametrize("host_class", [NautilusEngineHost, EngineHost])
def test_a_second_open_of_one_spawn_is_a_standby(make_config, redis_url, host_class) -> None:
    cfg = make_config()
    wiring = EngineWiring(redis_url=redis_url, broker_endpoint="tcp://127.0.0.1:1", epoch=3, recover=True,
                          role="leader", spawn_id=secrets.token_hex(8))
    client = redis.Redis.from_url(redis_url)
    try:
        first = host_class(cfg, "e", wiring)
        first._open_streams()
        assert (first.role, first._recover, first.restarted) == ("leader", True, False)
        again = host_class(cfg, "e", wiring)  # what Ray's restart builds
        again._open_streams()
        assert (again.role, again._recover, again.restarted) == ("standby", False, True)
        assert again.epoch == 3  # fenced at its old epoch until the supervisor promotes it
        respawned = host_class(cfg, "e", msgspec.structs.replace(wiring, spawn_id=secrets.token_hex(8)))
        respawned._open_streams()  # a new spawn by the supervisor: its wiring stands
        assert (respawned.role, respawned._recover) == ("leader", True)
    finally:
        client.delete(spawn_key(cfg.node_id, "e"))
        client.close()
