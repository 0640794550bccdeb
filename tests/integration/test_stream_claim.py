"""Two nodes on one Redis never mix their streams: the second node id to claim a stream refuses to
start, in one line, writing nothing; the owner restarts freely."""

from __future__ import annotations

import secrets

import msgspec
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from node.config import StorageConfig
from node.errors import ConfigError
from node.runtime import NodeRuntime, quiet
from node.stream_claim import STREAM_FIELDS, claim, owner_key, streams


def _owners(client: redis.Redis, storage: StorageConfig) -> dict[str, bytes | None]:
    return {s: client.get(owner_key(s)) for s in streams(storage).values()}


def test_a_second_node_on_the_same_streams_refuses_to_start(ray_session, make_config, redis_url) -> None:
    first = NodeRuntime(make_config(), quiet)
    second_cfg = msgspec.structs.replace(make_config(), storage=first.cfg.storage)  # another node id, same streams
    client = redis.Redis.from_url(redis_url)
    try:
        first.start()
        owned = _owners(client, first.cfg.storage)
        assert set(owned.values()) == {first.cfg.node_id.encode()}
        second = NodeRuntime(second_cfg, quiet)
        with pytest.raises(ConfigError) as refused:
            second.start()
        line = str(refused.value)
        assert "\n" not in line and repr(first.cfg.node_id) in line and "storage.signals_stream" in line
        assert second.supervisor is None  # refused before Ray: nothing of the second node runs
        assert _owners(client, first.cfg.storage) == owned
        assert first.stats()  # the first node runs on
    finally:
        first.stop()
        client.delete(*[owner_key(s) for s in streams(first.cfg.storage).values()])
        client.close()


@settings(max_examples=20, deadline=None)
@given(held=st.sets(st.sampled_from(STREAM_FIELDS)))
def test_the_claim_is_all_or_nothing(redis_url, held: set[str]) -> None:
    run = secrets.token_hex(4)
    storage = StorageConfig(**{f: "test." + run + "." + f for f in STREAM_FIELDS})
    client = redis.Redis.from_url(redis_url)
    keys = [owner_key(s) for s in streams(storage).values()]
    try:
        for field in held:
            client.set(owner_key(getattr(storage, field)), b"other-" + run.encode())
        before = _owners(client, storage)
        if held:
            with pytest.raises(ConfigError):
                claim(redis_url, "me-" + run, storage)
            assert _owners(client, storage) == before
        else:
            claim(redis_url, "me-" + run, storage)
            claim(redis_url, "me-" + run, storage)  # the owner again: nothing changes
            assert set(_owners(client, storage).values()) == {b"me-" + run.encode()}
    finally:
        client.delete(*keys)
        client.close()
