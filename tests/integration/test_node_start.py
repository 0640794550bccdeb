"""A node start spawns the validator's and the API's processes first (they load beside the other
children and get their addresses later): a start that fails leaves none of them behind. (The API's
intake address, given before the validator bound it, is used by every `POST /v1/signals` of
tests/integration/test_api.py.)"""

from __future__ import annotations

import msgspec
import pytest

from node.config import BrokerKind
from node.runtime import NodeRuntime, quiet
from tests.waits import wait_for


def test_a_start_that_fails_kills_the_validator_and_api_it_spawned_early(ray_session, make_config):
    from actors.ray_actors import node_actor_names

    cfg = make_config()
    # a paper-remote adapter without its exchange's address fails to build: the first batch fails
    cfg = msgspec.structs.replace(cfg, broker=msgspec.structs.replace(cfg.broker, kind=BrokerKind.PAPER_REMOTE))
    runtime = NodeRuntime(cfg, quiet)
    try:
        with pytest.raises(Exception, match="exchange_endpoint"):
            runtime.start()
        supervisor = cfg.node_id + ".supervisor"
        # the supervisor killed every child it spawned (ray.kill returns before the actor is gone)
        wait_for(lambda: node_actor_names(cfg.node_id, cfg.ray_namespace) == [supervisor], timeout_s=60)
    finally:
        runtime.stop()

