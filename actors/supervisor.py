"""The supervisor: starts the data-plane actors in dependency order, holds the endpoint registry,
restarts what dies, stops everything cleanly.

Contract:
- `start()` is idempotent: a second call returns the registry it already has.
- Start order: the events relay (in this process: a stable address for execution reports),
  broker (binds its order ROUTER), engine (connects to broker and relay; binds its intake),
  validator (connects to the engine; binds the intake clients use). Stop runs in reverse.
- The registry maps role -> endpoint; it is the one place clients and actors look addresses up.
  `intake` and `events` never change while the supervisor lives (the intake keeps its configured
  port across validator restarts; the relay outlives engines).
- State it keeps: the epoch it last granted. A restarted engine gets epoch + 1 and starts in
  recovery (asks the broker, replays the signal log after its checkpoint), so a zombie of the old
  one is fenced by the broker.
- `watch` (on by default) polls each actor's liveness every `watch_interval_ms` on the control
  plane (Ray), never on the per-signal path, and restarts a dead engine or validator.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ray

from actors.events_relay import EventsRelay
from actors.ray_actors import spawn
from node.config import NodeConfig


class Supervisor:
    def __init__(
        self,
        cfg: NodeConfig,
        redis_url: str,
        database_url: str | None = None,
        watch: bool = True,
        watch_interval_ms: int = 250,
    ) -> None:
        self._cfg = cfg
        self._redis_url = redis_url
        self._database_url = database_url
        self._actors: dict[str, Any] = {}
        self._registry: dict[str, str] = {}
        self._relay = EventsRelay(cfg.bind_host)
        self._lock = threading.RLock()
        self._watch = watch
        self._watch_s = watch_interval_ms / 1000
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.epoch = 1
        self.restarts: list[dict] = []

    # ---------------------------------------------------------------- start / stop

    def start(self) -> dict[str, str]:
        with self._lock:
            if self._registry:
                return dict(self._registry)
            relay = self._relay.start()
            cfg = self._cfg
            broker = spawn("broker", self._name("broker:" + cfg.broker.name), cfg.ray_namespace, cfg)
            self._actors["broker"] = broker
            b = ray.get(broker.start.remote())
            self._registry = {"events": relay["events"], "publish": relay["publish"], "broker": b["orders"]}
            self._start_engine(recover=False)
            self._start_validator()
            if self._watch:
                self._watcher = threading.Thread(target=self._watch_loop, name="supervisor-watch", daemon=True)
                self._watcher.start()
            return dict(self._registry)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            for role in ("validator", "engine", "broker"):
                actor = self._actors.pop(role, None)
                if actor is None:
                    continue
                try:
                    ray.get(actor.stop.remote(), timeout=10)
                except Exception:  # noqa: BLE001 - stopping: the kill below ends it anyway
                    pass
                ray.kill(actor)
            self._relay.stop()
            self._registry = {}

    # ---------------------------------------------------------------- queries

    def registry(self) -> dict[str, str]:
        return dict(self._registry)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            refs = {role: a.stats.remote() for role, a in self._actors.items()}
        out: dict[str, Any] = {role: ray.get(ref, timeout=10) for role, ref in refs.items()}
        out["supervisor"] = {"epoch": self.epoch, "restarts": list(self.restarts)}
        return out

    def call(self, role: str, method: str, *args: Any) -> Any:
        return ray.get(self._actors[role].call.remote(method, *args), timeout=30)

    def pid(self, role: str) -> int:
        return ray.get(self._actors[role].pid.remote(), timeout=10)

    # ---------------------------------------------------------------- restarts

    def restart(self, role: str, reason: str = "manual") -> dict[str, str]:
        """Replace the actor in `role` (engine or validator) with a fresh one; returns the registry."""
        t0 = time.perf_counter()
        with self._lock:
            old = self._actors.pop(role, None)
            if old is not None:
                ray.kill(old)
            if role == "engine":
                self._start_engine(recover=True)
                self._call_validator("set_engine", self._registry["engine"])
            elif role == "validator":
                self._start_validator()
            else:
                raise ValueError("cannot restart " + repr(role) + " (engine or validator)")
            self.restarts.append({"role": role, "reason": reason, "epoch": self.epoch, "took_ms": round((time.perf_counter() - t0) * 1e3, 1)})
            return dict(self._registry)

    def stop_role(self, role: str) -> None:
        """Stop one actor and leave it down (the watch ignores an empty role) until `start_role`."""
        with self._lock:
            actor = self._actors.pop(role, None)
            if actor is not None:
                _kill_and_wait(actor)

    def start_role(self, role: str) -> dict[str, str]:
        with self._lock:
            if role in self._actors:
                return dict(self._registry)
            if role == "validator":
                self._start_validator()
            elif role == "engine":
                self._start_engine(recover=True)
                self._call_validator("set_engine", self._registry["engine"])
            else:
                raise ValueError("cannot start " + repr(role))
            return dict(self._registry)

    def _start_engine(self, recover: bool) -> None:
        cfg = self._cfg
        if recover:
            self.epoch += 1
        engine = spawn(
            "engine",
            self._name("engine:" + cfg.engine.name + "@" + str(self.epoch)),
            cfg.ray_namespace,
            cfg,
            self._redis_url,
            self._registry["broker"],
            self._registry["publish"],
            self.epoch,
            recover,
        )
        self._actors["engine"] = engine
        self._registry["engine"] = ray.get(engine.start.remote(), timeout=60)["intake"]

    def _start_validator(self) -> None:
        cfg = self._cfg
        if "intake" in self._registry and cfg.intake.port == 0:
            # keep the address clients already use across a restart
            port = int(self._registry["intake"].rsplit(":", 1)[1])
            import msgspec

            cfg = msgspec.structs.replace(cfg, intake=msgspec.structs.replace(cfg.intake, port=port))
        validator = spawn(
            "validator",
            self._name("validator@" + str(time.time_ns())),
            cfg.ray_namespace,
            cfg,
            self._redis_url,
            self._registry["engine"],
            self._registry["events"],
        )
        self._actors["validator"] = validator
        self._registry["intake"] = ray.get(validator.start.remote(), timeout=60)["intake"]

    def _call_validator(self, method: str, *args: Any) -> None:
        validator = self._actors.get("validator")
        if validator is not None:
            ray.get(validator.call.remote(method, *args), timeout=30)

    def _name(self, role: str) -> str:
        return self._cfg.node_id + "." + role

    def _watch_loop(self) -> None:
        while not self._stopping.wait(self._watch_s):
            for role in ("engine", "validator"):
                actor = self._actors.get(role)
                if actor is None:
                    continue
                try:
                    ray.get(actor.alive.remote(), timeout=2)
                except Exception:  # noqa: BLE001 - any failure to answer is a death to act on
                    if self._stopping.is_set():
                        return
                    try:
                        self.restart(role, reason="died")
                    except Exception:  # noqa: BLE001 - try again next round
                        pass


def _kill_and_wait(actor: Any, timeout_s: float = 10.0) -> None:
    """ray.kill returns at once; wait until the actor really stopped answering."""
    ray.kill(actor)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(actor.pid.remote(), timeout=1)
        except Exception:  # noqa: BLE001 - dead is what we wait for
            return
        time.sleep(0.05)
