"""Each Redis stream a node uses belongs to one node id: two nodes on one Redis never mix streams.

Two nodes with different node ids but the same stream names (the defaults, `execution.signals` and
so on) would replay each other's signals: a duplicated order. At start a node claims every stream of
`StorageConfig` with an owner key `<stream>:owner` holding its node id; the claim is one Lua script,
so it is all or nothing: when any stream is owned by another node id nothing is written and the node
refuses to start, naming the other node and the config keys to change. The claim is never released
(the stream's entries are that node's); an operator hands a stream over by deleting its owner key.
A scratch node's streams are named `<node_id>.*`, so its owner keys go with its other keys at stop.
"""

from __future__ import annotations

from node.config import StorageConfig
from node.errors import ConfigError, StoreError

#: the `StorageConfig` fields that name a stream, each claimed by the node at start
STREAM_FIELDS = ("signals_stream", "events_stream", "monitoring_stream", "intake_stream",
                 "controls_stream", "shadow_stream")

OWNER_SUFFIX = ":owner"

# KEYS: owner keys; ARGV[1]: node id. Returns {} after claiming every key, else {index, owner, ...}
# of every key owned by another node id, having written nothing.
_CLAIM = """
local foreign = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner and owner ~= ARGV[1] then table.insert(foreign, i); table.insert(foreign, owner) end
end
if #foreign > 0 then return foreign end
for _, key in ipairs(KEYS) do redis.call('SET', key, ARGV[1], 'NX') end
return {}
"""


def owner_key(stream: str) -> str:
    return stream + OWNER_SUFFIX


def streams(storage: StorageConfig) -> dict[str, str]:
    """config key (`storage.<field>`) -> stream name, for every stream the node uses."""
    return {"storage." + field: getattr(storage, field) for field in STREAM_FIELDS}


def refusal(node_id: str, foreign: dict[str, str], named: dict[str, str]) -> ConfigError:
    """The one line a node stops with when other node ids own some of its streams (stream -> owner)."""
    owners = sorted(set(foreign.values()))
    keys = ", ".join(k for k, s in named.items() if s in foreign)
    return ConfigError(
        "streams " + ", ".join(sorted(foreign)) + " belong to node " + " and ".join(map(repr, owners))
        + ", not " + repr(node_id) + ": two nodes on one Redis must not share streams (each would replay"
        " the other's signals); set " + keys + " to streams of this node's own, or, if "
        + " and ".join(map(repr, owners)) + " is gone for good, delete the Redis keys <stream>"
        + OWNER_SUFFIX + "; nothing was written"
    )


def claim(redis_url: str, node_id: str, storage: StorageConfig) -> None:
    """Claim every stream of `storage` for `node_id` (already ours: nothing changes). Raises
    ConfigError when another node id owns one (nothing written), StoreError when Redis fails."""
    import redis

    from node.streams import connect_redis

    named = streams(storage)
    names = list(dict.fromkeys(named.values()))
    client = connect_redis(redis_url, timeout_s=5.0)
    try:
        got = client.eval(_CLAIM, len(names), *[owner_key(s) for s in names], node_id)
    except redis.RedisError as exc:
        raise StoreError("cannot claim the node's streams in Redis: " + type(exc).__name__ + ": "
                         + (str(exc).splitlines() or [""])[0][:200]) from exc
    finally:
        client.close()
    if got:
        foreign = {names[int(i) - 1]: _text(owner) for i, owner in zip(got[::2], got[1::2])}
        raise refusal(node_id, foreign, named)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
