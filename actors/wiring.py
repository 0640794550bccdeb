"""Where an engine sits in the node: every address and role the supervisor hands it, in one value
(every engine kind takes the same one)."""

from __future__ import annotations

import msgspec


class EngineWiring(msgspec.Struct, frozen=True, kw_only=True):
    redis_url: str | None
    broker_endpoint: str
    publish_endpoint: str | None = None  # the events relay's XSUB side (None: bind a PUB of its own)
    epoch: int = 1
    recover: bool = False  # a leader start that must ask the broker and replay the log first
    role: str = "leader"  # or "standby"
    heartbeat_endpoint: str | None = None
    follow_endpoint: str | None = None  # the relay's XPUB side, for a standby following the leader
    port: int = 0  # the intake port (0: any); a restarted engine comes back on it
    group: str = "default"  # the engine group it serves (node.router): its signals and its epoch
    spawn_id: str = ""  # new for each spawn by the supervisor; seen again at open: Ray restarted it

    def as_restarted(self) -> "EngineWiring":
        """What a process Ray brought back gets: whatever it was, it rejoins as a standby."""
        return msgspec.structs.replace(self, role="standby", recover=False)
