"""A node that leaves nothing behind (the demo): its own identity on shared stores, removed at stop.

A node's state in Redis is its keys `<node_id>.*` plus the six streams `StorageConfig` names; in
PostgreSQL it is the whole database its ledger writes (one node per database). `isolated` gives a
config a node id of its own for this run and streams under it, so every key the node writes starts
with `<node_id>.`; `own_database` makes it a database of its own on the same server. At stop,
`delete_keys` and `drop_database` remove both. Nothing here touches a key or database of another node.
"""

from __future__ import annotations

import asyncio
import secrets

import msgspec

from node.config import NodeConfig
from node.errors import StoreError
from node.migrations import create_database, drop_database
from node.stream_claim import STREAM_FIELDS

DATABASE_PREFIX = "nae_demo_"


def isolated(base: NodeConfig, tag: str = "demo") -> NodeConfig:
    """`base` under a node id of its own (`<node_id>-<tag>-<8 hex>`) whose streams are named under it."""
    node_id = base.node_id + "-" + tag + "-" + secrets.token_hex(4)
    st = base.storage
    streams = {
        field: node_id + "." + getattr(st, field)
        for field in STREAM_FIELDS  # every stream: one left shared would be claimed by this scratch id
    }
    return msgspec.structs.replace(base, node_id=node_id, storage=msgspec.structs.replace(st, **streams))


def own_database(server_url: str) -> tuple[str, str]:
    """A new, empty database on the server of `server_url`: (name, URL). Raises StoreError."""
    try:
        return asyncio.run(create_database(server_url, DATABASE_PREFIX))
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - asyncpg's and the socket's errors: one line for the user
        first = (str(exc).splitlines() or [""])[0][:200]
        raise StoreError("cannot create the demo's own database (CREATE DATABASE): " + type(exc).__name__
                         + (": " + first if first else "")) from exc


def drop_own_database(server_url: str, name: str) -> None:
    if not name.startswith(DATABASE_PREFIX):
        raise StoreError("not a demo database: " + name)
    asyncio.run(drop_database(server_url, name))


def key_pattern(node_id: str) -> str:
    """The SCAN pattern of every key of `node_id` (glob characters in the id matched literally)."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in node_id) + ".*"


def delete_keys(redis_url: str, node_id: str) -> int:
    """Delete every key `<node_id>.*`; returns how many."""
    from node.streams import connect_redis

    client = connect_redis(redis_url, timeout_s=5.0)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=key_pattern(node_id), count=1_000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += client.delete(*batch)
                batch.clear()
        if batch:
            deleted += client.delete(*batch)
        return deleted
    finally:
        client.close()
