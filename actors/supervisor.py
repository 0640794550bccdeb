"""The supervisor: starts the data-plane actors in dependency order, holds the endpoint registry,
stops them cleanly.

Contract:
- `start()` is idempotent: a second call returns the registry it already has.
- Start order: broker (binds its order ROUTER), engine (connects to it; binds its intake and
  events), validator (connects to the engine; binds the intake clients use). Stop runs in reverse,
  so nothing accepted is left between a live sender and a stopped receiver.
- The registry maps role -> endpoint; it is the one place clients and actors look addresses up.
- The epoch it grants the engine is 1 at start; failover (a later step) bumps it.
"""

from __future__ import annotations

from typing import Any

import ray

from actors.ray_actors import spawn
from node.config import NodeConfig


class Supervisor:
    def __init__(self, cfg: NodeConfig, redis_url: str, database_url: str | None = None) -> None:
        self._cfg = cfg
        self._redis_url = redis_url
        self._database_url = database_url
        self._actors: dict[str, Any] = {}
        self._registry: dict[str, str] = {}
        self.epoch = 1

    def start(self) -> dict[str, str]:
        if self._registry:
            return dict(self._registry)
        cfg, ns = self._cfg, self._cfg.ray_namespace
        prefix = cfg.node_id + "."
        broker = spawn("broker", prefix + "broker:" + cfg.broker.name, ns, cfg)
        self._actors["broker"] = broker
        b = ray.get(broker.start.remote())
        engine = spawn("engine", prefix + "engine:" + cfg.engine.name, ns, cfg, self._redis_url, b["orders"], self.epoch)
        self._actors["engine"] = engine
        e = ray.get(engine.start.remote())
        validator = spawn("validator", prefix + "validator", ns, cfg, self._redis_url, e["intake"], e["events"])
        self._actors["validator"] = validator
        v = ray.get(validator.start.remote())
        self._registry = {
            "intake": v["intake"],
            "events": e["events"],
            "engine": e["intake"],
            "broker": b["orders"],
        }
        return dict(self._registry)

    def registry(self) -> dict[str, str]:
        return dict(self._registry)

    def stats(self) -> dict[str, dict]:
        refs = {role: a.stats.remote() for role, a in self._actors.items()}
        return {role: ray.get(ref, timeout=10) for role, ref in refs.items()}

    def call(self, role: str, method: str, *args: Any) -> Any:
        return ray.get(self._actors[role].call.remote(method, *args), timeout=30)

    def stop(self) -> None:
        for role in ("validator", "engine", "broker"):
            actor = self._actors.pop(role, None)
            if actor is None:
                continue
            try:
                ray.get(actor.stop.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - stopping: the kill below ends it anyway
                pass
            ray.kill(actor)
        self._registry = {}
