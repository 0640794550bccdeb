"""A scratch node (the demo) removes exactly its own keys and database, on the machine's Redis and
PostgreSQL, whatever its node id holds (glob characters included)."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from node.config import NodeConfig
from node.errors import StoreError
from node.scratch import delete_keys, drop_own_database, isolated, own_database

_ID_CHARS = st.text(alphabet="ab-_.*?[]\\^!1", min_size=1, max_size=12)


@settings(max_examples=25, deadline=None)
@given(base=_ID_CHARS)
def test_delete_keys_removes_the_nodes_keys_and_no_other(redis_url, base: str) -> None:
    node_id = base + "-" + secrets.token_hex(4)
    mine = [node_id + ".risk.snapshot", node_id + ".paper.paper", node_id + ".x.signals"]
    others = [node_id + "x.risk", node_id, "a" + node_id + ".risk", node_id[:-1] + ".risk"]
    lookalike = node_id.translate({ord("*"): "Z", ord("?"): "Z"})  # what the id would match as a glob
    if lookalike != node_id:
        others.append(lookalike + ".risk")
    client = redis.Redis.from_url(redis_url)
    try:
        for key in mine + others:
            client.set(key, b"1", ex=60)
        assert delete_keys(redis_url, node_id) == len(mine)
        assert [client.exists(k) for k in mine] == [0] * len(mine)
        assert [client.exists(k) for k in others] == [1] * len(others)
    finally:
        client.delete(*(mine + others))


def test_isolated_names_every_stream_under_a_node_id_of_its_own() -> None:
    base = NodeConfig()
    a, b = isolated(base), isolated(base)
    assert a.node_id != b.node_id and a.node_id.startswith(base.node_id + "-demo-")
    for cfg in (a, b):
        st_ = cfg.storage
        for name in (st_.signals_stream, st_.events_stream, st_.monitoring_stream, st_.intake_stream,
                     st_.controls_stream):
            assert name.startswith(cfg.node_id + "."), name


def test_own_database_is_new_and_dropped(database_url) -> None:
    name, url = own_database(database_url)

    async def names() -> set[str]:
        conn = await asyncpg.connect(database_url)
        try:
            return {r[0] for r in await conn.fetch("SELECT datname FROM pg_database")}
        finally:
            await conn.close()

    assert name in asyncio.run(names()) and url.endswith("/" + name)
    drop_own_database(database_url, name)
    assert name not in asyncio.run(names())
    with pytest.raises(StoreError):
        drop_own_database(database_url, "postgres")  # never another database
