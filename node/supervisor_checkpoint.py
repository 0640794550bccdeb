"""The supervisor's checkpoint: what a restarted supervisor reads back from Redis (pure; the writes go
through `actors.recorder.Recorder`, the read through `actors.recorder.read_checkpoint`).

One value under `<node_id>.supervisor.checkpoint`, rewritten whole on every change (an epoch grant, a
promotion, a broker move, a child spawned or replaced):
- `lanes`: each engine group's epoch, leader and active broker (`FailoverPolicy.checkpoint()`);
- `children`: role -> the Ray name of the detached actor that plays it now (`validator`, `engine:<name>`,
  `broker:<name>`, `ledger`, `reconciler`, `relay`, `api`); a restarted supervisor finds each with
  `ray.get_actor(name)` and kills any actor under the node's prefix that is not listed (an orphan spawned
  just before a death, before its checkpoint was written);
- `registry`: role -> endpoint (the addresses clients and engines already use: the heartbeat socket is
  bound again at the same address);
- `engine_ports`, `broker_ports`: the ports a restarted engine or adapter binds again;
- `processes`: role -> (Ray node id, pid) of the process that played it when last learned (at its start,
  at a promotion): a restarted supervisor judges a leader whose process is gone dead at once
  (node.liveness.resume_verdict);
- `restarts`: when Ray restarted this node's supervisor (the newest few, ns): its own restart intensity
  (node.failover.RestartBudget), counted across the processes that play it.
"""

from __future__ import annotations

import msgspec

from node.failover import LaneState

__all__ = ["SupervisorCheckpoint", "checkpoint_key", "decode", "encode", "orphans"]


class SupervisorCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    lanes: list[LaneState]
    children: dict[str, str]
    registry: dict[str, str]
    engine_ports: dict[str, int] = {}
    broker_ports: dict[str, int] = {}
    processes: dict[str, tuple[str, int]] = {}
    restarts: list[int] = []


_decoder = msgspec.json.Decoder(SupervisorCheckpoint)


def checkpoint_key(node_id: str) -> str:
    return node_id + ".supervisor.checkpoint"


def encode(checkpoint: SupervisorCheckpoint) -> bytes:
    return msgspec.json.encode(checkpoint)


def decode(raw: bytes | None) -> SupervisorCheckpoint | None:
    """The checkpoint, or None when absent or unreadable (a restarted supervisor then starts afresh)."""
    if not raw:
        return None
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def orphans(named: list[str], prefix: str, children: dict[str, str], keep: tuple[str, ...]) -> list[str]:
    """The node's actors (names under `prefix`) that no role of the checkpoint holds, apart from `keep`
    (the supervisor itself): spawned before a death their checkpoint never recorded."""
    held = set(children.values()) | set(keep)
    return sorted(n for n in named if n.startswith(prefix) and n not in held)
