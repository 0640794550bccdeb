"""The role an engine opens with: a process Ray brought back never leads on its own.

Ray re-runs a dead actor's constructor with the arguments it was first given, so a leader Ray
restarts would open as it was first wired (leader, `recover=True`, its old epoch) and promote itself,
while the supervisor has failed its group over meanwhile: it would say `leader` while fenced, and
churn (told to step down, once a second). Two signs of a restart, either enough: Ray's own flag, and
the spawn id the supervisor gives each engine it starts (`EngineWiring.spawn_id`), which the engine
swaps into Redis at open: finding its own id there means this spawn opened before. A restarted engine
opens as a standby without recovery and waits for the supervisor to promote it, whatever the kind.
"""

from __future__ import annotations


def spawn_key(node_id: str, engine: str) -> str:
    return node_id + ".engine." + engine + ".spawn"


def opened_before(previous: bytes | str | None, spawn_id: str) -> bool:
    """Whether the spawn id found in Redis (before this open wrote its own) says this spawn opened."""
    if not spawn_id or previous is None:
        return False
    found = previous.decode(errors="replace") if isinstance(previous, bytes) else previous
    return found == spawn_id


def opening(role: str, recover: bool, restarted: bool) -> tuple[str, bool]:
    """(role, recover) to open with: a restarted process rejoins as a standby, recovering nothing."""
    if restarted:
        return "standby", False
    return role, recover and role == "leader"
